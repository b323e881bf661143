//! RabbitMQ through `lapin` (AMQP 0.9.1): every destination is a durable fanout exchange bound
//! to one durable queue per subscription (quorum or classic), persistent messages, publisher
//! confirms, and a consumer with a prefetch (QoS) window that acks each message.

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use super::{subscription_name, Confirm, Driver, Publisher, Subscriber};

/// Connects to one RabbitMQ node and uses one queue type.
pub struct RabbitMq {
    /// `amqp://` URI.
    pub uri: String,
    /// `quorum` or `classic`.
    pub queue_type: &'static str,
}

impl RabbitMq {
    async fn channel(&self) -> anyhow::Result<(Connection, Channel)> {
        let connection = Connection::connect(&self.uri, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        Ok((connection, channel))
    }
}

/// Queue of subscription `index` of destination `name`.
fn queue_name(name: &str, index: usize) -> String {
    format!("{name}.{}", subscription_name(index))
}

impl Driver for RabbitMq {
    type Publisher = RabbitPublisher;
    type Subscriber = RabbitSubscriber;

    async fn create(&self, name: &str, subscriptions: usize) -> anyhow::Result<()> {
        let (_connection, channel) = self.channel().await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(name, ExchangeKind::Fanout, durable, FieldTable::default())
            .await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(self.queue_type.into()),
        );
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for i in 0..subscriptions {
            let queue = queue_name(name, i);
            channel.queue_declare(&queue, durable, args.clone()).await?;
            channel
                .queue_bind(
                    &queue,
                    name,
                    "",
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Deletes every subscription's queue (with its messages), then the exchange.
    async fn delete(&self, name: &str, subscriptions: usize) -> anyhow::Result<()> {
        let (_connection, channel) = self.channel().await?;
        for i in 0..subscriptions {
            channel
                .queue_delete(&queue_name(name, i), QueueDeleteOptions::default())
                .await?;
        }
        channel
            .exchange_delete(name, ExchangeDeleteOptions::default())
            .await?;
        Ok(())
    }

    async fn publisher(&self, name: &str) -> anyhow::Result<RabbitPublisher> {
        let (connection, channel) = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(RabbitPublisher {
            _connection: connection,
            channel,
            exchange: name.to_owned(),
        })
    }

    async fn subscriber(
        &self,
        name: &str,
        index: usize,
        prefetch: u32,
    ) -> anyhow::Result<RabbitSubscriber> {
        let (connection, channel) = self.channel().await?;
        let prefetch = u16::try_from(prefetch).unwrap_or(u16::MAX);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                &queue_name(name, index),
                &format!("peers-{index}"),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(RabbitSubscriber {
            _connection: connection,
            _channel: channel,
            consumer,
        })
    }
}

/// A confirm-mode channel publishing persistent messages to one exchange.
pub struct RabbitPublisher {
    /// Kept open for the channel's lifetime.
    _connection: Connection,
    /// In confirm mode.
    channel: Channel,
    /// The destination's fanout exchange.
    exchange: String,
}

impl Publisher for RabbitPublisher {
    async fn publish(&mut self, payload: Bytes) -> anyhow::Result<Confirm> {
        let persistent = BasicProperties::default().with_delivery_mode(2);
        let confirm = self
            .channel
            .basic_publish(
                &self.exchange,
                "",
                BasicPublishOptions::default(),
                &payload,
                persistent,
            )
            .await?;
        Ok(async move {
            match confirm.await? {
                Confirmation::Nack(_) => anyhow::bail!("RabbitMQ nacked a publish"),
                _ => Ok(()),
            }
        }
        .boxed())
    }
}

/// A consumer on one queue.
pub struct RabbitSubscriber {
    /// Kept open for the consumer's lifetime.
    _connection: Connection,
    /// Kept open for the consumer's lifetime.
    _channel: Channel,
    /// Deliveries under the QoS window.
    consumer: lapin::Consumer,
}

impl Subscriber for RabbitSubscriber {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        let Some(delivery) = self.consumer.next().await else {
            return Ok(None);
        };
        let delivery = delivery?;
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(Some(Bytes::from(delivery.data)))
    }
}
