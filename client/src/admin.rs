//! Administration: channels, subscriptions, purge, redrive and metadata, as methods on
//! [`Client`].
//!
//! Each call is one request and one answer; none of them is on the data path.

use std::time::Duration;

use sluice_protocol::request::{
    ChannelName, CreateChannel, CreateSubscription, Metadata, Purge, Redrive, SubscriptionRef,
};
use sluice_protocol::types::{
    ChannelDescription, ChannelKind, ChannelMeta, ChannelSettings, ChannelSummary, SubscriptionInfo,
};
use sluice_protocol::{Request, Response};

use crate::error::{ClientError, Result};
use crate::Client;

/// Fails with [`ClientError::UnexpectedResponse`] unless the answer has the expected shape.
macro_rules! expect {
    ($answer:expr, $pattern:pat => $value:expr, $what:literal) => {
        match $answer {
            $pattern => Ok($value),
            _ => Err(ClientError::UnexpectedResponse { request: $what }),
        }
    };
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Client {
    /// Creates a channel. Unset settings take the broker's defaults; the settings also hold the
    /// dead-letter (`max_deliveries`, `dead_letter_channel`, `expired_to_dead_letter`), expiry
    /// (`max_age_ms`), contract (`payload_format`, `max_payload_bytes`, `content_types`,
    /// `required_headers`, `invalid_channel`) and dedupe (`dedupe_window_ms`) options.
    ///
    /// ```no_run
    /// # async fn run(client: sluice_client::Client) -> sluice_client::Result<()> {
    /// use sluice_client::types::{ChannelKind, ChannelSettings, PayloadFormat};
    /// let settings = ChannelSettings {
    ///     partitions: Some(4),
    ///     lease_ms: Some(30_000),
    ///     max_deliveries: Some(5),
    ///     payload_format: Some(PayloadFormat::Json),
    ///     invalid_channel: Some("orders.invalid".into()),
    ///     ..ChannelSettings::default()
    /// };
    /// client.create_channel("orders", ChannelKind::Queue, settings).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// `ChannelExists`, `InvalidArgument`, or a connection error.
    pub async fn create_channel(
        &self,
        name: &str,
        kind: ChannelKind,
        settings: ChannelSettings,
    ) -> Result<()> {
        let request = Request::CreateChannel(CreateChannel {
            name: name.to_owned(),
            kind,
            settings,
        });
        expect!(self.request(&request).await?, Response::Ok => (), "create channel")
    }

    /// Deletes a channel and all its data.
    ///
    /// # Errors
    /// `UnknownChannel`, or a connection error.
    pub async fn delete_channel(&self, name: &str) -> Result<()> {
        let request = Request::DeleteChannel(channel_name(name));
        expect!(self.request(&request).await?, Response::Ok => (), "delete channel")
    }

    /// Lists all channels.
    ///
    /// # Errors
    /// A connection error.
    pub async fn list_channels(&self) -> Result<Vec<ChannelSummary>> {
        let answer = self.request(&Request::ListChannels).await?;
        expect!(answer, Response::Channels(list) => list, "list channels")
    }

    /// Describes one channel: partitions, offsets, subscriptions and their backlogs.
    ///
    /// # Errors
    /// `UnknownChannel`, or a connection error.
    pub async fn describe_channel(&self, name: &str) -> Result<ChannelDescription> {
        let request = Request::DescribeChannel(channel_name(name));
        expect!(self.request(&request).await?, Response::Description(d) => d, "describe channel")
    }

    /// Where the partitions of these channels live (all channels when `channels` is empty).
    ///
    /// # Errors
    /// A connection error.
    pub async fn metadata(&self, channels: &[&str]) -> Result<Vec<ChannelMeta>> {
        let request = Request::Metadata(Metadata {
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
        });
        expect!(self.request(&request).await?, Response::Metadata(m) => m, "metadata")
    }

    /// The placement of one channel.
    ///
    /// # Errors
    /// `UnknownChannel` when the broker does not know it, or a connection error.
    pub async fn channel_meta(&self, channel: &str) -> Result<ChannelMeta> {
        self.metadata(&[channel])
            .await?
            .into_iter()
            .find(|m| m.name == channel)
            .ok_or_else(|| {
                ClientError::broker(
                    sluice_protocol::ErrorCode::UnknownChannel,
                    format!("channel {channel:?} not found"),
                )
            })
    }

    /// Creates a subscription on a topic. `lease` overrides the channel's default lease.
    ///
    /// # Errors
    /// `SubscriptionExists`, `WrongKind` (a queue), `UnknownChannel`, or a connection error.
    pub async fn create_subscription(
        &self,
        channel: &str,
        name: &str,
        durable: bool,
        lease: Option<Duration>,
    ) -> Result<()> {
        let request = Request::CreateSubscription(CreateSubscription {
            channel: channel.to_owned(),
            name: name.to_owned(),
            durable,
            lease_ms: lease.map(millis),
        });
        expect!(self.request(&request).await?, Response::Ok => (), "create subscription")
    }

    /// Deletes a subscription and its cursor.
    ///
    /// # Errors
    /// `UnknownSubscription`, `UnknownChannel`, or a connection error.
    pub async fn delete_subscription(&self, channel: &str, name: &str) -> Result<()> {
        let request = Request::DeleteSubscription(SubscriptionRef {
            channel: channel.to_owned(),
            name: name.to_owned(),
        });
        expect!(self.request(&request).await?, Response::Ok => (), "delete subscription")
    }

    /// Lists a channel's subscriptions with their backlogs.
    ///
    /// # Errors
    /// `UnknownChannel`, or a connection error.
    pub async fn list_subscriptions(&self, channel: &str) -> Result<Vec<SubscriptionInfo>> {
        let request = Request::ListSubscriptions(channel_name(channel));
        expect!(self.request(&request).await?, Response::Subscriptions(s) => s, "list subscriptions")
    }

    /// Drops every stored message of a channel up to its tail, or only one subscription's
    /// backlog when `subscription` is set.
    ///
    /// # Errors
    /// `UnknownChannel`, `UnknownSubscription`, or a connection error.
    pub async fn purge(&self, channel: &str, subscription: Option<&str>) -> Result<()> {
        let request = Request::Purge(Purge {
            channel: channel.to_owned(),
            subscription: subscription.map(str::to_owned),
        });
        expect!(self.request(&request).await?, Response::Ok => (), "purge")
    }

    /// Publishes dead letters of the dead-letter channel `dlq` back to the channel each came
    /// from (or to `to`), without the death headers; at most `count` of them (all when
    /// `None`). Returns how many were redriven.
    ///
    /// ```no_run
    /// # async fn run(client: sluice_client::Client) -> sluice_client::Result<()> {
    /// let moved = client.redrive("orders.dlq", None, Some(100)).await?;
    /// println!("redriven {moved}");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// `UnknownChannel`, or a connection error.
    pub async fn redrive(&self, dlq: &str, to: Option<&str>, count: Option<u64>) -> Result<u64> {
        let request = Request::Redrive(Redrive {
            channel: dlq.to_owned(),
            to: to.map(str::to_owned),
            count,
        });
        expect!(self.request(&request).await?, Response::Redriven(r) => r.count, "redrive")
    }
}

fn channel_name(name: &str) -> ChannelName {
    ChannelName {
        name: name.to_owned(),
    }
}
