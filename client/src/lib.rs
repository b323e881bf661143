//! The Rust client for Sluice: publish, consume and administer over Sluice's binary protocol.
//!
//! One [`Client`] holds one pipelined TCP connection: many requests in flight, answers matched
//! by correlation id by a reader task, frames coalesced into few syscalls by a writer task. If the
//! connection drops, the next request opens a new one (with backoff) and consumers re-subscribe.
//!
//! - [`Producer`]: publishes to one channel; batches per partition (linger, size, many batches in
//!   flight); [`Producer::send`] resolves when the message is stored.
//! - [`Consumer`]: a [`futures::Stream`] of [`Delivery`] items under a prefetch window;
//!   [`Delivery::ack`], [`Delivery::nack`], [`Delivery::reject`], [`Delivery::reject_invalid`],
//!   [`Delivery::extend`]; acks coalesce into ranges.
//! - [`ProducerBuilder::idempotent`]: a producer session, so resent batches are stored once;
//!   [`Outcome`] says `Stored`, `Duplicate` or `Invalid` per message.
//! - [`IdempotentReceiver`]: skips message ids already processed (delivery is at least once).
//! - Administration: [`Client::create_channel`], [`Client::list_channels`],
//!   [`Client::redrive`], … (see `admin`).
//!
//! ```no_run
//! use futures::StreamExt;
//! use sluice_client::types::{ChannelKind, ChannelSettings};
//! use sluice_client::{Client, Message};
//!
//! # async fn run() -> sluice_client::Result<()> {
//! let client = Client::connect("127.0.0.1:7480").await?;
//! client.create_channel("orders", ChannelKind::Queue, ChannelSettings::default()).await?;
//!
//! let producer = client.producer("orders").build().await?;
//! let outcome = producer.send(Message::new("order #1").key("customer-7")).await?;
//! println!("stored at {}:{}", outcome.partition(), outcome.offset());
//!
//! let mut consumer = client.consumer("orders").subscribe().await?;
//! if let Some(delivery) = consumer.next().await {
//!     let delivery = delivery?;
//!     println!("got {:?}", delivery.payload());
//!     delivery.ack().await?;
//! }
//! consumer.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Errors are [`ClientError`]; a broker refusal carries the broker's stable [`ErrorCode`].

mod admin;
mod client;
mod connection;
mod consumer;
mod error;
mod idempotent;
mod message;
mod producer;

#[cfg(test)]
mod tests;

pub use client::{Client, ClientOptions};
pub use consumer::{Consumer, ConsumerBuilder, Delivery};
pub use error::{ClientError, Result};
pub use idempotent::{IdempotentReceiver, MemoryStore, ProcessedStore};
pub use message::Message;
pub use producer::{Outcome, PendingOutcome, Producer, ProducerBuilder, ProducerOptions};
pub use sluice_protocol::{ErrorCode, NewMessage};

/// Wire types used by the administration API, re-exported from the protocol crate.
pub mod types {
    pub use sluice_protocol::types::{
        ChannelDescription, ChannelKind, ChannelMeta, ChannelSettings, ChannelSummary, FsyncPolicy,
        PartitionInfo, PartitionMeta, PayloadFormat, SubscriptionInfo,
    };
}

/// Names of the headers the broker writes on dead letters and invalid messages, re-exported
/// from the protocol crate.
pub use sluice_protocol::headers;
