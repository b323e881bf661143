//! [`Consumer`]: a [`Stream`] of [`Delivery`] items from one subscription.
//!
//! Flow control is a prefetch window: the consumer holds at most `prefetch` deliveries that are
//! not yet acked or nacked, and grants the broker credit again as they are settled (in steps of
//! half the window, so the pipe stays full). Pushed delivery frames go straight from the
//! connection's reader into this stream's inbox and are split into messages here without
//! copying. If the connection dies the consumer re-subscribes on a new one; the deliveries it
//! held are returned by the broker and come again, so settling them fails with
//! [`ClientError::NotHeld`].

mod delivery;
mod driver;
mod settle;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::stream::FuturesUnordered;
use futures::Stream;
use sluice_protocol::message::derived_id;
use sluice_protocol::{Delivery as WireDelivery, MessageView, ProtocolError};
use tokio::sync::{mpsc, oneshot};

pub use delivery::Delivery;

use crate::admin::millis;
use crate::connection::Inbound;
use crate::error::{ClientError, Result};
use crate::Client;
use delivery::Command;
use driver::{attach, Driver, Spec};

/// Builds a [`Consumer`]; see [`Client::consumer`].
#[derive(Debug)]
pub struct ConsumerBuilder {
    /// Client to consume through.
    client: Client,
    /// What to subscribe to.
    spec: Spec,
}

impl Client {
    /// Starts building a consumer of `channel`. By default it attaches to a queue's own
    /// subscription, or to a new ephemeral subscription on a topic, with a prefetch of 256.
    pub fn consumer(&self, channel: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder {
            client: self.clone(),
            spec: Spec {
                channel: channel.into(),
                subscription: None,
                window: 256,
                lease_ms: None,
                limit: None,
            },
        }
    }
}

impl ConsumerBuilder {
    /// Attaches to this named subscription (on a topic).
    pub fn subscription(mut self, name: impl Into<String>) -> Self {
        self.spec.subscription = Some(name.into());
        self
    }

    /// Sets the prefetch window: most deliveries held unsettled at once (at least 1).
    pub fn prefetch(mut self, window: u32) -> Self {
        self.spec.window = window.max(1);
        self
    }

    /// Overrides the subscription's lease (ack deadline) for this consumer's deliveries.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.spec.lease_ms = Some(millis(lease));
        self
    }

    /// Takes at most `count` deliveries in total, ever: the broker is never granted more credit.
    pub fn limit(mut self, count: u64) -> Self {
        self.spec.limit = Some(count);
        self
    }

    /// Subscribes and starts receiving.
    ///
    /// # Errors
    /// `UnknownChannel`, `UnknownSubscription`, or a connection error.
    pub async fn subscribe(self) -> Result<Consumer> {
        let (sink, inbox) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let credit = match self.spec.limit {
            Some(limit) => u32::try_from(limit.min(u64::from(self.spec.window))).unwrap_or(0),
            None => self.spec.window,
        };
        let attached = attach(&self.client, &self.spec, 1, credit, &sink).await?;
        let delivered = Arc::new(AtomicU64::new(0));
        let consumer = Consumer {
            inbox,
            current: None,
            commands: commands_tx,
            subscription: attached.subscribed.subscription.clone(),
            partitions: attached
                .subscribed
                .partitions
                .iter()
                .map(|p| p.id)
                .collect(),
            delivered: delivered.clone(),
            ended: false,
        };
        let driver = Driver {
            client: self.client,
            spec: self.spec,
            commands,
            sink,
            delivered,
            tag: 1,
            attached,
            granted: u64::from(credit),
            pending: Default::default(),
            to_grant: 0,
            in_flight: FuturesUnordered::new(),
            first_error: None,
        };
        tokio::spawn(driver.run());
        Ok(consumer)
    }
}

/// The records of one delivery frame not yet handed out.
struct Batch {
    /// Generation of the subscription that received it.
    tag: u64,
    /// Partition, delivery count and timestamp shared by its records.
    partition: u32,
    /// See [`Delivery::delivery_count`].
    delivery_count: u32,
    /// Append time.
    timestamp: i64,
    /// Offset of the next record.
    next_offset: u64,
    /// Records left.
    remaining: u32,
    /// Length-prefixed records left.
    records: Bytes,
}

