//! Wire types shared by several requests and responses: channel settings and descriptions.
//!
//! These are the wire's view, converted to and from broker and client types at the boundary.

use serde::{Deserialize, Serialize};

/// Point-to-point or publish-subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// Point-to-point: one subscription, competing consumers.
    Queue,
    /// Publish-subscribe: any number of subscriptions, each a queue over the same messages.
    Topic,
}

impl std::fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Queue => "queue",
            Self::Topic => "topic",
        })
    }
}

impl std::str::FromStr for ChannelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "queue" => Ok(Self::Queue),
            "topic" => Ok(Self::Topic),
            other => Err(format!(
                "unknown channel kind {other:?} (expected queue or topic)"
            )),
        }
    }
}

/// Settings a channel is created with. `None` means "the broker's default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSettings {
    /// Number of partitions (1 when unset).
    pub partitions: Option<u32>,
    /// Default lease (ack deadline) of deliveries, in milliseconds.
    pub lease_ms: Option<u64>,
}

/// Where one partition lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// Partition number, from 0.
    pub id: u32,
    /// Address of the node that leads it.
    pub leader: String,
}

/// What a client needs to publish to a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMeta {
    /// Channel name.
    pub name: String,
    /// Queue or topic.
    pub kind: ChannelKind,
    /// Its partitions.
    pub partitions: Vec<PartitionMeta>,
}

/// One line of `channel list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSummary {
    /// Channel name.
    pub name: String,
    /// Queue or topic.
    pub kind: ChannelKind,
    /// Number of partitions.
    pub partitions: u32,
    /// Messages stored (sum over partitions of next offset − first offset).
    pub messages: u64,
}

/// Per-partition facts in a channel description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Partition number.
    pub id: u32,
    /// First offset still stored (low-water mark).
    pub first_offset: u64,
    /// Offset the next message will get.
    pub next_offset: u64,
    /// Offsets below this are committed (high-water mark).
    pub committed_offset: u64,
    /// Segment files.
    pub segments: u32,
    /// Bytes of log on disk.
    pub bytes: u64,
}

/// Per-subscription facts in a channel description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    /// Subscription name.
    pub name: String,
    /// Whether its cursor outlives its consumers.
    pub durable: bool,
    /// Messages not yet acked (in flight included).
    pub backlog: u64,
    /// Messages delivered and not yet settled.
    pub in_flight: u64,
    /// Sum over partitions of the ack floor.
    pub ack_floor: u64,
    /// Attached consumers.
    pub consumers: u32,
    /// Age in milliseconds of the oldest message not acked, if any.
    pub oldest_unacked_ms: Option<u64>,
}

/// `channel describe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelDescription {
    /// Channel name.
    pub name: String,
    /// Queue or topic.
    pub kind: ChannelKind,
    /// Default lease in milliseconds.
    pub lease_ms: u64,
    /// Per partition.
    pub partitions: Vec<PartitionInfo>,
    /// Per subscription.
    pub subscriptions: Vec<SubscriptionInfo>,
}

/// Where a batch's messages ended up: runs of consecutive messages stored at consecutive offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRun {
    /// Index of the first message of the run within the batch.
    pub index: u32,
    /// Messages in the run.
    pub count: u32,
    /// Offset of the first of them.
    pub offset: u64,
}

/// Picks the partition for a key: FNV-1a, so every client and the broker agree.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashing_is_stable_and_in_range() {
        assert_eq!(
            partition_for_key(b"", 4),
            (0xcbf2_9ce4_8422_2325u64 % 4) as u32
        );
        for key in [&b"a"[..], b"order-17", b"\xff\x00"] {
            let p = partition_for_key(key, 3);
            assert!(p < 3);
            assert_eq!(p, partition_for_key(key, 3));
        }
        assert_eq!(partition_for_key(b"x", 0), 0);
    }
}
