//! The requests a partition task takes, and how it handles each.

use std::collections::HashMap;
use std::time::Duration;

use sluice_protocol::types::{PartitionInfo, SubscriptionInfo};
use sluice_protocol::{RecordBatch, Response};
use tokio::sync::oneshot;

use super::metrics::ReturnReason;
use super::moves::MoveKind;
use super::publish::Routed;
use super::writes::Done;
use super::{Attached, Partition};
use crate::channel::command::Command;
use crate::channel::consumer::ConsumerHandle;
use crate::channel::cursor::ConsumerKey;
use crate::channel::dead_letter::DeathReason;
use crate::channel::error::ChannelError;
use crate::channel::outbox::Reply;
use crate::channel::subscription::{Lifetime, Subscription};

/// Everything a partition task can be asked.
#[derive(Debug)]
pub enum PartitionRequest {
    /// Append a producer's batch; answered when durable.
    Publish {
        /// The validated batch.
        batch: RecordBatch,
        /// What the channel layer decided (invalid messages taken out).
        routed: Routed,
        /// The producer's reply slot.
        reply: Reply,
    },
    /// Attach a consumer to a subscription.
    Attach {
        /// Subscription name.
        subscription: String,
        /// Create it as an ephemeral subscription at the tail.
        ephemeral: bool,
        /// The consumer.
        consumer: ConsumerHandle,
        /// Answer.
        done: oneshot::Sender<Result<(), ChannelError>>,
    },
    /// Detach a consumer; what it holds returns at once.
    Detach {
        /// The consumer.
        consumer: ConsumerKey,
    },
    /// Credit arrived: hand out deliveries.
    Wake,
    /// Acknowledge ranges.
    Ack {
        /// Who acks.
        consumer: ConsumerKey,
        /// `[from, to)` ranges.
        ranges: Vec<(u64, u64)>,
        /// Answer.
        reply: Reply,
    },
    /// Return deliveries.
    Nack {
        /// Who returns them.
        consumer: ConsumerKey,
        /// Offsets.
        offsets: Vec<u64>,
        /// Redelivery delay.
        delay: Duration,
        /// Answer.
        reply: Reply,
    },
    /// Give up on deliveries: dead-letter them, or move them to the invalid channel.
    Reject {
        /// Who rejects them.
        consumer: ConsumerKey,
        /// Offsets.
        offsets: Vec<u64>,
        /// The consumer's reason.
        reason: String,
        /// Move to the invalid channel instead of the dead-letter channel.
        invalid: bool,
        /// Answer, once moved and settled.
        reply: Reply,
    },
    /// Extend leases.
    Extend {
        /// Who holds them.
        consumer: ConsumerKey,
        /// Offsets.
        offsets: Vec<u64>,
        /// New lease from now.
        lease: Duration,
        /// Answer.
        reply: Reply,
    },
    /// Create a subscription.
    CreateSubscription {
        /// Name.
        name: String,
        /// Durable (logged) or named (in memory).
        lifetime: Lifetime,
        /// Default lease.
        lease: Duration,
        /// Answer.
        done: oneshot::Sender<Result<(), ChannelError>>,
    },
    /// Delete a subscription.
    DeleteSubscription {
        /// Name.
        name: String,
        /// Answer.
        done: oneshot::Sender<Result<(), ChannelError>>,
    },
    /// The highest epoch this partition has seen for a producer.
    ProducerEpoch {
        /// The producer.
        producer_id: u64,
        /// Answer.
        done: oneshot::Sender<Option<u16>>,
    },
    /// Take up to `max` waiting messages of the queue's own subscription out of reach, for
    /// redrive: answered with their offsets and records.
    TakeForRedrive {
        /// Most messages to take.
        max: u64,
        /// Answer.
        done: oneshot::Sender<Vec<(u64, bytes::Bytes)>>,
    },
    /// Finish messages taken for redrive: settle the ones published, return the others.
    FinishRedrive {
        /// Offsets published to their target.
        settled: Vec<u64>,
        /// Offsets that could not be published.
        failed: Vec<u64>,
        /// Answer, once the settle is durable.
        done: oneshot::Sender<Result<(), ChannelError>>,
    },
    /// Drop the stored messages of one subscription (or of all) up to the committed offset,
    /// then delete the segments below the new low-water mark.
    Purge {
        /// The subscription, or `None` for the whole channel.
        subscription: Option<String>,
        /// Answer, once the cursors moved and the segments are deleted.
        done: oneshot::Sender<Result<(), ChannelError>>,
    },
    /// Report offsets, sizes and subscriptions.
    Describe {
        /// Answer.
        done: oneshot::Sender<PartitionSnapshot>,
    },
    /// Finish pending writes, close the log and stop.
    Shutdown {
        /// Told when the log is closed.
        done: oneshot::Sender<()>,
    },
}

