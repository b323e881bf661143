//! Pure pieces of publishing: which partition a message goes to, whether it can be encoded, and
//! what became of each message according to a publish answer.

use sluice_protocol::batch::HEADER_LEN;
use sluice_protocol::response::PublishAck;
use sluice_protocol::types::partition_for_key;
use sluice_protocol::{ErrorCode, NewMessage};

use super::Outcome;
use crate::error::{ClientError, Result};

/// The partition a message must go to, if it has a key (hash of the key), or else what the
/// broker deduplicates it on, a dedupe key or a publisher-set id (hashed, so duplicates meet in
/// one partition). `None` means "any": round robin.
pub(crate) fn fixed_partition(message: &NewMessage, partitions: u32) -> Option<u32> {
    if partitions == 1 {
        return Some(0);
    }
    message
        .partition_key()
        .map(|key| partition_for_key(key, partitions))
}

/// Checks every length prefix before the message is written into a batch, so encoding it
/// cannot fail half-way, and that a batch holding only this message fits in `max_batch`
/// bytes (the broker's batch limit, within its frame limit less room for the request).
///
/// # Errors
/// [`ClientError::InvalidMessage`] naming the field that is too long;
/// [`ClientError::MessageTooLarge`] for a message no batch can carry.
pub(crate) fn validate(message: &NewMessage, max_batch: usize) -> Result<()> {
    let size = HEADER_LEN + 4 + message.encoded_len();
    if size > max_batch {
        return Err(ClientError::MessageTooLarge {
            size,
            max: max_batch,
        });
    }
    let too_long = |what| Err(ClientError::InvalidMessage(what));
    if message
        .key
        .as_ref()
        .is_some_and(|k| k.len() > usize::from(u16::MAX))
    {
        return too_long("key longer than 65535 bytes");
    }
    if message.headers.len() > usize::from(u16::MAX) {
        return too_long("more than 65535 headers");
    }
    for (name, value) in &message.headers {
        if name.len() > usize::from(u16::MAX) {
            return too_long("header name longer than 65535 bytes");
        }
        if u32::try_from(value.len()).is_err() {
            return too_long("header value longer than 4 GiB");
        }
    }
    Ok(())
}

/// What became of each of the `count` messages of a batch, from the broker's answer: an
/// [`Outcome`], or the typed error of a message refused for breaking the channel's contract.
///
/// # Errors
/// [`ClientError::UnexpectedResponse`] when the answer leaves a message out, names one twice or
/// points past the batch.
pub(crate) fn outcomes_from_ack(ack: &PublishAck, count: usize) -> Result<Vec<Result<Outcome>>> {
    let partition = ack.partition;
    let mut slots: Vec<Option<Result<Outcome>>> = vec![None; count];
    for run in &ack.stored {
        for i in 0..run.count {
            let offset = run.offset + u64::from(i);
            let index = run.index.checked_add(i).ok_or_else(bad_ack)?;
            fill(&mut slots, index, Ok(Outcome::Stored { partition, offset }))?;
        }
    }
    for dup in &ack.duplicates {
        let offset = dup.offset;
        fill(
            &mut slots,
            dup.index,
            Ok(Outcome::Duplicate { partition, offset }),
        )?;
    }
    for invalid in &ack.invalid {
        let outcome = match &invalid.routed_to {
            Some(routed_to) => Ok(Outcome::Invalid {
                partition,
                reason: invalid.reason.clone(),
                routed_to: routed_to.clone(),
            }),
            None => Err(ClientError::broker(
                ErrorCode::InvalidMessage,
                invalid.reason.clone(),
            )),
        };
        fill(&mut slots, invalid.index, outcome)?;
    }
    slots.into_iter().map(|o| o.ok_or_else(bad_ack)).collect()
}

fn fill(slots: &mut [Option<Result<Outcome>>], index: u32, outcome: Result<Outcome>) -> Result<()> {
    match slots.get_mut(index as usize) {
        Some(slot @ None) => {
            *slot = Some(outcome);
            Ok(())
        }
        _ => Err(bad_ack()),
    }
}

