//! [`Producer`]: publishes to one channel, batching messages per partition.
//!
//! A message is encoded once, straight into the record batch of its partition; the batch goes to
//! the broker when it is full, when the linger time has passed, or (with no linger) as soon as
//! nothing else is waiting to be batched. Many batches are in flight at once, up to a window;
//! past it, `send` waits, which is the backpressure.
//!
//! Partition choice: a key hashes to its partition; with no key, a publisher-set id does (so
//! duplicates meet where the broker can drop them); with neither, messages stick to one
//! partition per batch and the partition rotates round robin from batch to batch, starting at a
//! random one.

mod partition;
mod publish;
mod session;
mod task;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sluice_protocol::NewMessage;
use tokio::sync::{mpsc, oneshot, Semaphore};

use self::session::Session;
use crate::error::{ClientError, Result};
use crate::Client;

/// Where a published message ended up.
///
/// A message that broke the channel's contract while the channel has no invalid channel is not
/// an outcome: its `send` fails with [`ErrorCode::InvalidMessage`](crate::ErrorCode).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Stored (durable by the channel's durability setting) at this partition and offset.
    Stored {
        /// Partition the message went to.
        partition: u32,
        /// Its offset there.
        offset: u64,
    },
    /// Not stored again: the broker had it already (same producer sequence, or same message id
    /// within the channel's dedupe window), stored at this partition and offset.
    Duplicate {
        /// Partition of the original.
        partition: u32,
        /// Offset of the original.
        offset: u64,
    },
    /// Broke the channel's contract: never delivered to the channel's consumers, stored in
    /// its invalid channel instead.
    Invalid {
        /// Partition of the channel the message was sent to.
        partition: u32,
        /// Which rule it broke.
        reason: String,
        /// The invalid channel that holds it.
        routed_to: String,
    },
}

impl Outcome {
    /// The partition the message was sent to (for a duplicate, the original's).
    pub fn partition(&self) -> u32 {
        match self {
            Self::Stored { partition, .. }
            | Self::Duplicate { partition, .. }
            | Self::Invalid { partition, .. } => *partition,
        }
    }

    /// The offset of the message in its partition: where it was stored, or where the original
    /// of a duplicate is. An invalid message has none in this channel: `u64::MAX` (see
    /// [`Outcome::position`] for an `Option`).
    pub fn offset(&self) -> u64 {
        self.position().map_or(u64::MAX, |(_, offset)| offset)
    }

    /// `(partition, offset)` of the message in the channel, if it is there (stored now or
    /// before); `None` for an invalid message.
    pub fn position(&self) -> Option<(u32, u64)> {
        match self {
            Self::Stored { partition, offset } | Self::Duplicate { partition, offset } => {
                Some((*partition, *offset))
            }
            Self::Invalid { .. } => None,
        }
    }

    /// Whether the message was stored by this publish.
    pub fn is_stored(&self) -> bool {
        matches!(self, Self::Stored { .. })
    }

    /// Whether the broker had the message already.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate { .. })
    }
}

/// The outcome of an [enqueued](Producer::enqueue) message, still to come.
#[derive(Debug)]
pub struct PendingOutcome(oneshot::Receiver<Result<Outcome>>);

impl Future for PendingOutcome {
    type Output = Result<Outcome>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(ClientError::Closed)))
    }
}

/// How a [`Producer`] batches.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// How long an open batch waits for more messages. Zero: send as soon as nothing else is
    /// queued (batches then form from whatever arrived together).
    pub linger: Duration,
    /// Most messages in one batch.
    pub max_batch_messages: u32,
    /// Most bytes in one batch (also capped by the broker's frame limit).
    pub max_batch_bytes: usize,
    /// Most batches awaiting the broker's answer at once.
    pub max_in_flight: usize,
    /// Messages `send` may queue before it waits.
    pub queue_capacity: usize,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            linger: Duration::ZERO,
            max_batch_messages: 1000,
            max_batch_bytes: 1 << 20,
            max_in_flight: 32,
            queue_capacity: 16 * 1024,
        }
    }
}