/// A partition's facts for `describe`.
#[derive(Debug, Clone)]
pub struct PartitionSnapshot {
    /// Offsets and sizes.
    pub info: PartitionInfo,
    /// Per subscription.
    pub subscriptions: Vec<SubscriptionInfo>,
}

impl Partition {
    /// Handles a burst of requests; returns the shutdown signal if one came.
    pub(super) async fn on_burst(
        &mut self,
        burst: &mut Vec<PartitionRequest>,
    ) -> Option<oneshot::Sender<()>> {
        let mut shutdown = None;
        for request in burst.drain(..) {
            match request {
                PartitionRequest::Shutdown { done } => shutdown = Some(done),
                other if shutdown.is_some() => refuse(other),
                other => self.on_request(other).await,
            }
        }
        shutdown
    }

    async fn on_request(&mut self, request: PartitionRequest) {
        match request {
            PartitionRequest::Publish {
                batch,
                routed,
                reply,
            } => self.publish(batch, routed, reply),
            PartitionRequest::Attach {
                subscription,
                ephemeral,
                consumer,
                done,
            } => {
                let _ = done.send(self.attach(subscription, ephemeral, consumer));
            }
            PartitionRequest::Detach { consumer } => self.detach(consumer),
            PartitionRequest::Wake | PartitionRequest::Shutdown { .. } => {}
            PartitionRequest::Ack {
                consumer,
                ranges,
                reply,
            } => self.ack(consumer, ranges, reply),
            PartitionRequest::Nack {
                consumer,
                offsets,
                delay,
                reply,
            } => {
                self.nack(consumer, &offsets, delay, reply);
            }
            PartitionRequest::Extend {
                consumer,
                offsets,
                lease,
                reply,
            } => {
                self.extend(consumer, &offsets, lease, reply);
            }
            PartitionRequest::Reject {
                consumer,
                offsets,
                reason,
                invalid,
                reply,
            } => {
                let kind = if invalid {
                    MoveKind::Invalid { reason }
                } else {
                    MoveKind::Dead {
                        reason: DeathReason::Rejected,
                        error: Some(reason),
                    }
                };
                self.reject(consumer, &offsets, kind, Done::Reply(reply))
                    .await;
            }
            PartitionRequest::CreateSubscription {
                name,
                lifetime,
                lease,
                done,
            } => {
                self.create_subscription(name, lifetime, lease, Done::Call(done));
            }
            PartitionRequest::DeleteSubscription { name, done } => {
                self.delete_subscription(name, Done::Call(done));
            }
            PartitionRequest::ProducerEpoch { producer_id, done } => {
                let _ = done.send(self.producers.epoch(producer_id));
            }
            PartitionRequest::TakeForRedrive { max, done } => {
                let taken = self.take_for_redrive(max).await;
                let _ = done.send(taken);
            }
            PartitionRequest::FinishRedrive {
                settled,
                failed,
                done,
            } => self.finish_redrive(settled, failed, Done::Call(done)),
            PartitionRequest::Purge { subscription, done } => {
                self.purge(subscription, done).await;
            }
            PartitionRequest::Describe { done } => {
                let oldest = self.oldest_unacked().await;
                let _ = done.send(self.snapshot(&oldest));
            }
        }
    }