/// A stream of deliveries from one subscription; ends after [`Consumer::close`] or when it
/// cannot re-subscribe (the last item is then the error).
///
/// ```no_run
/// # async fn run(client: sluice_client::Client) -> sluice_client::Result<()> {
/// use futures::StreamExt;
/// let mut consumer = client.consumer("orders").prefetch(100).subscribe().await?;
/// while let Some(delivery) = consumer.next().await {
///     let delivery = delivery?;
///     println!("{:?}", delivery.payload());
///     delivery.ack().await?;
/// }
/// # Ok(())
/// # }
/// ```
pub struct Consumer {
    /// Delivery frames from the connection's reader; the end marker from the driver.
    inbox: mpsc::UnboundedReceiver<Inbound>,
    /// The frame being split into deliveries.
    current: Option<Batch>,
    /// To the driver task.
    commands: mpsc::UnboundedSender<Command>,
    /// Subscription name (generated for an ephemeral subscription).
    subscription: String,
    /// Partitions it receives from.
    partitions: Vec<u32>,
    /// Deliveries received, shared with the driver for its limit.
    delivered: Arc<AtomicU64>,
    /// Whether the driver has said it stopped.
    ended: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("subscription", &self.subscription)
            .field("partitions", &self.partitions)
            .finish()
    }
}

impl Consumer {
    /// The subscription attached to (a generated name for an ephemeral one).
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The partitions this consumer receives from.
    pub fn partitions(&self) -> &[u32] {
        &self.partitions
    }

    /// Sends pending settlements, waits for the broker's answers and detaches. Unsettled
    /// deliveries return to the subscription.
    ///
    /// # Errors
    /// The first failure of a settlement made with [`Delivery::ack_nowait`].
    pub async fn close(self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Close(tx))
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// The next delivery of the current frame, if any is left.
    fn next_from_batch(&mut self) -> Option<Result<Delivery>> {
        let batch = self.current.as_mut()?;
        if batch.remaining == 0 {
            self.current = None;
            return None;
        }
        let Some(record) = split_record(&mut batch.records) else {
            self.current = None;
            let cut = ProtocolError::Truncated {
                what: "delivery record",
                need: 4,
                have: 0,
            };
            return Some(Err(cut.into()));
        };
        let offset = batch.next_offset;
        batch.next_offset += 1;
        batch.remaining -= 1;
        let view = match MessageView::decode(record) {
            Ok(view) => view,
            Err(e) => return Some(Err(ProtocolError::from(e).into())),
        };
        Some(Ok(Delivery {
            id: view
                .id
                .unwrap_or_else(|| derived_id(batch.partition, offset)),
            payload: view.payload,
            key: view.key,
            headers: view.headers,
            partition: batch.partition,
            offset,
            delivery_count: batch.delivery_count,
            timestamp: batch.timestamp,
            commands: self.commands.clone(),
            tag: batch.tag,
            settled: AtomicBool::new(false),
        }))
    }

    fn start_batch(&mut self, tag: u64, delivery: WireDelivery) {
        let count = u64::from(delivery.record_count);
        self.delivered.fetch_add(count, Ordering::Relaxed);
        self.current = Some(Batch {
            tag,
            partition: delivery.partition,
            delivery_count: delivery.delivery_count,
            timestamp: delivery.timestamp,
            next_offset: delivery.first_offset,
            remaining: delivery.record_count,
            records: delivery.records,
        });
    }
}

/// Takes one `u32`-length-prefixed record off the front, without copying.
fn split_record(records: &mut Bytes) -> Option<Bytes> {
    if records.len() < 4 {
        return None;
    }
    let len = (&records[..4]).get_u32_le() as usize;
    if records.len() < 4 + len {
        return None;
    }
    records.advance(4);
    Some(records.split_to(len))
}

impl Stream for Consumer {
    type Item = Result<Delivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.next_from_batch() {
                return Poll::Ready(Some(item));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match std::task::ready!(self.inbox.poll_recv(cx)) {
                Some(Inbound::Delivery(tag, delivery)) => self.start_batch(tag, delivery),
                Some(Inbound::Ended(failure)) => {
                    self.ended = true;
                    if let Some(error) = failure {
                        return Poll::Ready(Some(Err(error)));
                    }
                }
                None => return Poll::Ready(None),
            }
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let (tx, _) = oneshot::channel();
        let _ = self.commands.send(Command::Close(tx));
    }
}
