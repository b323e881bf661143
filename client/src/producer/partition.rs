//! Pure pieces of publishing: which partition a message goes to, whether it can be encoded, and
//! which offset each message got from a publish answer.

use sluice_protocol::types::{partition_for_key, StoredRun};
use sluice_protocol::NewMessage;

use crate::error::{ClientError, Result};

/// The partition a message must go to, if it has a key (hash of the key) or a publisher-set id
/// (hash of the id, so duplicates meet in one partition). `None` means "any": round robin.
pub(crate) fn fixed_partition(message: &NewMessage, partitions: u32) -> Option<u32> {
    if let Some(key) = &message.key {
        Some(partition_for_key(key, partitions))
    } else {
        message.id.map(|id| partition_for_key(&id, partitions))
    }
}

/// Checks every length prefix before the message is written into a batch, so encoding it
/// cannot fail half-way.
///
/// # Errors
/// [`ClientError::InvalidMessage`] naming the field that is too long.
pub(crate) fn validate(message: &NewMessage) -> Result<()> {
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

/// The offset of each of `count` messages, from the runs of a publish answer.
///
/// # Errors
/// [`ClientError::UnexpectedResponse`] when the runs leave a message out or point past the batch.
pub(crate) fn offsets_from_runs(runs: &[StoredRun], count: usize) -> Result<Vec<u64>> {
    let bad = || ClientError::UnexpectedResponse { request: "publish" };
    let mut offsets = vec![None; count];
    for run in runs {
        let start = run.index as usize;
        let end = start + run.count as usize;
        let slots = offsets.get_mut(start..end).ok_or_else(bad)?;
        for (i, slot) in slots.iter_mut().enumerate() {
            *slot = Some(run.offset + i as u64);
        }
    }
    offsets.into_iter().map(|o| o.ok_or_else(bad)).collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

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
    fn with_neither_any_partition_will_do() {
        assert_eq!(fixed_partition(&NewMessage::new("x"), 3), None);
    }

    #[test]
    fn an_oversized_key_is_refused_before_encoding() {
        let m = NewMessage {
            key: Some(Bytes::from(vec![0; 70_000])),
            ..NewMessage::new("x")
        };
        assert!(matches!(validate(&m), Err(ClientError::InvalidMessage(_))));
        assert!(validate(&NewMessage::new("fine")).is_ok());
    }

    #[test]
    fn runs_give_each_message_its_offset() {
        let runs = [
            StoredRun {
                index: 2,
                count: 2,
                offset: 100,
            },
            StoredRun {
                index: 0,
                count: 2,
                offset: 40,
            },
        ];
        assert_eq!(offsets_from_runs(&runs, 4).unwrap(), vec![40, 41, 100, 101]);
    }

    #[test]
    fn runs_that_miss_a_message_or_overflow_are_refused() {
        let short = [StoredRun {
            index: 0,
            count: 1,
            offset: 0,
        }];
        assert!(offsets_from_runs(&short, 2).is_err());
        let long = [StoredRun {
            index: 1,
            count: 5,
            offset: 0,
        }];
        assert!(offsets_from_runs(&long, 2).is_err());
    }
}
