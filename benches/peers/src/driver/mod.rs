//! One driver per system behind one trait, so every workload runs the same code against each.
//!
//! A driver creates and deletes destinations, opens publishers and subscribers; each publisher and each
//! subscriber has its own connection. Drivers know their system's client API; they know
//! nothing about workloads or timing.

pub mod nats;
pub mod rabbitmq;
pub mod rabbitmq_stream;
pub mod sluice;

use std::future::Future;

use bytes::Bytes;
use futures::future::BoxFuture;

/// Resolves when the broker has confirmed (stored) one published message.
pub type Confirm = BoxFuture<'static, anyhow::Result<()>>;

/// A system under test.
pub trait Driver: Send + Sync + 'static {
    /// Publishes to one destination.
    type Publisher: Publisher;
    /// Receives from one subscription and acks every message.
    type Subscriber: Subscriber;

    /// Creates destination `name` with `subscriptions` subscriptions, each of which receives
    /// every message (1 = a plain queue).
    fn create(
        &self,
        name: &str,
        subscriptions: usize,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Deletes destination `name` and its `subscriptions` with every message in them, so the
    /// next cell starts from an empty server.
    fn delete(
        &self,
        name: &str,
        subscriptions: usize,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// A publisher on its own connection.
    fn publisher(&self, name: &str)
        -> impl Future<Output = anyhow::Result<Self::Publisher>> + Send;

    /// A subscriber on its own connection to subscription `index` of `name`, with at most
    /// `prefetch` unacked deliveries.
    fn subscriber(
        &self,
        name: &str,
        index: usize,
        prefetch: u32,
    ) -> impl Future<Output = anyhow::Result<Self::Subscriber>> + Send;
}

/// Publishes one message at a time; confirmations are awaited separately so that many can be
/// in flight.
pub trait Publisher: Send + 'static {
    /// Hands one message to the client; the returned [`Confirm`] resolves when it is stored.
    fn publish(&mut self, payload: Bytes) -> impl Future<Output = anyhow::Result<Confirm>> + Send;
}

/// Receives messages and acks each one individually.
pub trait Subscriber: Send + 'static {
    /// The next message's payload, already acked (the ack is sent, not awaited); `None` when
    /// the subscription ended.
    fn next(&mut self) -> impl Future<Output = anyhow::Result<Option<Bytes>>> + Send;
}

/// Name of subscription `index` of a destination.
pub fn subscription_name(index: usize) -> String {
    format!("sub-{index}")
}
