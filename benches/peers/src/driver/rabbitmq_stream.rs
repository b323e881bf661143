//! RabbitMQ streams through `rabbitmq-stream-client` (the native stream protocol, not AMQP):
//! one stream per destination, read by one named consumer per subscription (fan-out is 4
//! consumers reading the same stream), publisher confirms, and the consumer's stored offset as
//! the analogue of a per-message ack: after each delivery it sends `StoreOffset` for that
//! offset (not awaited by the server; the protocol has no answer to it), and a consumer that
//! reconnects resumes after its stored offset.
//!
//! The 0.4.4 client leaves Nagle's algorithm on (the other three clients set `TCP_NODELAY`):
//! a `StoreOffset` has no answer, so the consumer's next small frame (its chunk credit) waited
//! for a delayed TCP ack, and delivery crawled at ~100 msgs/s. The driver therefore sets
//! `TCP_NODELAY` on the client's sockets itself once each producer or consumer is connected.
//!
//! Flow control is the stream protocol's: credit counts chunks, not messages, and the 0.4.4
//! consumer grants one chunk at a time (the server sends the next chunk only after the client
//! has handed the last one over), so the prefetch window does not apply. The client's own producer
//! batches on a timer (100 ms by default); instead, the publisher here sends whatever is queued
//! at once as one batch, as the Sluice producer does, so a lone message is not held back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use rabbitmq_stream_client::types::{Message, OffsetSpecification};
use rabbitmq_stream_client::{Client, ClientOptions, Consumer, Environment, NoDedup, Producer};
use tokio::sync::{mpsc, oneshot};

use super::{subscription_name, Confirm, Driver, Publisher, Subscriber};

/// Most messages in one publish frame (the server's default frame limit is 1 MiB).
const MAX_BATCH: usize = 256;

/// Connects to one RabbitMQ node's stream listener.
pub struct RabbitStream {
    /// Stream listener host.
    pub host: String,
    /// Stream listener port.
    pub port: u16,
}

impl RabbitStream {
    async fn environment(&self) -> anyhow::Result<Environment> {
        Ok(Environment::builder()
            .host(&self.host)
            .port(self.port)
            .build()
            .await?)
    }
}

impl Driver for RabbitStream {
    type Publisher = StreamPublisher;
    type Subscriber = StreamSubscriber;

    /// One stream; every named consumer reads all of it, so `subscriptions` needs nothing here.
    async fn create(&self, name: &str, _subscriptions: usize) -> anyhow::Result<()> {
        let env = self.environment().await?;
        env.stream_creator().create(name).await?;
        Ok(())
    }

    /// Deleting the stream deletes its segments and its consumers' stored offsets.
    async fn delete(&self, name: &str, _subscriptions: usize) -> anyhow::Result<()> {
        self.environment().await?.delete_stream(name).await?;
        Ok(())
    }

    async fn publisher(&self, name: &str) -> anyhow::Result<StreamPublisher> {
        let producer = self.environment().await?.producer().build(name).await?;
        nodelay_to(self.port);
        let (queue, queued) = mpsc::unbounded_channel();
        let task = tokio::spawn(send_batches(producer, queued));
        Ok(StreamPublisher { queue, task })
    }

    async fn subscriber(
        &self,
        name: &str,
        index: usize,
        _prefetch: u32,
    ) -> anyhow::Result<StreamSubscriber> {
        let consumer_name = subscription_name(index);
        // Resume after this consumer's stored offset; a consumer with none starts at the
        // beginning (the destination is new, so that is the first message published).
        let options = ClientOptions::builder()
            .host(&self.host)
            .port(self.port)
            .build();
        let client = Client::connect(options).await?;
        let start = match client.query_offset(consumer_name.clone(), name).await {
            Ok(offset) => OffsetSpecification::Offset(offset + 1),
            Err(_) => OffsetSpecification::First,
        };
        let _ = client.close().await;
        let consumer = self
            .environment()
            .await?
            .consumer()
            .name(&consumer_name)
            .offset(start)
            .build(name)
            .await?;
        nodelay_to(self.port);
        Ok(StreamSubscriber { consumer })
    }
}

/// One message waiting to be published, and where its confirmation goes.
type Queued = (Bytes, oneshot::Sender<anyhow::Result<()>>);