fn bad_ack() -> ClientError {
    ClientError::UnexpectedResponse { request: "publish" }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sluice_protocol::types::{DuplicateRun, InvalidOutcome, StoredRun};

    use super::*;

    #[test]
    fn a_key_picks_the_partition_by_its_hash() {
        let m = NewMessage {
            key: Some(Bytes::from("order-17")),
            id: Some([1; 16]),
            ..NewMessage::new("x")
        };
        assert_eq!(
            fixed_partition(&m, 8),
            Some(partition_for_key(b"order-17", 8))
        );
    }

    #[test]
    fn without_a_key_the_id_picks_the_partition() {
        let m = NewMessage {
            id: Some([7; 16]),
            ..NewMessage::new("x")
        };
        let p = fixed_partition(&m, 5).unwrap();
        assert_eq!(p, partition_for_key(&[7; 16], 5));
        assert_eq!(
            fixed_partition(&m, 5),
            Some(p),
            "duplicates meet in one partition"
        );
    }

    #[test]
    fn a_dedupe_key_decides_the_partition_before_the_id() {
        let m = NewMessage {
            id: Some([7; 16]),
            dedupe_key: Some([9; 16]),
            ..NewMessage::new("x")
        };
        assert_eq!(fixed_partition(&m, 5), Some(partition_for_key(&[9; 16], 5)));
    }

    #[test]
    fn with_neither_any_partition_will_do() {
        assert_eq!(fixed_partition(&NewMessage::new("x"), 3), None);
    }

    #[test]
    fn an_oversized_key_is_refused_before_encoding() {
        let m = NewMessage {
            key: Some(Bytes::from(vec![0; 70_000])),
            ..NewMessage::new("x")
        };
        assert!(matches!(
            validate(&m, 1 << 20),
            Err(ClientError::InvalidMessage(_))
        ));
        assert!(validate(&NewMessage::new("fine"), 1 << 20).is_ok());
    }

    #[test]
    fn a_message_no_batch_can_carry_is_refused_before_sending() {
        let fits = NewMessage::new(vec![0; 1000 - HEADER_LEN - 4 - 4]);
        assert!(validate(&fits, 1000).is_ok());
        let over = NewMessage::new(vec![0; 1000 - HEADER_LEN - 4 - 3]);
        let err = validate(&over, 1000).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::MessageTooLarge {
                    size: 1001,
                    max: 1000
                }
            ),
            "{err}"
        );
    }

    fn ack(stored: &[(u32, u32, u64)]) -> PublishAck {
        PublishAck {
            partition: 3,
            stored: stored
                .iter()
                .map(|&(index, count, offset)| StoredRun {
                    index,
                    count,
                    offset,
                })
                .collect(),
            ..PublishAck::default()
        }
    }

    fn offsets(outcomes: Vec<Result<Outcome>>) -> Vec<u64> {
        outcomes.into_iter().map(|o| o.unwrap().offset()).collect()
    }

    #[test]
    fn runs_give_each_message_its_offset() {
        let ack = ack(&[(2, 2, 100), (0, 2, 40)]);
        let outcomes = outcomes_from_ack(&ack, 4).unwrap();
        assert_eq!(offsets(outcomes), vec![40, 41, 100, 101]);
    }

    #[test]
    fn runs_that_miss_a_message_or_overflow_are_refused() {
        assert!(outcomes_from_ack(&ack(&[(0, 1, 0)]), 2).is_err());
        assert!(outcomes_from_ack(&ack(&[(1, 5, 0)]), 2).is_err());
    }

    #[test]
    fn a_message_named_twice_is_refused() {
        let mut twice = ack(&[(0, 2, 0)]);
        twice.duplicates.push(DuplicateRun {
            index: 1,
            offset: 9,
        });
        assert!(outcomes_from_ack(&twice, 2).is_err());
    }

    #[test]
    fn duplicates_and_invalid_messages_get_their_own_outcomes() {
        let mut mixed = ack(&[(1, 1, 50)]);
        mixed.duplicates.push(DuplicateRun {
            index: 0,
            offset: 7,
        });
        mixed.invalid.push(InvalidOutcome {
            index: 2,
            reason: "payload is not json".into(),
            routed_to: Some("orders.invalid".into()),
        });
        mixed.invalid.push(InvalidOutcome {
            index: 3,
            reason: "missing header tenant".into(),
            routed_to: None,
        });
        let mut outcomes = outcomes_from_ack(&mixed, 4).unwrap().into_iter();
        let dup = Outcome::Duplicate {
            partition: 3,
            offset: 7,
        };
        assert_eq!(outcomes.next().unwrap().unwrap(), dup);
        assert!(outcomes.next().unwrap().unwrap().is_stored());
        let routed = outcomes.next().unwrap().unwrap();
        assert_eq!(
            routed,
            Outcome::Invalid {
                partition: 3,
                reason: "payload is not json".into(),
                routed_to: "orders.invalid".into(),
            }
        );
        assert_eq!(routed.position(), None);
        let refused = outcomes.next().unwrap().unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::InvalidMessage));
        assert!(refused.to_string().contains("missing header tenant"));
    }
}
