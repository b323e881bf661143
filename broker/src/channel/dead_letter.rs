//! Moving messages to another channel: dead letters and invalid messages.
//!
//! A partition that gives up on a message hands a [`Move`] to the broker's mover task, which
//! publishes it into the target channel through the ordinary partition path (creating a
//! dead-letter queue on first use). The published copy keeps the message's id and carries a
//! dedupe key derived from where the message came from, so the target's deduplication turns a
//! repeated move (after a crash between publishing and settling the source) into a duplicate
//! rather than a second copy, and never takes a different message that reuses the id for one.
//! Only when the move is stored does the source partition log the settle command.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use sluice_protocol::headers as h;
use sluice_protocol::response::PublishAck;
use sluice_protocol::types::{partition_for_key, ChannelKind, ChannelSettings};
use sluice_protocol::{BatchBuilder, MessageView, NewMessage, Response};
use tokio::sync::{mpsc, oneshot};

use super::error::ChannelError;
use super::outbox::Reply;
use super::partition::PartitionRequest;
use super::registry::Registry;

/// Why a message was dead-lettered; the value of `sluice-death-reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    /// Its delivery count passed the subscription's `max_deliveries`.
    MaxDeliveries,
    /// A consumer rejected it.
    Rejected,
    /// It expired and the channel dead-letters expired messages.
    Expired,
}

impl DeathReason {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxDeliveries => "max-deliveries",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }
}

/// Where a dead message came from and why it died.
#[derive(Debug, Clone)]
pub struct Death<'a> {
    /// Why.
    pub reason: DeathReason,
    /// Source channel.
    pub channel: &'a str,
    /// Source subscription.
    pub subscription: &'a str,
    /// Source partition.
    pub partition: u32,
    /// Source offset.
    pub offset: u64,
    /// Delivery count when it died.
    pub count: u32,
    /// The consumer's reason, for rejections.
    pub error: Option<&'a str>,
    /// Now, ms since the Unix epoch.
    pub now_ms: i64,
}

/// The dead letter: the message with its id, key, headers and payload, plus the death headers.
/// Earlier death headers (a redriven message dying again) are replaced, except the first time.
///
/// `move_key` is what the dead-letter queue deduplicates the copy on. A message without a
/// publisher-made id gets none here either: the id it was delivered with came from its place in
/// its channel, which another channel's message can share, so the copy takes one from its own
/// place in the dead-letter queue.
pub fn dead_letter(message: MessageView, death: &Death<'_>, move_key: [u8; 16]) -> NewMessage {
    let first = message.header(h::DEATH_FIRST_TIME).cloned();
    let mut new = message.into_new();
    new.headers
        .retain(|(name, _)| !name.starts_with("sluice-death-"));
    let now = Bytes::from(death.now_ms.to_string());
    let mut add = |name: &str, value: Bytes| new.headers.push((name.to_owned(), value));
    add(
        h::DEATH_REASON,
        Bytes::from_static(death.reason.as_str().as_bytes()),
    );
    add(h::DEATH_CHANNEL, Bytes::from(death.channel.to_owned()));
    add(
        h::DEATH_SUBSCRIPTION,
        Bytes::from(death.subscription.to_owned()),
    );
    add(h::DEATH_PARTITION, Bytes::from(death.partition.to_string()));
    add(h::DEATH_OFFSET, Bytes::from(death.offset.to_string()));
    add(h::DEATH_COUNT, Bytes::from(death.count.to_string()));
    add(h::DEATH_FIRST_TIME, first.unwrap_or_else(|| now.clone()));
    add(h::DEATH_LAST_TIME, now);
    if let Some(error) = death.error {
        add(h::DEATH_ERROR, Bytes::from(error.to_owned()));
    }
    new.dedupe_key = Some(move_key);
    // A dead letter is kept for people to look at; the original TTL would expire it at once
    // (it is why some of them died).
    new.ttl_ms = None;
    new
}

