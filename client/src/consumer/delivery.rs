//! [`Delivery`]: one message handed to a consumer, with the means to settle it.
//!
//! Settling (ack, nack, reject, extend) sends a command to the consumer's driver task, which batches it with others into
//! range acks; `ack` then waits until the broker has answered (the ack is durable), while
//! `ack_nowait` returns at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::settle::SettleKind;
use crate::admin::millis;
use crate::error::{ClientError, Result};

/// A request from a delivery or the consumer handle to the driver task.
pub(crate) enum Command {
    /// Settle one delivery.
    Settle {
        /// Generation of the subscription it came from.
        tag: u64,
        /// Its partition.
        partition: u32,
        /// Its offset.
        offset: u64,
        /// Ack, nack, reject or extend.
        kind: SettleKind,
        /// Who waits for the broker's answer, if anyone.
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    /// Flush, wait for answers, detach; answer with the first background settle error.
    Close(oneshot::Sender<Result<()>>),
}

/// One delivered message.
///
/// ```no_run
/// # async fn run(delivery: sluice_client::Delivery) -> sluice_client::Result<()> {
/// println!("{}:{} {:?}", delivery.partition(), delivery.offset(), delivery.payload());
/// delivery.ack().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Delivery {
    /// The body.
    pub(crate) payload: Bytes,
    /// Partitioning key, if the publisher set one.
    pub(crate) key: Option<Bytes>,
    /// Application headers, in the order written.
    pub(crate) headers: Vec<(String, Bytes)>,
    /// Publisher-made id, or one derived from partition and offset.
    pub(crate) id: [u8; 16],
    /// Partition it came from.
    pub(crate) partition: u32,
    /// Offset in the partition.
    pub(crate) offset: u64,
    /// 1 for a first delivery, more for redeliveries.
    pub(crate) delivery_count: u32,
    /// Append time of its batch, ms since the Unix epoch.
    pub(crate) timestamp: i64,
    /// The driver task, for settling.
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    /// Generation of the subscription it came from; settling it on a later one is refused.
    pub(crate) tag: u64,
    /// Set once acked or nacked, so it is settled at most once.
    pub(crate) settled: AtomicBool,
}

impl Delivery {
    /// The body.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The partitioning key, if any.
    pub fn key(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    /// All headers, in the order written.
    pub fn headers(&self) -> &[(String, Bytes)] {
        &self.headers
    }

    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The message id: publisher-made, or derived from partition and offset.
    pub fn id(&self) -> [u8; 16] {
        self.id
    }

    /// The partition it came from.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Its offset in the partition.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// 1 for a first delivery, more for redeliveries.
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    /// Append time of the message, ms since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Acknowledges the message and waits until the broker has recorded it durably.
    ///
    /// # Errors
    /// [`ClientError::NotHeld`] when it was settled already or its connection was lost (the
    /// broker has then returned it for redelivery); the broker's error; a connection error.
    pub async fn ack(&self) -> Result<()> {
        self.settle_and_wait(SettleKind::Ack).await
    }

    /// Acknowledges the message without waiting for the broker. A failure surfaces from
    /// [`Consumer::close`](crate::Consumer::close).
    ///
    /// # Errors
    /// [`ClientError::NotHeld`] when it was settled already; [`ClientError::Closed`] when the
    /// consumer has stopped.
    pub fn ack_nowait(&self) -> Result<()> {
        self.mark_settled()?;
        self.send(SettleKind::Ack, None)
    }

    /// Returns the message to the subscription, to be redelivered after `delay` (zero: now).
    ///
    /// # Errors
    /// As [`Delivery::ack`].
    pub async fn nack(&self, delay: Duration) -> Result<()> {
        let delay_ms = millis(delay);
        self.settle_and_wait(SettleKind::Nack { delay_ms }).await
    }

    /// Rejects the message for good: the broker moves it to the subscription's dead-letter
    /// channel with `sluice-death-reason: rejected` and `reason` in `sluice-death-error`, and
    /// waits until that is recorded.
    ///
    /// # Errors
    /// As [`Delivery::ack`].
    pub async fn reject(&self, reason: impl Into<String>) -> Result<()> {
        let reason = Arc::from(reason.into());
        let kind = SettleKind::Reject {
            reason,
            invalid: false,
        };
        self.settle_and_wait(kind).await
    }

    /// Rejects the message as invalid: the broker moves it to the channel's invalid-message
    /// channel with `reason` in `sluice-invalid-reason`, and waits until that is recorded.
    ///
    /// # Errors
    /// As [`Delivery::ack`]; the broker's error when the channel has no invalid channel.
    pub async fn reject_invalid(&self, reason: impl Into<String>) -> Result<()> {
        let reason = Arc::from(reason.into());
        let kind = SettleKind::Reject {
            reason,
            invalid: true,
        };
        self.settle_and_wait(kind).await
    }

    /// Extends the lease: the broker keeps the message with this consumer for `lease` from now.
    ///
    /// # Errors
    /// [`ClientError::NotHeld`] when it was settled already; the broker's error; a connection
    /// error.
    pub async fn extend(&self, lease: Duration) -> Result<()> {
        if self.settled.load(Ordering::Relaxed) {
            return Err(ClientError::NotHeld("already settled"));
        }
        let lease_ms = millis(lease);
        self.send_and_wait(SettleKind::Extend { lease_ms }).await
    }

    async fn settle_and_wait(&self, kind: SettleKind) -> Result<()> {
        self.mark_settled()?;
        self.send_and_wait(kind).await
    }

    async fn send_and_wait(&self, kind: SettleKind) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(kind, Some(tx))?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    fn mark_settled(&self) -> Result<()> {
        if self.settled.swap(true, Ordering::Relaxed) {
            return Err(ClientError::NotHeld("already settled"));
        }
        Ok(())
    }

    fn send(&self, kind: SettleKind, reply: Option<oneshot::Sender<Result<()>>>) -> Result<()> {
        let command = Command::Settle {
            tag: self.tag,
            partition: self.partition,
            offset: self.offset,
            kind,
            reply,
        };
        self.commands.send(command).map_err(|_| ClientError::Closed)
    }
}
