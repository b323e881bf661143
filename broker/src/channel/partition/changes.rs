//! Changes to the partition's state: logged commands (appended, then applied in log order
//! once durable) and what happens when an append becomes durable.

use std::time::Duration;

use sluice_protocol::Response;
use tokio::time::Instant;

use super::writes::{AfterWrite, Done};
use super::{Partition, TERM};
use crate::channel::command::Command;
use crate::channel::error::ChannelError;
use crate::channel::subscription::{Lifetime, Subscription};
use crate::log::LogError;

impl Partition {
    /// Applies a committed command to the in-memory state.
    pub(super) fn apply(&mut self, command: Command, now: Instant) {
        match command {
            Command::CreateSubscription {
                name,
                start,
                lease_ms,
            } => {
                let lease = Duration::from_millis(lease_ms);
                let sub = Subscription::new(Lifetime::Durable, lease, start);
                self.subs.entry(name).or_insert(sub);
            }
            Command::DeleteSubscription { name } => {
                self.subs.remove(&name);
                self.consumers.retain(|_, c| c.subscription != name);
            }
            Command::Ack {
                subscription,
                ranges,
            } => {
                if let Some(sub) = self.subs.get_mut(&subscription) {
                    for (from, to) in ranges {
                        sub.cursor.apply_ack(from, to);
                    }
                }
            }
            Command::Settle {
                subscription,
                offsets,
                outcome: _,
            } => {
                if let Some(moving) = self.moving.get_mut(&subscription) {
                    for offset in &offsets {
                        moving.remove(offset);
                    }
                }
                if let Some(sub) = self.subs.get_mut(&subscription) {
                    for offset in offsets {
                        sub.cursor.apply_ack(offset, offset + 1);
                    }
                }
            }
            Command::Return {
                subscription,
                offsets,
                delay_ms,
            } => {
                let now_ms = self.now_ms();
                if offsets.iter().any(|&o| self.expiry.is_expired(o, now_ms)) {
                    self.sweep_due = true; // expired while held: no timer is due for it
                }
                if let Some(sub) = self.subs.get_mut(&subscription) {
                    let ready_at = now + Duration::from_millis(delay_ms);
                    sub.cursor.apply_return(&offsets, ready_at, now);
                }
            }
            Command::Purge { subscription, to } => {
                for (name, sub) in &mut self.subs {
                    if subscription.as_ref().is_none_or(|s| s == name) {
                        sub.cursor.apply_skip_to(to);
                    }
                }
            }
        }
    }

    /// Gives offsets back: through the log for durable subscriptions, at once otherwise.
    pub(super) fn return_offsets(
        &mut self,
        sub: String,
        offsets: Vec<u64>,
        delay: Duration,
        done: Done,
    ) {
        if offsets.is_empty() {
            return done.ok(Response::Ok);
        }
        let command = Command::Return {
            subscription: sub,
            offsets,
            delay_ms: delay.as_millis() as u64,
        };
        self.change(command, done);
    }

    /// Makes a cursor change: logged and applied when durable, or applied now if not logged.
    pub(super) fn change(&mut self, command: Command, done: Done) {
        let logged = command
            .subscription()
            .is_none_or(|name| self.subs.get(name).is_none_or(Subscription::is_logged));
        if !logged {
            self.apply(command, self.now());
            return done.ok(Response::Ok);
        }
        if let Some(reason) = &self.failed {
            return done.err(ChannelError::PartitionFailed(reason.clone()));
        }
        match self.log.append(command.to_batch(), TERM, self.now_ms()) {
            Ok((_, durable)) => self
                .writes
                .push(durable, AfterWrite::Apply { command, done }),
            Err(e) => self.fail(e, done),
        }
    }

    pub(super) fn fail(&mut self, e: LogError, done: Done) {
        tracing::error!(channel = %self.config.channel, partition = self.config.id, "log write failed: {e}");
        self.failed = Some(e.to_string());
        done.err(ChannelError::Log(e));
    }

    pub(super) fn on_durable(&mut self, result: Result<(), LogError>, after: AfterWrite) {
        if let Err(e) = result {
            return self.fail(e, after.into_done());
        }
        match after {
            AfterWrite::Published {
                batch,
                pending,
                reply,
            } => {
                self.committed = self.committed.max(batch.next_offset());
                self.expiry.observe(&batch);
                self.metrics.published(&batch);
                let ack = pending.into_ack(self.config.id, batch.base_offset());
                self.cache.push(batch);
                reply.send(Ok(Response::Published(ack)));
            }
            AfterWrite::Apply { command, done } => {
                self.apply(command, self.now());
                done.ok(Response::Ok);
            }
        }
    }
}
