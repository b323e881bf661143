//! Responses (broker → client), error bodies and pushed deliveries.
//!
//! A response frame carries the opcode of the request it answers, so the opcode alone says how
//! to read the body. Deliveries are pushed frames with a fixed binary head in front of a slice of
//! a stored record batch:
//!
//! ```text
//! Delivery body
//!   u64 consumer_id
//!   u32 partition
//!   u32 delivery_count   1 for a first delivery
//!   u64 first_offset     offset of the first record below
//!   i64 timestamp        append time of the batch, ms since the Unix epoch
//!   u32 record_count
//!   ..  records          record_count × { u32 length, message record }, as stored
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, ProtocolError};
use crate::request::{from_msgpack, opcode, take, to_msgpack};
use crate::types::{
    ChannelDescription, ChannelMeta, ChannelSummary, DuplicateRun, InvalidOutcome, PartitionMeta,
    StoredRun, SubscriptionInfo,
};

/// Size of the fixed delivery head.
pub const DELIVERY_HEAD_LEN: usize = 36;

/// Answer to a handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeOk {
    /// Protocol version chosen for the connection.
    pub version: u8,
    /// Broker name and version, for logs.
    pub broker: String,
    /// Largest frame the broker accepts.
    pub max_frame: u32,
    /// Largest record batch the broker stores, so a client can size its batches and refuse a
    /// message no batch can carry; 0 from brokers that predate it (then only `max_frame`).
    #[serde(default)]
    pub max_batch: u32,
}

/// Answer to a publish: where each message went.
///
/// `stored` runs, `duplicates` and `invalid` together name every message index of the batch
/// exactly once. The last two were added later and are empty in older brokers' answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAck {
    /// Partition the batch went to.
    pub partition: u32,
    /// Runs of messages stored now, at consecutive offsets.
    pub stored: Vec<StoredRun>,
    /// Messages already stored (same producer sequence or same id within the dedupe window).
    #[serde(default)]
    pub duplicates: Vec<DuplicateRun>,
    /// Messages that broke the channel's contract.
    #[serde(default)]
    pub invalid: Vec<InvalidOutcome>,
}

/// Answer to [`InitProducer`](crate::request::InitProducer): the session to stamp batches with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSession {
    /// The producer's id, new or the one asked for.
    pub producer_id: u64,
    /// Its epoch; batches of older epochs are fenced.
    pub epoch: u16,
}

/// Answer to a redrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redriven {
    /// Dead letters published back.
    pub count: u64,
}

/// Answer to a subscribe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The subscription attached to (a generated name for ephemeral ones).
    pub subscription: String,
    /// Partitions the consumer receives from.
    pub partitions: Vec<PartitionMeta>,
}

/// Body of an error frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// For [`ErrorCode::NotLeader`]: where to go instead.
    #[serde(default)]
    pub leader: Option<String>,
}

impl ErrorBody {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            leader: None,
        }
    }

    /// Encodes the body.
    pub fn encode(&self) -> Bytes {
        to_msgpack(self)
    }

    /// Decodes the body.
    ///
    /// # Errors
    /// [`ProtocolError::Body`] when it is not an error body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtocolError> {
        from_msgpack("error", body)
    }
}

/// Every successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// To a handshake.
    Handshake(HandshakeOk),
    /// To a metadata request.
    Metadata(Vec<ChannelMeta>),
    /// To requests that return nothing but success.
    Ok,
    /// To list channels.
    Channels(Vec<ChannelSummary>),
    /// To describe channel.
    Description(ChannelDescription),
    /// To list subscriptions.
    Subscriptions(Vec<SubscriptionInfo>),
    /// To publish.
    Published(PublishAck),
    /// To subscribe.
    Subscribed(Subscribed),
    /// To init producer.
    ProducerSession(ProducerSession),
    /// To redrive.
    Redriven(Redriven),
}

impl Response {
    /// Encodes the body.
    pub fn encode_body(&self) -> Bytes {
        match self {
            Self::Handshake(r) => to_msgpack(r),
            Self::Metadata(r) => to_msgpack(r),
            Self::Ok => to_msgpack(&()),
            Self::Channels(r) => to_msgpack(r),
            Self::Description(r) => to_msgpack(r),
            Self::Subscriptions(r) => to_msgpack(r),
            Self::Published(r) => to_msgpack(r),
            Self::Subscribed(r) => to_msgpack(r),
            Self::ProducerSession(r) => to_msgpack(r),
            Self::Redriven(r) => to_msgpack(r),
        }
    }

