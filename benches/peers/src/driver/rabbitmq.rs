//! RabbitMQ through `lapin` (AMQP 0.9.1): every destination is a durable fanout exchange bound
//! to one durable queue per subscription (quorum or classic), persistent messages, publisher
//! confirms, and a consumer with a prefetch (QoS) window that acks each message, or (the
//! multi-ack variant) acks every half window with `multiple`, and whatever it holds whenever
//! no delivery is waiting.

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
    /// Acknowledge many deliveries at once (`basic.ack` with `multiple`).
    pub multi_ack: bool,
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
        let ack_every = if self.multi_ack {
            u32::from(prefetch / 2).max(1)
        } else {
            1
        };
        Ok(RabbitSubscriber {
            _connection: connection,
            _channel: channel,
            consumer,
            ack_every,
            unacked: 0,
            last: None,
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
    /// Deliveries per acknowledgement (1: each message on its own).
    ack_every: u32,
    /// Deliveries received and not yet acknowledged.
    unacked: u32,
    /// The acker of the newest of them: acking it with `multiple` covers them all.
    last: Option<lapin::acker::Acker>,
}

impl RabbitSubscriber {
    /// Acknowledges every delivery received so far, in one `basic.ack`.
    async fn ack_held(&mut self) -> anyhow::Result<()> {
        if let Some(acker) = self.last.take() {
            acker.ack(BasicAckOptions { multiple: true }).await?;
            self.unacked = 0;
        }
        Ok(())
    }
}

impl Subscriber for RabbitSubscriber {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        if self.ack_every == 1 {
            let Some(delivery) = self.consumer.next().await else {
                return Ok(None);
            };
            let delivery = delivery?;
            delivery.ack(BasicAckOptions::default()).await?;
            return Ok(Some(Bytes::from(delivery.data)));
        }
        // Multi-ack: nothing is held back while waiting, so the window never stalls.
        let next = match self.consumer.next().now_or_never() {
            Some(next) => next,
            None => {
                self.ack_held().await?;
                self.consumer.next().await
            }
        };
        let Some(delivery) = next else {
            return Ok(None);
        };
        let delivery = delivery?;
        self.unacked += 1;
        self.last = Some(delivery.acker.clone());
        if self.unacked >= self.ack_every {
            self.ack_held().await?;
        }
        Ok(Some(Bytes::from(delivery.data)))
    }
}