/// Builds a [`Producer`]; see [`Client::producer`].
#[derive(Debug)]
pub struct ProducerBuilder {
    /// Client to publish through.
    client: Client,
    /// Target channel.
    channel: String,
    /// Batching settings.
    options: ProducerOptions,
    /// Whether to open a producer session, so the broker drops resent batches.
    idempotent: bool,
}

impl ProducerBuilder {
    /// Makes the producer idempotent: `build` opens a producer session with the broker, every
    /// batch carries the session and a per-partition sequence, and a batch whose connection was
    /// lost is resent with the same bytes. The broker stores it once; a resend of a batch it
    /// had stored is answered [`Outcome::Duplicate`] with the original offsets.
    ///
    /// ```no_run
    /// # async fn run(client: sluice_client::Client) -> sluice_client::Result<()> {
    /// let producer = client.producer("orders").idempotent().build().await?;
    /// let outcome = producer.send(sluice_client::Message::new("once")).await?;
    /// assert!(outcome.position().is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Sets the linger time (default zero).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.options.linger = linger;
        self
    }

    /// Sets the most messages per batch (default 1000).
    pub fn max_batch_messages(mut self, n: u32) -> Self {
        self.options.max_batch_messages = n.max(1);
        self
    }

    /// Sets the most bytes per batch (default 1 MiB).
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.options.max_batch_bytes = bytes;
        self
    }

    /// Sets the most batches in flight (default 32).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.options.max_in_flight = n.max(1);
        self
    }

    /// Replaces all options.
    pub fn options(mut self, options: ProducerOptions) -> Self {
        self.options = options;
        self
    }

    /// Looks the channel up, opens the producer session if [idempotent](Self::idempotent), and
    /// starts the producer.
    ///
    /// # Errors
    /// `UnknownChannel`, the broker's refusal of a session, or a connection error.
    pub async fn build(mut self) -> Result<Producer> {
        let meta = self.client.channel_meta(&self.channel).await?;
        let partitions = u32::try_from(meta.partitions.len())
            .unwrap_or(u32::MAX)
            .max(1);
        // The broker's batch limit (0 from a broker that does not tell it), and its frame
        // limit less room for the publish request around the batch.
        let connection = self.client.connection().await?;
        let info = connection.info();
        let frame_limit = (info.max_frame as usize).saturating_sub(1024);
        let batch_limit = match info.max_batch {
            0 => frame_limit,
            max_batch => (max_batch as usize).min(frame_limit),
        };
        self.options.max_batch_bytes = self.options.max_batch_bytes.min(batch_limit).max(1);
        let session = match self.idempotent {
            true => Some(Session::open(&self.client, &self.channel).await?),
            false => None,
        };
        let shared = Arc::new(Shared {
            session,
            in_flight: Arc::new(Semaphore::new(self.options.max_in_flight)),
            client: self.client,
            channel: self.channel,
            partitions,
            // A random start, so short-lived producers (one `sluicectl publish` each) do not
            // all pile their messages onto partition 0.
            round_robin: AtomicU32::new(rand::random_range(0..partitions)),
            max_message_batch: batch_limit,
            options: self.options,
        });
        let (tx, rx) = mpsc::channel(shared.options.queue_capacity.max(1));
        tokio::spawn(task::Accumulator::new(shared.clone(), rx).run());
        Ok(Producer { shared, queue: tx })
    }
}

/// What the producer handle and its batching task share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Client to publish through.
    client: Client,
    /// Target channel.
    channel: String,
    /// Partition count, from metadata.
    partitions: u32,
    /// Next partition for messages with neither key nor id.
    round_robin: AtomicU32,
    /// Batching settings.
    options: ProducerOptions,
    /// The largest batch the broker takes (its batch and frame limits), which bounds one
    /// message.
    max_message_batch: usize,
    /// One permit per batch in flight.
    in_flight: Arc<Semaphore>,
    /// The producer session of an idempotent producer.
    session: Option<Session>,
}

impl Shared {
    fn next_round_robin(&self) -> u32 {
        self.round_robin.fetch_add(1, Ordering::Relaxed) % self.partitions
    }
}