    /// Decodes the answer to a request with `opcode`.
    ///
    /// # Errors
    /// [`ProtocolError`] when the body does not fit the opcode.
    pub fn decode(op: u16, body: &[u8]) -> Result<Self, ProtocolError> {
        Ok(match op {
            opcode::HANDSHAKE => Self::Handshake(from_msgpack("handshake answer", body)?),
            opcode::METADATA => Self::Metadata(from_msgpack("metadata answer", body)?),
            opcode::LIST_CHANNELS => Self::Channels(from_msgpack("channel list", body)?),
            opcode::DESCRIBE_CHANNEL => Self::Description(from_msgpack("description", body)?),
            opcode::LIST_SUBSCRIPTIONS => {
                Self::Subscriptions(from_msgpack("subscription list", body)?)
            }
            opcode::PUBLISH => Self::Published(from_msgpack("publish answer", body)?),
            opcode::SUBSCRIBE => Self::Subscribed(from_msgpack("subscribe answer", body)?),
            opcode::INIT_PRODUCER => {
                Self::ProducerSession(from_msgpack("init producer answer", body)?)
            }
            opcode::REDRIVE => Self::Redriven(from_msgpack("redrive answer", body)?),
            opcode::CREATE_CHANNEL
            | opcode::DELETE_CHANNEL
            | opcode::PURGE
            | opcode::CREATE_SUBSCRIPTION
            | opcode::DELETE_SUBSCRIPTION
            | opcode::DETACH
            | opcode::CREDIT
            | opcode::ACK
            | opcode::NACK
            | opcode::EXTEND
            | opcode::REJECT => {
                from_msgpack::<()>("empty answer", body)?;
                Self::Ok
            }
            other => return Err(ProtocolError::UnknownOpcode { opcode: other }),
        })
    }
}

/// A pushed delivery: some consecutive records of one stored batch, for one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The consumer it is for.
    pub consumer_id: u64,
    /// Partition the records come from.
    pub partition: u32,
    /// 1 for a first delivery; 1 + logged returns otherwise.
    pub delivery_count: u32,
    /// Offset of the first record.
    pub first_offset: u64,
    /// Append time of the batch.
    pub timestamp: i64,
    /// Number of records.
    pub record_count: u32,
    /// `record_count` length-prefixed message records: a slice of the stored batch.
    pub records: Bytes,
}

impl Delivery {
    /// The fixed head; the records follow it on the wire untouched.
    pub fn encode_head(&self) -> Bytes {
        let mut head = BytesMut::with_capacity(DELIVERY_HEAD_LEN);
        head.put_u64_le(self.consumer_id);
        head.put_u32_le(self.partition);
        head.put_u32_le(self.delivery_count);
        head.put_u64_le(self.first_offset);
        head.put_i64_le(self.timestamp);
        head.put_u32_le(self.record_count);
        head.freeze()
    }

    /// Parses a delivery body; the records stay a slice of `body`.
    ///
    /// # Errors
    /// [`ProtocolError::Truncated`] when the head is cut short.
    pub fn decode(mut body: Bytes) -> Result<Self, ProtocolError> {
        let mut head = take(&mut body, DELIVERY_HEAD_LEN, "delivery head")?;
        Ok(Self {
            consumer_id: head.get_u64_le(),
            partition: head.get_u32_le(),
            delivery_count: head.get_u32_le(),
            first_offset: head.get_u64_le(),
            timestamp: head.get_i64_le(),
            record_count: head.get_u32_le(),
            records: body,
        })
    }

    /// The records one by one, as zero-copy slices; stops early at malformed framing.
    pub fn records(&self) -> impl Iterator<Item = Bytes> + '_ {
        let mut rest = self.records.clone();
        (0..self.record_count).map_while(move |_| {
            if rest.len() < 4 {
                return None;
            }
            let len = (&rest[..4]).get_u32_le() as usize;
            if rest.len() < 4 + len {
                return None;
            }
            rest.advance(4);
            Some(rest.split_to(len))
        })
    }
}