/// The message moved to an invalid channel, with why and from where.
pub fn invalid_message(
    message: MessageView,
    reason: &str,
    channel: &str,
    move_key: [u8; 16],
) -> NewMessage {
    let mut new = message.into_new();
    new.headers
        .push((h::INVALID_REASON.to_owned(), Bytes::from(reason.to_owned())));
    new.headers.push((
        h::INVALID_CHANNEL.to_owned(),
        Bytes::from(channel.to_owned()),
    ));
    new.dedupe_key = Some(move_key);
    new.ttl_ms = None;
    new
}

/// Where a moved message comes from, as far as its dedupe key is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Channel name.
    pub channel: &'a str,
    /// Which creation of the channel (a channel created again under its name starts its
    /// offsets again).
    pub incarnation: u64,
    /// Partition number.
    pub partition: u32,
}

/// The key that makes a move idempotent: derived from the source channel (and its
/// incarnation), subscription, partition and offset.
pub fn move_id(source: Source<'_>, subscription: &str, offset: u64) -> [u8; 16] {
    let Source {
        channel,
        incarnation,
        partition,
    } = source;
    let mut key = Vec::with_capacity(channel.len() + subscription.len() + 10);
    key.extend_from_slice(channel.as_bytes());
    key.push(0);
    key.extend_from_slice(&incarnation.to_le_bytes());
    key.push(0);
    key.extend_from_slice(subscription.as_bytes());
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&fnv64(&key).to_be_bytes());
    id[8..].copy_from_slice(&(u64::from(partition) << 48 ^ offset).to_be_bytes());
    id
}

