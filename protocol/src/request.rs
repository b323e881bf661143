//! Requests (client → broker) and the opcodes that name them.
//!
//! Control-plane bodies are MessagePack maps (rmp-serde, named fields, so fields can be added).
//! The two bodies on the data path are fixed binary layouts around an untouched record batch:
//!
//! ```text
//! Publish body                          
//!   u16 channel length, channel (UTF-8)
//!   u32 partition
//!   ..  record batch (see crate::batch), exactly as the producer encoded it
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::batch::RecordBatch;
use crate::error::ProtocolError;
use crate::types::{ChannelKind, ChannelSettings};

/// Stable opcodes. A gap is a retired opcode, never free space.
pub mod opcode {
    /// Version negotiation; the first frame of every connection.
    pub const HANDSHAKE: u16 = 1;
    /// Channel placement lookup.
    pub const METADATA: u16 = 2;
    /// Create a channel.
    pub const CREATE_CHANNEL: u16 = 10;
    /// Delete a channel.
    pub const DELETE_CHANNEL: u16 = 11;
    /// List channels.
    pub const LIST_CHANNELS: u16 = 12;
    /// Describe one channel.
    pub const DESCRIBE_CHANNEL: u16 = 13;
    /// Purge a channel or a subscription's backlog (admin).
    pub const PURGE: u16 = 14;
    /// Publish dead letters back to their source channel (admin).
    pub const REDRIVE: u16 = 15;
    /// Create a subscription.
    pub const CREATE_SUBSCRIPTION: u16 = 20;
    /// Delete a subscription.
    pub const DELETE_SUBSCRIPTION: u16 = 21;
    /// List a channel's subscriptions.
    pub const LIST_SUBSCRIPTIONS: u16 = 22;
    /// Publish a record batch.
    pub const PUBLISH: u16 = 30;
    /// Open (or bump the epoch of) an idempotent producer session.
    pub const INIT_PRODUCER: u16 = 31;
    /// Attach a consumer to a subscription.
    pub const SUBSCRIBE: u16 = 40;
    /// Detach a consumer.
    pub const DETACH: u16 = 41;
    /// Grant a consumer more credit.
    pub const CREDIT: u16 = 42;
    /// A delivery pushed by the broker.
    pub const DELIVERY: u16 = 43;
    /// Acknowledge deliveries.
    pub const ACK: u16 = 44;
    /// Return deliveries, now or after a delay.
    pub const NACK: u16 = 45;
    /// Extend the lease of deliveries.
    pub const EXTEND: u16 = 46;
    /// Settle deliveries by dead-lettering them or moving them to the invalid channel.
    pub const REJECT: u16 = 47;
}

/// First frame of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    /// Lowest protocol version the client speaks.
    pub min_version: u8,
    /// Highest protocol version the client speaks.
    pub max_version: u8,
    /// Free-form client name, for logs.
    pub client: String,
    /// Credentials; reserved for authentication.
    #[serde(default)]
    pub auth: Option<Vec<u8>>,
}

/// Ask where channels live; empty means all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Channel names.
    pub channels: Vec<String>,
}

/// Create a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateChannel {
    /// Channel name.
    pub name: String,
    /// Queue or topic.
    pub kind: ChannelKind,
    /// Settings; unset ones take the broker's defaults.
    pub settings: ChannelSettings,
}

/// A request naming one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelName {
    /// Channel name.
    pub name: String,
}

/// Purge a channel, or one subscription's backlog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purge {
    /// Channel name.
    pub channel: String,
    /// Only this subscription's backlog, when set.
    pub subscription: Option<String>,
}

/// Create a subscription on a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSubscription {
    /// Channel name.
    pub channel: String,
    /// Subscription name.
    pub name: String,
    /// Whether its cursor outlives consumers and restarts.
    pub durable: bool,
    /// Default lease of this subscription's deliveries, in milliseconds.
    pub lease_ms: Option<u64>,
}

/// A request naming one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRef {
    /// Channel name.
    pub channel: String,
    /// Subscription name.
    pub name: String,
}

/// Publish one batch to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Channel name.
    pub channel: String,
    /// Target partition (the client picks it: key hash, id hash or round robin).
    pub partition: u32,
    /// The messages, encoded once by the producer.
    pub batch: RecordBatch,
}

/// Attach a consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Id the client picked for this consumer, unique on its connection.
    pub consumer_id: u64,
    /// Channel name.
    pub channel: String,
    /// Subscription name; `None` means the queue's own, or a new ephemeral one on a topic.
    pub subscription: Option<String>,
    /// Initial credit: deliveries the consumer can take before it grants more.
    pub credit: u32,
    /// Lease override for this consumer, in milliseconds.
    pub lease_ms: Option<u64>,
}

/// A request naming one consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerRef {
    /// The consumer.
    pub consumer_id: u64,
}

/// Grant more credit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// The consumer.
    pub consumer_id: u64,
    /// Additional deliveries it can take.
    pub credit: u32,
}

