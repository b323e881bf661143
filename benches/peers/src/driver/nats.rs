//! NATS JetStream through `async-nats`: one file-storage stream per destination, one durable
//! pull consumer per subscription (explicit, per-message acks), publishes awaited for their
//! JetStream ack. A queue is a work-queue stream; fan-out uses interest retention.

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use super::{subscription_name, Confirm, Driver, Publisher, Subscriber};

/// Most unacked messages per consumer; fixed when the consumer is created.
const MAX_ACK_PENDING: i64 = 1024;

/// Connects to one nats-server.
pub struct Nats {
    /// Server address.
    pub addr: String,
}

impl Nats {
    async fn context(&self) -> anyhow::Result<jetstream::Context> {
        Ok(jetstream::new(async_nats::connect(&self.addr).await?))
    }
}

impl Driver for Nats {
    type Publisher = NatsPublisher;
    type Subscriber = NatsSubscriber;

    async fn create(&self, name: &str, subscriptions: usize) -> anyhow::Result<()> {
        let js = self.context().await?;
        let retention = if subscriptions == 1 {
            stream::RetentionPolicy::WorkQueue
        } else {
            stream::RetentionPolicy::Interest
        };
        let stream = js
            .create_stream(stream::Config {
                name: name.to_owned(),
                subjects: vec![name.to_owned()],
                storage: stream::StorageType::File,
                retention,
                ..Default::default()
            })
            .await?;
        for i in 0..subscriptions {
            stream
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(subscription_name(i)),
                    ack_policy: consumer::AckPolicy::Explicit,
                    max_ack_pending: MAX_ACK_PENDING,
                    ..Default::default()
                })
                .await?;
        }
        Ok(())
    }

    /// Deleting the stream deletes its consumers and its files.
    async fn delete(&self, name: &str, _subscriptions: usize) -> anyhow::Result<()> {
        self.context()
            .await?
            .delete_stream(name)
            .await
            .map_err(|e| anyhow::anyhow!("deleting stream {name}: {e}"))?;
        Ok(())
    }

    async fn publisher(&self, name: &str) -> anyhow::Result<NatsPublisher> {
        Ok(NatsPublisher {
            js: self.context().await?,
            subject: name.to_owned(),
        })
    }

    async fn subscriber(
        &self,
        name: &str,
        index: usize,
        prefetch: u32,
    ) -> anyhow::Result<NatsSubscriber> {
        let js = self.context().await?;
        let stream = js.get_stream(name).await?;
        let consumer: consumer::PullConsumer = stream
            .get_consumer(&subscription_name(index))
            .await
            .map_err(|e| anyhow::anyhow!("getting consumer: {e}"))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(prefetch.min(MAX_ACK_PENDING as u32) as usize)
            .messages()
            .await?;
        Ok(NatsSubscriber { messages })
    }
}

/// JetStream publishes on one subject.
pub struct NatsPublisher {
    /// The JetStream context of its own connection.
    js: jetstream::Context,
    /// The stream's subject.
    subject: String,
}

impl Publisher for NatsPublisher {
    async fn publish(&mut self, payload: Bytes) -> anyhow::Result<Confirm> {
        let ack = self.js.publish(self.subject.clone(), payload).await?;
        Ok(async move { ack.await.map(drop).map_err(Into::into) }.boxed())
    }
}

/// A pull consumer's message stream.
pub struct NatsSubscriber {
    /// Pulls batches of up to the prefetch window.
    messages: consumer::pull::Stream,
}

impl Subscriber for NatsSubscriber {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        let Some(message) = self.messages.next().await else {
            return Ok(None);
        };
        let message = message?;
        message
            .ack()
            .await
            .map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        Ok(Some(message.payload.clone()))
    }
}