/// The key of an invalid message routed at publish: derived from its channel, partition and
/// content, so a publisher retrying the same batch does not store it twice.
pub fn content_id(source: Source<'_>, record: &[u8]) -> [u8; 16] {
    move_id(source, "~invalid", fnv64(record))
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One message to publish into another channel.
#[derive(Debug)]
pub struct Move {
    /// Target channel.
    pub target: String,
    /// Create the target as a queue if it does not exist (dead-letter queues).
    pub create: bool,
    /// The message, with its idempotency id set.
    pub message: NewMessage,
    /// Told when the message is stored (or was a duplicate).
    pub done: oneshot::Sender<Result<(), ChannelError>>,
}

/// Where partitions send moves.
pub type MoveSink = mpsc::UnboundedSender<Move>;

/// Runs moves until the registry is gone. Each move runs in its own task so a slow target never
/// holds up others.
pub async fn run_mover(registry: Weak<Registry>, mut moves: mpsc::UnboundedReceiver<Move>) {
    while let Some(m) = moves.recv().await {
        let Some(registry) = registry.upgrade() else {
            break;
        };
        tokio::spawn(async move {
            let result = publish(&registry, &m.target, m.create, m.message).await;
            let _ = m.done.send(result.map(|_| ()));
        });
    }
}

/// Publishes one message into `target` through its partition, as a client would.
///
/// # Errors
/// `UnknownChannel` (when not creating), storage errors, or the partition's refusal.
pub async fn publish(
    registry: &Arc<Registry>,
    target: &str,
    create: bool,
    message: NewMessage,
) -> Result<PublishAck, ChannelError> {
    let channel = match registry.get(target) {
        Err(ChannelError::UnknownChannel(_)) if create => {
            match registry
                .create(target, ChannelKind::Queue, &ChannelSettings::default())
                .await
            {
                Err(ChannelError::ChannelExists(_)) => registry.get(target)?,
                other => other?,
            }
        }
        other => other?,
    };
    // As a client would pick it: by the message's key, so a keyed message keeps its order in
    // the target, else by its dedupe key (every copy has one), so a retried move lands where
    // the first try did and is deduplicated there.
    let key = message.partition_key().unwrap_or_default();
    let partition = partition_for_key(key, channel.spec.partitions);
    let mut builder = BatchBuilder::messages();
    builder.push_with(|buf| {
        message
            .encode(buf)
            .expect("headers of a stored message fit")
    });
    let batch = builder
        .finish()
        .map_err(|e| ChannelError::InvalidArgument(e.to_string()))?;
    let (reply, mut answer) = Reply::internal();
    channel
        .partition(partition)?
        .send(PartitionRequest::Publish {
            batch,
            routed: super::partition::Routed::default(),
            reply,
        })
        .await?;
    match answer.recv().await {
        Some(Ok(Response::Published(ack))) => Ok(ack),
        Some(Err(e)) => Err(ChannelError::Moving {
            target: target.to_owned(),
            code: e.code,
            message: e.message,
        }),
        _ => Err(ChannelError::ShuttingDown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(headers: Vec<(String, Bytes)>) -> MessageView {
        MessageView {
            id: None,
            dedupe_key: None,
            key: Some(Bytes::from("k")),
            ttl_ms: None,
            headers,
            payload: Bytes::from("p"),
        }
    }

    fn death(now_ms: i64) -> Death<'static> {
        Death {
            reason: DeathReason::Rejected,
            channel: "orders",
            subscription: "orders",
            partition: 2,
            offset: 41,
            count: 3,
            error: Some("bad customer"),
            now_ms,
        }
    }

    #[test]
    fn a_dead_letter_keeps_the_message_and_gains_every_death_header() {
        let m = dead_letter(
            view(vec![("app".into(), Bytes::from("1"))]),
            &death(77),
            [9; 16],
        );
        let get = |n: &str| {
            m.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("app"), Some(Bytes::from("1")));
        assert_eq!(get(h::DEATH_REASON), Some(Bytes::from("rejected")));
        assert_eq!(get(h::DEATH_CHANNEL), Some(Bytes::from("orders")));
        assert_eq!(get(h::DEATH_SUBSCRIPTION), Some(Bytes::from("orders")));
        assert_eq!(get(h::DEATH_PARTITION), Some(Bytes::from("2")));
        assert_eq!(get(h::DEATH_OFFSET), Some(Bytes::from("41")));
        assert_eq!(get(h::DEATH_COUNT), Some(Bytes::from("3")));
        assert_eq!(get(h::DEATH_FIRST_TIME), Some(Bytes::from("77")));
        assert_eq!(get(h::DEATH_LAST_TIME), Some(Bytes::from("77")));
        assert_eq!(get(h::DEATH_ERROR), Some(Bytes::from("bad customer")));
        // The message had no id of its own and the copy gets none (its place in the dead-letter
        // queue will give it one); the move key only decides deduplication.
        assert_eq!(
            (m.key, m.payload, m.id, m.dedupe_key),
            (
                Some(Bytes::from("k")),
                Bytes::from("p"),
                None,
                Some([9; 16])
            )
        );
    }

    #[test]
    fn dying_again_keeps_the_first_time_and_replaces_the_rest() {
        let once = dead_letter(view(vec![]), &death(10), [1; 16]);
        let again = dead_letter(view(once.headers), &death(20), [1; 16]);
        let all = |n: &str| again.headers.iter().filter(|(k, _)| k == n).count();
        assert_eq!(all(h::DEATH_REASON), 1);
        let get = |n: &str| {
            again
                .headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(h::DEATH_FIRST_TIME), Some(Bytes::from("10")));
        assert_eq!(get(h::DEATH_LAST_TIME), Some(Bytes::from("20")));
    }

    #[test]
    fn move_ids_differ_by_every_part_of_the_source() {
        let source = |channel, incarnation, partition| Source {
            channel,
            incarnation,
            partition,
        };
        let base = move_id(source("c", 7, 0), "s", 1);
        assert_eq!(base, move_id(source("c", 7, 0), "s", 1));
        for other in [
            move_id(source("d", 7, 0), "s", 1),
            move_id(source("c", 8, 0), "s", 1),
            move_id(source("c", 7, 0), "t", 1),
            move_id(source("c", 7, 1), "s", 1),
            move_id(source("c", 7, 0), "s", 2),
        ] {
            assert_ne!(base, other);
        }
    }
}
