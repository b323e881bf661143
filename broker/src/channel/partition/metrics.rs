//! A partition's metrics: handles registered once, moved by batch and grant sizes.
//!
//! Nothing here takes a lock or makes a syscall per message: counters move once per batch,
//! grant or request by its size, gauges are set after each burst from counts the partition
//! keeps anyway, and the oldest unacked age (which may need a log read) at most every
//! [`AGES_EVERY`]. Handles are looked up in the global recorder only when a partition starts or
//! meets a subscription for the first time, so the recorder must be installed before partitions
//! open (see [`crate::exporter`]).
//!
//! Ephemeral subscriptions (one per topic consumer) share the label [`EPHEMERAL`], so that
//! consumers coming and going do not create series without end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use sluice_protocol::RecordBatch;
use tokio::time::Instant;

use super::moves::MoveKind;
use crate::channel::cursor::Grant;
use crate::channel::dead_letter::DeathReason;
use crate::channel::subscription::Subscription;
use crate::log::LogStats;

/// How often the oldest-unacked ages are measured while some subscription has a backlog.
pub const AGES_EVERY: Duration = Duration::from_secs(5);
/// The `subscription` label of every ephemeral subscription.
pub const EPHEMERAL: &str = "~ephemeral";

/// Why the broker took a delivery back.
#[derive(Debug, Clone, Copy)]
pub enum ReturnReason {
    /// The consumer's lease ran out.
    LeaseExpired,
    /// The consumer detached or its connection closed.
    ConsumerDetached,
}

/// The metric handles of one partition.
pub struct PartitionMetrics {
    /// `channel` label.
    channel: Arc<str>,
    /// `partition` label.
    partition: String,
    /// Messages stored by publishes.
    published: Counter,
    /// Bytes of published batches.
    published_bytes: Counter,
    /// Append-to-durable time of published batches.
    append: Histogram,
    /// Messages dropped as duplicates (producer sequence or message id).
    deduplicated: Counter,
    /// Deliveries a consumer rejected as invalid, sent to the invalid channel.
    invalid: Counter,
    /// Retention checks that failed (archiving ids, saving a snapshot, deleting segments).
    retention_failures: Counter,
    /// Bytes of segments.
    log_bytes: Gauge,
    /// Segment files.
    log_segments: Gauge,
    /// Per `subscription` label.
    subs: HashMap<String, SubscriptionMetrics>,
    /// When the oldest-unacked ages are due again; `None` while no subscription has a backlog.
    ages_due: Option<Instant>,
}

/// The metric handles of one subscription on one partition.
struct SubscriptionMetrics {
    delivered: Counter,
    redelivered: Counter,
    acked: Counter,
    nacked: Counter,
    lease_expired: Counter,
    detached: Counter,
    /// Sent to the dead-letter channel, by reason: max deliveries, rejected, expired.
    dead_lettered: [Counter; 3],
    /// Expired before being acked (dropped or dead-lettered).
    expired: Counter,
    backlog: Gauge,
    in_flight: Gauge,
    consumers: Gauge,
    oldest_age: Gauge,
    /// Sums of this refresh (ephemeral subscriptions add up): backlog, in flight, consumers.
    sums: (u64, u64, u64),
}

impl SubscriptionMetrics {
    fn new(channel: &Arc<str>, partition: &str, sub: &str) -> Self {
        let labels = [
            ("channel", channel.to_string()),
            ("partition", partition.to_owned()),
            ("subscription", sub.to_owned()),
        ];
        let by_reason = |name: &'static str, reason: &'static str| {
            let mut l = labels.to_vec();
            l.push(("reason", reason.to_owned()));
            counter!(name, &l)
        };
        let returned = |reason| by_reason("sluice_messages_returned_total", reason);
        let dead = |reason| by_reason("sluice_messages_dead_lettered_total", reason);
        Self {
            delivered: counter!("sluice_messages_delivered_total", &labels),
            redelivered: counter!("sluice_messages_redelivered_total", &labels),
            acked: counter!("sluice_messages_acked_total", &labels),
            nacked: counter!("sluice_messages_nacked_total", &labels),
            lease_expired: returned("lease_expired"),
            detached: returned("consumer_detached"),
            dead_lettered: [dead("max_deliveries"), dead("rejected"), dead("expired")],
            expired: counter!("sluice_messages_expired_total", &labels),
            backlog: gauge!("sluice_subscription_backlog_messages", &labels),
            in_flight: gauge!("sluice_subscription_in_flight_messages", &labels),
            consumers: gauge!("sluice_subscription_consumers", &labels),
            oldest_age: gauge!("sluice_oldest_unacked_age_seconds", &labels),
            sums: (0, 0, 0),
        }
    }
}

/// The `subscription` label of a subscription name.
fn label(name: &str) -> &str {
    if name.starts_with('~') {
        EPHEMERAL
    } else {
        name
    }
}

impl PartitionMetrics {
    /// Registers the partition's handles.
    pub fn new(channel: &Arc<str>, partition: u32) -> Self {
        let labels = [
            ("channel", channel.to_string()),
            ("partition", partition.to_string()),
        ];
        Self {
            channel: Arc::clone(channel),
            partition: partition.to_string(),
            published: counter!("sluice_messages_published_total", &labels),
            published_bytes: counter!("sluice_published_bytes_total", &labels),
            append: histogram!("sluice_append_duration_seconds", &labels),
            deduplicated: counter!("sluice_messages_deduplicated_total", &labels),
            invalid: invalid_counter(channel, partition, "consumer"),
            retention_failures: counter!("sluice_retention_failures_total", &labels),
            log_bytes: gauge!("sluice_log_bytes", &labels),
            log_segments: gauge!("sluice_log_segments", &labels),
            subs: HashMap::new(),
            ages_due: None,
        }
    }

