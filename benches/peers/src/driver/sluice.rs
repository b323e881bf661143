//! Sluice through `sluice-client`: a queue for one subscription, a topic with durable
//! subscriptions for fan-out. The producer batches per partition by itself (no linger).

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Consumer, NewMessage, Producer};

use super::{subscription_name, Confirm, Driver, Publisher, Subscriber};

/// Connects to one Sluice broker.
pub struct Sluice {
    /// Broker address.
    pub addr: String,
}

impl Driver for Sluice {
    type Publisher = SluicePublisher;
    type Subscriber = SluiceSubscriber;

    async fn create(&self, name: &str, subscriptions: usize) -> anyhow::Result<()> {
        let admin = Client::connect(self.addr.clone()).await?;
        if subscriptions == 1 {
            admin
                .create_channel(name, ChannelKind::Queue, ChannelSettings::default())
                .await?;
            return Ok(());
        }
        admin
            .create_channel(name, ChannelKind::Topic, ChannelSettings::default())
            .await?;
        for i in 0..subscriptions {
            admin
                .create_subscription(name, &subscription_name(i), true, None)
                .await?;
        }
        Ok(())
    }

    /// Deleting the channel deletes its subscriptions and its log.
    async fn delete(&self, name: &str, _subscriptions: usize) -> anyhow::Result<()> {
        let admin = Client::connect(self.addr.clone()).await?;
        admin.delete_channel(name).await?;
        Ok(())
    }

    async fn publisher(&self, name: &str) -> anyhow::Result<SluicePublisher> {
        let client = Client::connect(self.addr.clone()).await?;
        let producer = client.producer(name).build().await?;
        Ok(SluicePublisher { producer })
    }

    async fn subscriber(
        &self,
        name: &str,
        index: usize,
        prefetch: u32,
    ) -> anyhow::Result<SluiceSubscriber> {
        let client = Client::connect(self.addr.clone()).await?;
        let mut builder = client.consumer(name).prefetch(prefetch);
        let meta = client.channel_meta(name).await?;
        if meta.kind == ChannelKind::Topic {
            builder = builder.subscription(subscription_name(index));
        }
        Ok(SluiceSubscriber {
            consumer: builder.subscribe().await?,
        })
    }
}

/// A `sluice_client::Producer`.
pub struct SluicePublisher {
    /// Batches what is enqueued while earlier batches are in flight.
    producer: Producer,
}

impl Publisher for SluicePublisher {
    async fn publish(&mut self, payload: Bytes) -> anyhow::Result<Confirm> {
        let pending = self.producer.enqueue(NewMessage::new(payload)).await?;
        Ok(pending.map(|r| r.map(drop).map_err(Into::into)).boxed())
    }
}

/// A `sluice_client::Consumer`.
pub struct SluiceSubscriber {
    /// The delivery stream.
    consumer: Consumer,
}

impl Subscriber for SluiceSubscriber {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        let Some(delivery) = self.consumer.next().await else {
            return Ok(None);
        };
        let delivery = delivery?;
        delivery.ack_nowait()?;
        Ok(Some(delivery.payload().clone()))
    }
}