/// Confirmations still to come, by publishing id.
type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<anyhow::Result<()>>>>>;

/// Publishes on one stream through a task that batches what is queued.
pub struct StreamPublisher {
    /// To the batching task.
    queue: mpsc::UnboundedSender<Queued>,
    /// The batching task; ended (and the producer with it) when the publisher is dropped.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StreamPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Publisher for StreamPublisher {
    async fn publish(&mut self, payload: Bytes) -> anyhow::Result<Confirm> {
        let (done, confirmed) = oneshot::channel();
        self.queue
            .send((payload, done))
            .map_err(|_| anyhow::anyhow!("the stream publisher stopped"))?;
        Ok(async move {
            confirmed
                .await
                .map_err(|_| anyhow::anyhow!("stream publisher dropped a confirmation"))?
        }
        .boxed())
    }
}

/// Sends everything queued as one batch (up to [`MAX_BATCH`]), waits for more, repeats. Each
/// message gets a publishing id of its own; the confirm callback finds its waiter by id.
async fn send_batches(producer: Producer<NoDedup>, mut queued: mpsc::UnboundedReceiver<Queued>) {
    let waiters: Waiters = Arc::default();
    let mut next_id = 0u64;
    while let Some(first) = queued.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(more) = queued.try_recv() else { break };
            batch.push(more);
        }
        let mut messages = Vec::with_capacity(batch.len());
        {
            let mut waiting = waiters.lock().unwrap_or_else(|e| e.into_inner());
            for (payload, done) in batch {
                waiting.insert(next_id, done);
                messages.push(
                    Message::builder()
                        .body(payload.to_vec())
                        .publising_id(next_id)
                        .build(),
                );
                next_id += 1;
            }
        }
        let on_confirm = waiters.clone();
        let sent = producer
            .batch_send(messages, move |status| {
                let (id, outcome) = match status {
                    Ok(s) if s.confirmed() => (Some(s.publishing_id()), Ok(())),
                    Ok(s) => (
                        Some(s.publishing_id()),
                        Err(anyhow::anyhow!("stream publish refused: {:?}", s.status())),
                    ),
                    Err(e) => (None, Err(anyhow::anyhow!("stream publish: {e}"))),
                };
                let mut waiting = on_confirm.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(done) = id.and_then(|id| waiting.remove(&id)) {
                    let _ = done.send(outcome);
                }
                std::future::ready(())
            })
            .await;
        if let Err(e) = sent {
            let error = format!("stream publish: {e}");
            let mut waiting = waiters.lock().unwrap_or_else(|e| e.into_inner());
            for (_, done) in waiting.drain() {
                let _ = done.send(Err(anyhow::anyhow!("{error}")));
            }
            return;
        }
    }
    let _ = producer.close().await;
}

/// A named consumer reading one stream.
pub struct StreamSubscriber {
    /// Deliveries, chunk by chunk.
    consumer: Consumer,
}

impl Drop for StreamSubscriber {
    fn drop(&mut self) {
        let handle = self.consumer.handle();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = handle.close().await;
            });
        }
    }
}

impl Subscriber for StreamSubscriber {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        let Some(delivery) = self.consumer.next().await else {
            return Ok(None);
        };
        let delivery = delivery?;
        self.consumer.store_offset(delivery.offset()).await?;
        let payload = delivery.message().data().unwrap_or_default();
        Ok(Some(Bytes::copy_from_slice(payload)))
    }
}

/// Sets `TCP_NODELAY` on every socket of this process connected to `127.0.0.1:<port>` (the
/// stream client opens its own and offers no option for it).
fn nodelay_to(port: u16) {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for fd in fds.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        // SAFETY: getpeername and setsockopt only read or write the buffers passed, sized by
        // the lengths passed; on a descriptor that is not a socket (or was closed meanwhile)
        // they fail with an error, which is ignored.
        unsafe {
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let peer = std::ptr::addr_of_mut!(addr).cast::<libc::sockaddr>();
            if libc::getpeername(fd, peer, &mut len) != 0
                || i32::from(addr.sin_family) != libc::AF_INET
                || u16::from_be(addr.sin_port) != port
            {
                continue;
            }
            let on: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                std::ptr::addr_of!(on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}