    fn attach(
        &mut self,
        subscription: String,
        ephemeral: bool,
        consumer: ConsumerHandle,
    ) -> Result<(), ChannelError> {
        if ephemeral {
            let start = self.log.next_offset();
            let sub = Subscription::new(Lifetime::Ephemeral, self.config.lease, start);
            self.subs.entry(subscription.clone()).or_insert(sub);
        }
        let sub =
            self.subs
                .get_mut(&subscription)
                .ok_or_else(|| ChannelError::UnknownSubscription {
                    channel: self.config.channel.to_string(),
                    name: subscription.clone(),
                })?;
        sub.consumers.push(consumer.key);
        self.consumers.insert(
            consumer.key,
            Attached {
                handle: consumer,
                subscription,
            },
        );
        Ok(())
    }

    fn detach(&mut self, key: ConsumerKey) {
        let Some(attached) = self.consumers.remove(&key) else {
            return;
        };
        let name = attached.subscription;
        let Some(sub) = self.subs.get_mut(&name) else {
            return;
        };
        sub.consumers.retain(|&k| k != key);
        if sub.lifetime == Lifetime::Ephemeral && sub.consumers.is_empty() {
            self.subs.remove(&name);
            return;
        }
        let offsets = sub.cursor.release(key);
        self.metrics
            .returned(&name, ReturnReason::ConsumerDetached, offsets.len());
        self.return_offsets(name, offsets, Duration::ZERO, Done::Nothing);
    }

    pub(super) fn attached(&self, key: ConsumerKey) -> Result<String, ChannelError> {
        self.consumers
            .get(&key)
            .map(|a| a.subscription.clone())
            .ok_or(ChannelError::UnknownConsumer(key))
    }

    fn ack(&mut self, key: ConsumerKey, ranges: Vec<(u64, u64)>, reply: Reply) {
        let subscription = match self.attached(key) {
            Ok(name) => name,
            Err(e) => return reply.send(Err(e.to_wire())),
        };
        if let Some(&(from, to)) = ranges.iter().find(|(f, t)| f >= t || *t > self.committed) {
            let e = ChannelError::InvalidArgument(format!(
                "ack range [{from}, {to}) is empty or beyond the committed offset {}",
                self.committed
            ));
            return reply.send(Err(e.to_wire()));
        }
        let ranges = self.without_moving(&subscription, ranges);
        if ranges.is_empty() {
            return reply.send(Ok(Response::Ok));
        }
        // Applied in memory at once, as an expiry drop is, so that nothing decided before the
        // ack is durable (the sweeper, a lease running out, a redelivery past max_deliveries)
        // settles these offsets a second way; answered once durable. A crash before that loses
        // only the ack: the message is delivered again.
        let acked = match self.subs.get_mut(&subscription) {
            Some(sub) if self.failed.is_none() => ranges
                .iter()
                .map(|&(from, to)| sub.cursor.apply_ack(from, to))
                .sum(),
            _ => 0,
        };
        self.metrics.acked(&subscription, acked);
        self.change(
            Command::Ack {
                subscription,
                ranges,
            },
            Done::Reply(reply),
        );
    }

    /// `ranges` without the offsets being moved out of `subscription`: their move settles them.
    fn without_moving(&self, subscription: &str, ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
        let Some(moving) = self.moving.get(subscription).filter(|m| !m.is_empty()) else {
            return ranges;
        };
        let mut kept = Vec::with_capacity(ranges.len());
        for (from, to) in ranges {
            let mut start = from;
            for &offset in moving.range(from..to) {
                if offset > start {
                    kept.push((start, offset));
                }
                start = offset + 1;
            }
            if start < to {
                kept.push((start, to));
            }
        }
        kept
    }