/// A request to the batching task.
pub(crate) enum Submit {
    /// One message and where its outcome goes.
    Message(NewMessage, oneshot::Sender<Result<Outcome>>),
    /// Send every open batch now and answer when all in flight are answered.
    Flush(oneshot::Sender<()>),
}

/// Publishes to one channel. Cheap to clone; clones share the batches.
///
/// ```no_run
/// # async fn run(client: sluice_client::Client) -> sluice_client::Result<()> {
/// use sluice_client::Message;
/// let producer = client.producer("orders").build().await?;
/// let outcome = producer.send(Message::new("hello").key("customer-7")).await?;
/// println!("stored at {}:{}", outcome.partition(), outcome.offset());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    /// Shared with the batching task.
    shared: Arc<Shared>,
    /// Queue into the batching task.
    queue: mpsc::Sender<Submit>,
}

impl Client {
    /// Starts building a producer for `channel`.
    pub fn producer(&self, channel: impl Into<String>) -> ProducerBuilder {
        ProducerBuilder {
            client: self.clone(),
            channel: channel.into(),
            options: ProducerOptions::default(),
            idempotent: false,
        }
    }
}

impl Producer {
    /// The channel this producer publishes to.
    pub fn channel(&self) -> &str {
        &self.shared.channel
    }

    /// Number of partitions of the channel.
    pub fn partitions(&self) -> u32 {
        self.shared.partitions
    }

    /// `(producer_id, epoch)` of an idempotent producer's session; `None` otherwise.
    pub fn session(&self) -> Option<(u64, u16)> {
        let id = self.shared.session.as_ref()?.id();
        Some((id.producer_id, id.epoch))
    }

    /// Publishes one message, batched with others, and waits until the broker has stored it (or
    /// found it a duplicate, or routed it to the channel's invalid channel).
    ///
    /// # Errors
    /// [`ClientError::InvalidMessage`] when it cannot be encoded and
    /// [`ClientError::MessageTooLarge`] when it exceeds the broker's batch limit; a broker error with
    /// [`ErrorCode::InvalidMessage`](crate::ErrorCode) when it breaks the channel's contract
    /// and the channel has no invalid channel (nothing is stored); the broker's error for its
    /// batch; [`ClientError::Disconnected`] when the connection dropped before the answer (the
    /// message may or may not be stored: an [idempotent](ProducerBuilder::idempotent) producer
    /// resends it safely itself; otherwise set an id to make a retry safe).
    pub async fn send(&self, message: impl Into<NewMessage>) -> Result<Outcome> {
        self.enqueue(message).await?.await
    }

    /// Queues one message for batching and returns its outcome to await later. Messages
    /// enqueued one after another keep their order within their partition (as with `send`
    /// awaited one by one), while many are in flight.
    ///
    /// ```no_run
    /// # async fn run(producer: sluice_client::Producer) -> sluice_client::Result<()> {
    /// let mut pending = Vec::new();
    /// for line in ["a", "b", "c"] {
    ///     pending.push(producer.enqueue(sluice_client::Message::new(line)).await?);
    /// }
    /// for outcome in pending {
    ///     println!("stored at offset {}", outcome.await?.offset());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ClientError::InvalidMessage`] or [`ClientError::MessageTooLarge`] as for
    /// [`Producer::send`]; [`ClientError::Closed`] when
    /// the batching task has stopped. The returned future fails as [`Producer::send`] does.
    pub async fn enqueue(&self, message: impl Into<NewMessage>) -> Result<PendingOutcome> {
        let message = message.into();
        partition::validate(&message, self.shared.max_message_batch)?;
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Submit::Message(message, tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(PendingOutcome(rx))
    }

    /// Publishes the messages as one batch per partition, in parallel, skipping the linger and
    /// queue. Outcomes come back in the order of `messages`.
    ///
    /// # Errors
    /// As [`Producer::send`]; the first failing batch or refused message fails the call (other
    /// messages may be stored).
    pub async fn send_batch(&self, messages: Vec<NewMessage>) -> Result<Vec<Outcome>> {
        publish::send_batch(&self.shared, messages).await
    }

    /// Sends every open batch and waits until all batches in flight are answered.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the batching task has stopped.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Submit::Flush(tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }
}
