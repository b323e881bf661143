//! A subscription's state on one partition: its cursor and the consumers competing for it.

use std::time::Duration;

use sluice_protocol::types::SubscriptionInfo;

use super::cursor::{ConsumerKey, Cursor};

/// How long a subscription's state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Cursor in the log: outlives consumers and restarts.
    Durable,
    /// Kept in memory while the broker runs, whether consumers come and go.
    Named,
    /// Lives as long as its one consumer.
    Ephemeral,
}

/// One subscription on one partition.
#[derive(Debug)]
pub struct Subscription {
    /// How long it lives; durable ones log their cursor changes.
    pub lifetime: Lifetime,
    /// Default lease of deliveries.
    pub lease: Duration,
    /// Progress over the partition.
    pub cursor: Cursor,
    /// Attached consumers, served round robin.
    pub consumers: Vec<ConsumerKey>,
    /// Where the next round robin turn starts.
    pub turn: usize,
}

impl Subscription {
    /// A subscription starting at `start`.
    pub fn new(lifetime: Lifetime, lease: Duration, start: u64) -> Self {
        Self {
            lifetime,
            lease,
            cursor: Cursor::new(start),
            consumers: Vec::new(),
            turn: 0,
        }
    }

    /// Whether changes to its cursor go through the log.
    pub fn is_logged(&self) -> bool {
        self.lifetime == Lifetime::Durable
    }

    /// Facts for `describe`, with `end` the committed next offset and `oldest_ms` the age of the
    /// first unacked message if known.
    pub fn info(&self, name: &str, end: u64, oldest_ms: Option<u64>) -> SubscriptionInfo {
        SubscriptionInfo {
            name: name.to_owned(),
            durable: self.is_logged(),
            backlog: self.cursor.backlog(end),
            in_flight: self.cursor.in_flight(),
            ack_floor: self.cursor.ack_floor(),
            consumers: self.consumers.len() as u32,
            oldest_unacked_ms: oldest_ms,
        }
    }
}