    fn nack(&mut self, key: ConsumerKey, offsets: &[u64], delay: Duration, reply: Reply) {
        let name = match self.attached(key) {
            Ok(name) => name,
            Err(e) => return reply.send(Err(e.to_wire())),
        };
        let held = match self.subs.get_mut(&name) {
            Some(sub) => sub.cursor.take_held(key, offsets),
            None => Vec::new(),
        };
        self.metrics.nacked(&name, held.len());
        self.return_offsets(name, held, delay, Done::Reply(reply));
    }

    fn extend(&mut self, key: ConsumerKey, offsets: &[u64], lease: Duration, reply: Reply) {
        let name = match self.attached(key) {
            Ok(name) => name,
            Err(e) => return reply.send(Err(e.to_wire())),
        };
        let deadline = self.now() + lease;
        if let Some(sub) = self.subs.get_mut(&name) {
            sub.cursor.extend(key, offsets, deadline);
        }
        reply.send(Ok(Response::Ok));
    }

    fn create_subscription(
        &mut self,
        name: String,
        lifetime: Lifetime,
        lease: Duration,
        done: Done,
    ) {
        if self.subs.contains_key(&name) {
            let channel = self.config.channel.to_string();
            return done.err(ChannelError::SubscriptionExists { channel, name });
        }
        let start = self.log.next_offset();
        if lifetime != Lifetime::Durable {
            self.subs
                .insert(name, Subscription::new(lifetime, lease, start));
            return done.ok(Response::Ok);
        }
        let lease_ms = lease.as_millis() as u64;
        self.change(
            Command::CreateSubscription {
                name,
                start,
                lease_ms,
            },
            done,
        );
    }

    fn delete_subscription(&mut self, name: String, done: Done) {
        let Some(sub) = self.subs.get(&name) else {
            let channel = self.config.channel.to_string();
            return done.err(ChannelError::UnknownSubscription { channel, name });
        };
        if !sub.is_logged() {
            self.subs.remove(&name);
            self.consumers.retain(|_, c| c.subscription != name);
            return done.ok(Response::Ok);
        }
        self.change(Command::DeleteSubscription { name }, done);
    }

    /// Age in ms of each subscription's oldest unacked message.
    pub(super) async fn oldest_unacked(&mut self) -> HashMap<String, u64> {
        let floors: Vec<(String, u64)> = self
            .subs
            .iter()
            .filter(|(_, s)| s.cursor.backlog(self.committed) > 0)
            .map(|(name, s)| (name.clone(), s.cursor.ack_floor()))
            .collect();
        let mut ages = HashMap::new();
        for (name, floor) in floors {
            if let Some(batch) = self.batch_at(floor).await {
                let age = self.now_ms() - batch.first_timestamp();
                ages.insert(name, age.max(0) as u64);
            }
        }
        ages
    }
}

/// Answers a request that came after shutdown began.
fn refuse(request: PartitionRequest) {
    let e = ChannelError::ShuttingDown;
    match request {
        PartitionRequest::Publish { reply, .. }
        | PartitionRequest::Ack { reply, .. }
        | PartitionRequest::Nack { reply, .. }
        | PartitionRequest::Extend { reply, .. }
        | PartitionRequest::Reject { reply, .. } => reply.send(Err(e.to_wire())),
        PartitionRequest::Attach { done, .. }
        | PartitionRequest::FinishRedrive { done, .. }
        | PartitionRequest::Purge { done, .. }
        | PartitionRequest::CreateSubscription { done, .. }
        | PartitionRequest::DeleteSubscription { done, .. } => {
            let _ = done.send(Err(e));
        }
        PartitionRequest::Shutdown { done } => {
            let _ = done.send(());
        }
        PartitionRequest::Detach { .. }
        | PartitionRequest::ProducerEpoch { .. }
        | PartitionRequest::TakeForRedrive { .. }
        | PartitionRequest::Wake
        | PartitionRequest::Describe { .. } => {}
    }
}