    fn sub(&mut self, name: &str) -> &mut SubscriptionMetrics {
        let label = label(name);
        if !self.subs.contains_key(label) {
            let m = SubscriptionMetrics::new(&self.channel, &self.partition, label);
            self.subs.insert(label.to_owned(), m);
        }
        self.subs.get_mut(label).expect("inserted above")
    }

    /// A published batch became durable.
    pub fn published(&self, batch: &RecordBatch) {
        self.published.increment(u64::from(batch.record_count()));
        self.published_bytes.increment(batch.len() as u64);
    }

    /// Where publish-to-durable latency is recorded.
    pub fn append_histogram(&self) -> Histogram {
        self.append.clone()
    }

    /// Grants handed to a consumer of `sub`.
    pub fn delivered(&mut self, sub: &str, grants: &[Grant]) {
        let m = self.sub(sub);
        for g in grants {
            m.delivered.increment(g.end - g.start);
            if g.count > 1 {
                m.redelivered.increment(g.end - g.start);
            }
        }
    }

    /// `n` offsets acknowledged on `sub`.
    pub fn acked(&mut self, sub: &str, n: u64) {
        self.sub(sub).acked.increment(n);
    }

    /// `n` deliveries of `sub` returned by their consumer.
    pub fn nacked(&mut self, sub: &str, n: usize) {
        self.sub(sub).nacked.increment(n as u64);
    }

    /// `n` deliveries of `sub` taken back by the broker.
    pub fn returned(&mut self, sub: &str, reason: ReturnReason, n: usize) {
        let m = self.sub(sub);
        match reason {
            ReturnReason::LeaseExpired => m.lease_expired.increment(n as u64),
            ReturnReason::ConsumerDetached => m.detached.increment(n as u64),
        }
    }

    /// A retention check that failed; it is tried again at the next check.
    pub fn retention_failed(&self) {
        self.retention_failures.increment(1);
    }

    /// `n` messages of a publish dropped as duplicates.
    pub fn deduplicated(&self, n: usize) {
        self.deduplicated.increment(n as u64);
    }

    /// `n` deliveries of `sub` start moving out of the partition (dead letters, invalid).
    pub fn moving(&mut self, sub: &str, kind: &MoveKind, n: usize) {
        let n = n as u64;
        match kind {
            MoveKind::Dead { reason, .. } => {
                let i = match reason {
                    DeathReason::MaxDeliveries => 0,
                    DeathReason::Rejected => 1,
                    DeathReason::Expired => 2,
                };
                self.sub(sub).dead_lettered[i].increment(n);
            }
            MoveKind::Invalid { .. } => self.invalid.increment(n),
        }
    }

    /// `n` messages of `sub` expired before being acked.
    pub fn expired(&mut self, sub: &str, n: usize) {
        self.sub(sub).expired.increment(n as u64);
    }

    /// Sets the gauges from the partition's state after a burst; `end` is the committed offset.
    pub fn refresh(&mut self, subs: &BTreeMap<String, Subscription>, end: u64, log: LogStats) {
        self.log_bytes.set(log.bytes as f64);
        self.log_segments.set(f64::from(log.segments));
        let mut any_backlog = false;
        for (name, s) in subs {
            let backlog = s.cursor.backlog(end);
            any_backlog |= backlog > 0;
            let m = self.sub(name);
            m.sums.0 += backlog;
            m.sums.1 += s.cursor.in_flight();
            m.sums.2 += s.consumers.len() as u64;
        }
        for m in self.subs.values_mut() {
            let (backlog, in_flight, consumers) = std::mem::take(&mut m.sums);
            m.backlog.set(backlog as f64);
            m.in_flight.set(in_flight as f64);
            m.consumers.set(consumers as f64);
            if backlog == 0 {
                m.oldest_age.set(0.0);
            }
        }
        match (any_backlog, self.ages_due) {
            (true, None) => self.ages_due = Some(Instant::now()),
            (false, _) => self.ages_due = None,
            (true, Some(_)) => {}
        }
    }

    /// When the oldest-unacked ages should be measured next, if at all.
    pub fn ages_due(&self) -> Option<Instant> {
        self.ages_due
    }

    /// Sets the oldest-unacked ages (milliseconds by subscription name) measured at `now`.
    pub fn set_ages(&mut self, ages: &HashMap<String, u64>, now: Instant) {
        let mut oldest: HashMap<&str, u64> = HashMap::new();
        for (name, &ms) in ages {
            let age = oldest.entry(label(name)).or_default();
            *age = (*age).max(ms);
        }
        for (label, m) in &self.subs {
            m.oldest_age.set(
                oldest
                    .get(label.as_str())
                    .map_or(0.0, |&ms| ms as f64 / 1e3),
            );
        }
        self.ages_due = Some(now + AGES_EVERY);
    }

    /// Zeroes the gauges of a partition that stops (its channel may be gone).
    pub fn clear(&self) {
        self.log_bytes.set(0.0);
        self.log_segments.set(0.0);
        for m in self.subs.values() {
            for g in [&m.backlog, &m.in_flight, &m.consumers, &m.oldest_age] {
                g.set(0.0);
            }
        }
    }
}

/// The counter of invalid messages of one partition, by where they were caught: `publish`
/// (the channel's contract) or `consumer` (rejected as invalid).
fn invalid_counter(channel: &str, partition: u32, source: &'static str) -> Counter {
    let labels = [
        ("channel", channel.to_owned()),
        ("partition", partition.to_string()),
        ("source", source.to_owned()),
    ];
    counter!("sluice_messages_invalid_total", &labels)
}