/// Acknowledge deliveries, as half-open offset ranges of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The consumer that received them.
    pub consumer_id: u64,
    /// Partition.
    pub partition: u32,
    /// `[from, to)` ranges of offsets.
    pub ranges: Vec<(u64, u64)>,
}

/// Return deliveries to the subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The consumer that received them.
    pub consumer_id: u64,
    /// Partition.
    pub partition: u32,
    /// Offsets.
    pub offsets: Vec<u64>,
    /// Redeliver no sooner than this many milliseconds from now.
    pub delay_ms: u64,
}

/// Extend the lease of deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extend {
    /// The consumer that holds them.
    pub consumer_id: u64,
    /// Partition.
    pub partition: u32,
    /// Offsets.
    pub offsets: Vec<u64>,
    /// New lease from now, in milliseconds.
    pub lease_ms: u64,
}

/// Settle deliveries as failed for good: dead-letter them, or move them to the invalid channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// The consumer that received them.
    pub consumer_id: u64,
    /// Partition.
    pub partition: u32,
    /// Offsets.
    pub offsets: Vec<u64>,
    /// Why, for people; goes into `sluice-death-error` or `sluice-invalid-reason`.
    pub reason: String,
    /// `false`: dead-letter with reason `rejected`; `true`: move to the invalid channel.
    pub invalid: bool,
}

/// Open an idempotent producer session on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitProducer {
    /// Channel the producer publishes to.
    pub channel: String,
    /// `None` asks for a new id; an id asks for its next epoch, fencing the older ones.
    pub producer_id: Option<u64>,
}

/// Publish dead letters back to their source channel, without the death headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redrive {
    /// The dead-letter channel to drain.
    pub channel: String,
    /// Publish to this channel instead of each dead letter's source.
    pub to: Option<String>,
    /// At most this many; all when unset.
    pub count: Option<u64>,
}

/// Every request the broker understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// See [`Handshake`].
    Handshake(Handshake),
    /// See [`Metadata`].
    Metadata(Metadata),
    /// See [`CreateChannel`].
    CreateChannel(CreateChannel),
    /// Delete a channel and its data.
    DeleteChannel(ChannelName),
    /// List channels.
    ListChannels,
    /// Describe one channel.
    DescribeChannel(ChannelName),
    /// See [`Purge`].
    Purge(Purge),
    /// See [`CreateSubscription`].
    CreateSubscription(CreateSubscription),
    /// Delete a subscription.
    DeleteSubscription(SubscriptionRef),
    /// List a channel's subscriptions.
    ListSubscriptions(ChannelName),
    /// See [`Publish`].
    Publish(Publish),
    /// See [`Subscribe`].
    Subscribe(Subscribe),
    /// Detach a consumer; its in-flight deliveries return at once.
    Detach(ConsumerRef),
    /// See [`Credit`].
    Credit(Credit),
    /// See [`Ack`].
    Ack(Ack),
    /// See [`Nack`].
    Nack(Nack),
    /// See [`Extend`].
    Extend(Extend),
    /// See [`Reject`].
    Reject(Reject),
    /// See [`InitProducer`].
    InitProducer(InitProducer),
    /// See [`Redrive`].
    Redrive(Redrive),
}

pub(crate) fn to_msgpack<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(rmp_serde::to_vec_named(value).expect("wire types always serialize"))
}

pub(crate) fn from_msgpack<T: DeserializeOwned>(
    what: &'static str,
    body: &[u8],
) -> Result<T, ProtocolError> {
    rmp_serde::from_slice(body).map_err(|e| ProtocolError::Body {
        what,
        detail: e.to_string(),
    })
}

impl Request {
    /// The opcode that names this request on the wire.
    pub fn opcode(&self) -> u16 {
        use opcode::*;
        match self {
            Self::Handshake(_) => HANDSHAKE,
            Self::Metadata(_) => METADATA,
            Self::CreateChannel(_) => CREATE_CHANNEL,
            Self::DeleteChannel(_) => DELETE_CHANNEL,
            Self::ListChannels => LIST_CHANNELS,
            Self::DescribeChannel(_) => DESCRIBE_CHANNEL,
            Self::Purge(_) => PURGE,
            Self::CreateSubscription(_) => CREATE_SUBSCRIPTION,
            Self::DeleteSubscription(_) => DELETE_SUBSCRIPTION,
            Self::ListSubscriptions(_) => LIST_SUBSCRIPTIONS,
            Self::Publish(_) => PUBLISH,
            Self::Subscribe(_) => SUBSCRIBE,
            Self::Detach(_) => DETACH,
            Self::Credit(_) => CREDIT,
            Self::Ack(_) => ACK,
            Self::Nack(_) => NACK,
            Self::Extend(_) => EXTEND,
            Self::Reject(_) => REJECT,
            Self::InitProducer(_) => INIT_PRODUCER,
            Self::Redrive(_) => REDRIVE,
        }
    }

