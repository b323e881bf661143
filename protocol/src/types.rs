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
        f.pad(match self {
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

/// What a channel's payloads must parse as (part of its contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// A JSON document.
    Json,
    /// One MessagePack value.
    Msgpack,
    /// UTF-8 text.
    Utf8,
    /// Anything: no check.
    Bytes,
}

impl PayloadFormat {
    /// The lowercase name used on the wire, in config and by `sluicectl`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Msgpack => "msgpack",
            Self::Utf8 => "utf8",
            Self::Bytes => "bytes",
        }
    }
}

impl std::fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for PayloadFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "msgpack" => Ok(Self::Msgpack),
            "utf8" => Ok(Self::Utf8),
            "bytes" => Ok(Self::Bytes),
            other => Err(format!(
                "unknown payload format {other:?} (expected json, msgpack, utf8 or bytes)"
            )),
        }
    }
}

/// Settings a channel is created with. `None` (or empty) means "the broker's default".
///
/// Every field after the first two was added later and defaults when absent, so older peers'
/// bodies still decode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSettings {
    /// Number of partitions (1 when unset).
    pub partitions: Option<u32>,
    /// Default lease (ack deadline) of deliveries, in milliseconds.
    pub lease_ms: Option<u64>,
    /// Deliveries of one message before it is dead-lettered (broker default 20).
    #[serde(default)]
    pub max_deliveries: Option<u32>,
    /// Where dead letters go (broker default `<channel>.dlq`, created when first needed).
    #[serde(default)]
    pub dead_letter_channel: Option<String>,
    /// Whether expired messages are dead-lettered with reason `expired` (default: dropped).
    #[serde(default)]
    pub expired_to_dead_letter: Option<bool>,
    /// Age in milliseconds after which any message of the channel expires.
    #[serde(default)]
    pub max_age_ms: Option<u64>,
    /// Where messages that break the contract go; unset means they are refused.
    #[serde(default)]
    pub invalid_channel: Option<String>,
    /// Contract: what payloads must parse as.
    #[serde(default)]
    pub payload_format: Option<PayloadFormat>,
    /// Contract: largest payload in bytes.
    #[serde(default)]
    pub max_payload_bytes: Option<u64>,
    /// Contract: allowed values of the `content-type` header; empty allows any.
    #[serde(default)]
    pub content_types: Vec<String>,
    /// Contract: headers every message must carry.
    #[serde(default)]
    pub required_headers: Vec<String>,
    /// Window in milliseconds within which a repeated message id is a duplicate (default 2 min).
    #[serde(default)]
    pub dedupe_window_ms: Option<u64>,
    /// Retention: segments whose messages are all older than this many milliseconds are
    /// deleted, consumed or not (broker default: kept until consumed).
    #[serde(default)]
    pub retention_max_age_ms: Option<u64>,
    /// Retention: the oldest segments are deleted, consumed or not, while a partition holds more
    /// bytes than this (broker default: no limit).
    #[serde(default)]
    pub retention_max_bytes: Option<u64>,
    /// When a publish counts as durable (broker default `always`).
    #[serde(default)]
    pub fsync: Option<FsyncPolicy>,
    /// Period of `fsync = interval`, in milliseconds.
    #[serde(default)]
    pub fsync_interval_ms: Option<u64>,
    /// Size at which a log segment rolls, in bytes.
    #[serde(default)]
    pub segment_bytes: Option<u64>,
}

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fdatasync before answering (group commit): the default.
    Always,
    /// fdatasync every interval; a machine crash can lose acknowledged messages.
    Interval,
    /// Leave it to the OS; a machine crash can lose acknowledged messages.
    Never,
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Self::Always => "always",
            Self::Interval => "interval",
            Self::Never => "never",
        })
    }
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "interval" => Ok(Self::Interval),
            "never" => Ok(Self::Never),
            other => Err(format!(
                "unknown fsync policy {other:?} (expected always, interval or never)"
            )),
        }
    }
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
    /// The settings the channel was created with (absent from older brokers' answers). Boxed
    /// so that [`Response`](crate::Response) stays small.
    #[serde(default)]
    pub settings: Box<ChannelSettings>,
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

/// A message of a batch that was already stored: it was not stored again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateRun {
    /// Index of the message within the batch.
    pub index: u32,
    /// Offset of the stored original, in the ack's partition.
    pub offset: u64,
}

/// A message of a batch that broke the channel's contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidOutcome {
    /// Index of the message within the batch.
    pub index: u32,
    /// Which rule it broke, for people.
    pub reason: String,
    /// The invalid channel it was stored in; `None`: refused, nothing stored (the client
    /// reports [`ErrorCode::InvalidMessage`](crate::ErrorCode::InvalidMessage) for it).
    pub routed_to: Option<String>,
}

/// Picks the partition for a key, the same in every client and the broker: FNV-1a over the
/// bytes, then murmur3's 64-bit finaliser, then the remainder by the partition count.
///
/// FNV-1a alone leaves the low bits of its hash depending only on the low bits of each byte, so
/// with a power-of-two partition count, keys that differ only in their bytes' high bits (ids
/// `[1; 16]` and `[5; 16]`, keys `a` and `e`) always shared a partition. The finaliser mixes
/// every bit of the hash into the low ones.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    (hash % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashing_is_stable_and_in_range() {
        // Pinned: clients and brokers built at different times must agree.
        assert_eq!(
            [b"".as_slice(), b"a", b"order-17", b"\xff\x00"].map(|k| partition_for_key(k, 1000)),
            [342, 315, 231, 754]
        );
        for key in [&b"a"[..], b"order-17", b"\xff\x00"] {
            let p = partition_for_key(key, 3);
            assert!(p < 3);
            assert_eq!(p, partition_for_key(key, 3));
        }
        assert_eq!(partition_for_key(b"x", 0), 0);
    }

    #[test]
    fn keys_that_differ_only_in_high_bits_spread_over_partitions() {
        // One-byte keys 0, 4, 8, ...: FNV-1a alone put every one in partition 0 of 4.
        let mut counts = [0u32; 4];
        for k in 0..64u8 {
            counts[partition_for_key(&[k * 4], 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c >= 8), "{counts:?}");
        // Ids made of one repeated byte, and text keys with a counter, over 8 partitions.
        let mut counts = [0u32; 8];
        for k in 0..=255u8 {
            counts[partition_for_key(&[k; 16], 8) as usize] += 1;
        }
        for i in 0..7936 {
            counts[partition_for_key(format!("customer-{i}").as_bytes(), 8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..=1150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn names_honour_width_and_alignment() {
        assert_eq!(format!("{:<6}|", ChannelKind::Queue), "queue |");
        assert_eq!(format!("{:>7}|", PayloadFormat::Json), "   json|");
        assert_eq!(format!("{:^8}|", FsyncPolicy::Never), " never  |");
    }
}