    /// Whether the request changes or reads broker administration (for a later access check).
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Self::CreateChannel(_)
                | Self::DeleteChannel(_)
                | Self::Purge(_)
                | Self::CreateSubscription(_)
                | Self::DeleteSubscription(_)
                | Self::Redrive(_)
        )
    }

    /// The body as two parts: a small head, and a tail sent as is (the record batch, so
    /// publishing never copies it). The tail is empty for control requests.
    pub fn encode_body(&self) -> (Bytes, Bytes) {
        let empty = Bytes::new();
        match self {
            Self::Handshake(r) => (to_msgpack(r), empty),
            Self::Metadata(r) => (to_msgpack(r), empty),
            Self::CreateChannel(r) => (to_msgpack(r), empty),
            Self::DeleteChannel(r) | Self::DescribeChannel(r) | Self::ListSubscriptions(r) => {
                (to_msgpack(r), empty)
            }
            Self::ListChannels => (to_msgpack(&()), empty),
            Self::Purge(r) => (to_msgpack(r), empty),
            Self::CreateSubscription(r) => (to_msgpack(r), empty),
            Self::DeleteSubscription(r) => (to_msgpack(r), empty),
            Self::Publish(p) => (
                publish_head(&p.channel, p.partition),
                p.batch.as_bytes().clone(),
            ),
            Self::Subscribe(r) => (to_msgpack(r), empty),
            Self::Detach(r) => (to_msgpack(r), empty),
            Self::Credit(r) => (to_msgpack(r), empty),
            Self::Ack(r) => (to_msgpack(r), empty),
            Self::Nack(r) => (to_msgpack(r), empty),
            Self::Extend(r) => (to_msgpack(r), empty),
            Self::Reject(r) => (to_msgpack(r), empty),
            Self::InitProducer(r) => (to_msgpack(r), empty),
            Self::Redrive(r) => (to_msgpack(r), empty),
        }
    }

    /// Parses a request body.
    ///
    /// # Errors
    /// [`ProtocolError::UnknownOpcode`], or a body error naming what failed to parse.
    pub fn decode(opcode: u16, body: Bytes) -> Result<Self, ProtocolError> {
        use opcode::*;
        let b = &body[..];
        Ok(match opcode {
            HANDSHAKE => Self::Handshake(from_msgpack("handshake", b)?),
            METADATA => Self::Metadata(from_msgpack("metadata", b)?),
            CREATE_CHANNEL => Self::CreateChannel(from_msgpack("create channel", b)?),
            DELETE_CHANNEL => Self::DeleteChannel(from_msgpack("delete channel", b)?),
            LIST_CHANNELS => {
                from_msgpack::<()>("list channels", b)?;
                Self::ListChannels
            }
            DESCRIBE_CHANNEL => Self::DescribeChannel(from_msgpack("describe channel", b)?),
            PURGE => Self::Purge(from_msgpack("purge", b)?),
            CREATE_SUBSCRIPTION => {
                Self::CreateSubscription(from_msgpack("create subscription", b)?)
            }
            DELETE_SUBSCRIPTION => {
                Self::DeleteSubscription(from_msgpack("delete subscription", b)?)
            }
            LIST_SUBSCRIPTIONS => Self::ListSubscriptions(from_msgpack("list subscriptions", b)?),
            PUBLISH => Self::Publish(decode_publish(body)?),
            SUBSCRIBE => Self::Subscribe(from_msgpack("subscribe", b)?),
            DETACH => Self::Detach(from_msgpack("detach", b)?),
            CREDIT => Self::Credit(from_msgpack("credit", b)?),
            ACK => Self::Ack(from_msgpack("ack", b)?),
            NACK => Self::Nack(from_msgpack("nack", b)?),
            EXTEND => Self::Extend(from_msgpack("extend", b)?),
            REJECT => Self::Reject(from_msgpack("reject", b)?),
            INIT_PRODUCER => Self::InitProducer(from_msgpack("init producer", b)?),
            REDRIVE => Self::Redrive(from_msgpack("redrive", b)?),
            other => return Err(ProtocolError::UnknownOpcode { opcode: other }),
        })
    }
}

fn publish_head(channel: &str, partition: u32) -> Bytes {
    let mut head = BytesMut::with_capacity(6 + channel.len());
    head.put_u16_le(channel.len() as u16);
    head.put_slice(channel.as_bytes());
    head.put_u32_le(partition);
    head.freeze()
}

pub(crate) fn take(body: &mut Bytes, n: usize, what: &'static str) -> Result<Bytes, ProtocolError> {
    if body.len() < n {
        return Err(ProtocolError::Truncated {
            what,
            need: n,
            have: body.len(),
        });
    }
    Ok(body.split_to(n))
}

fn decode_publish(mut body: Bytes) -> Result<Publish, ProtocolError> {
    let len = take(&mut body, 2, "publish channel length")?.get_u16_le() as usize;
    let name = take(&mut body, len, "publish channel")?;
    let channel = std::str::from_utf8(&name)
        .map_err(|_| ProtocolError::Utf8("channel name"))?
        .to_owned();
    let partition = take(&mut body, 4, "publish partition")?.get_u32_le();
    let batch = RecordBatch::from_bytes(body)?;
    Ok(Publish {
        channel,
        partition,
        batch,
    })
}
