//! Giving up on messages: dead-lettering (too many deliveries, rejected, expired) and moving
//! rejected-invalid messages to the invalid channel.
//!
//! Offsets being moved are out of flight and not ready: nobody can receive them meanwhile. When
//! the mover has stored every copy, the source logs a `Settle` command; if the move fails, the
//! offsets return for redelivery. A crash in between leaves them pending in the log, so they are
//! moved again, and the copy's derived id makes the second store a duplicate.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::future::join_all;
use sluice_protocol::{MessageView, Response};
use tokio::sync::oneshot;

use super::writes::Done;
use super::Partition;
use crate::channel::command::Command;
use crate::channel::dead_letter::{self, Death, DeathReason, Move};
use crate::channel::error::ChannelError;

/// A move in progress, resolving to its outcome.
pub type Moving = Pin<Box<dyn Future<Output = Moved> + Send>>;

/// What a finished move reports back to the partition.
pub struct Moved {
    /// The subscription the offsets belong to.
    subscription: String,
    /// The moved offsets.
    offsets: Vec<u64>,
    /// The `Settle` outcome to log.
    outcome: &'static str,
    /// Whether every copy was stored.
    result: Result<(), ChannelError>,
    /// Who waits for the move (a rejecting consumer).
    done: Done,
}

/// Where the messages go and why.
#[derive(Debug, Clone)]
pub enum MoveKind {
    /// To the dead-letter channel.
    Dead {
        /// Why they died.
        reason: DeathReason,
        /// The consumer's reason, for rejections.
        error: Option<String>,
    },
    /// To the invalid-message channel.
    Invalid {
        /// The consumer's reason.
        reason: String,
    },
}

/// How long a failed move waits before the message is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Partition {
    /// Starts moving `offsets` of `subscription` out of the partition.
    pub(super) async fn start_move(
        &mut self,
        subscription: String,
        offsets: Vec<u64>,
        kind: MoveKind,
        done: Done,
    ) {
        let (target, outcome) = match &kind {
            MoveKind::Dead { .. } => (self.config.dead_letters.channel.clone(), "dead-lettered"),
            MoveKind::Invalid { .. } => match self.config.dead_letters.invalid_channel.clone() {
                Some(target) => (target, "invalid"),
                None => {
                    let e = ChannelError::InvalidArgument(format!(
                        "channel {} has no invalid_channel",
                        self.config.channel
                    ));
                    done.err(e);
                    return self.return_offsets(
                        subscription,
                        offsets,
                        Duration::ZERO,
                        Done::Nothing,
                    );
                }
            },
        };
        self.metrics.moving(&subscription, &kind, offsets.len());
        let mut waits = Vec::with_capacity(offsets.len());
        let mut mover_gone = false;
        for &offset in &offsets {
            match self.copy_for_move(&subscription, offset, &kind).await {
                Some(message) => {
                    let (tx, rx) = oneshot::channel();
                    let m = Move {
                        target: target.clone(),
                        create: true,
                        message,
                        done: tx,
                    };
                    if self.config.dead_letters.mover.send(m).is_err() {
                        mover_gone = true;
                        break;
                    }
                    waits.push(rx);
                }
                None => tracing::warn!(offset, "message to move is no longer stored; settling it"),
            }
        }
        self.moving
            .entry(subscription.clone())
            .or_default()
            .extend(offsets.iter().copied());
        let moving = async move {
            let results = join_all(waits).await;
            let result = if mover_gone {
                Err(ChannelError::ShuttingDown)
            } else {
                results
                    .into_iter()
                    .try_for_each(|r| r.unwrap_or(Err(ChannelError::ShuttingDown)))
            };
            Moved {
                subscription,
                offsets,
                outcome,
                result,
                done,
            }
        };
        self.moves.push(Box::pin(moving));
    }

    /// The copy to publish: the stored message with death or invalid headers, keeping its
    /// publisher-made id if it has one, and a dedupe key derived from where it is moved from.
    async fn copy_for_move(
        &mut self,
        subscription: &str,
        offset: u64,
        kind: &MoveKind,
    ) -> Option<sluice_protocol::NewMessage> {
        let batch = self.batch_at(offset).await?;
        let record = batch
            .raw_records()
            .nth((offset - batch.base_offset()) as usize)?;
        let view = MessageView::decode(record).ok()?;
        let (channel, partition) = (&*self.config.channel, self.config.id);
        let source = dead_letter::Source {
            channel,
            incarnation: self.config.incarnation,
            partition,
        };
        let move_key = dead_letter::move_id(source, subscription, offset);
        Some(match kind {
            MoveKind::Dead { reason, error } => {
                let count = self
                    .subs
                    .get(subscription)
                    .map_or(1, |s| s.cursor.delivery_count(offset));
                let had = if *reason == DeathReason::Rejected {
                    count
                } else {
                    count - 1
                };
                let death = Death {
                    reason: *reason,
                    channel,
                    subscription,
                    partition,
                    offset,
                    count: had,
                    error: error.as_deref(),
                    now_ms: self.now_ms(),
                };
                dead_letter::dead_letter(view, &death, move_key)
            }
            MoveKind::Invalid { reason } => {
                dead_letter::invalid_message(view, reason, channel, move_key)
            }
        })
    }

    /// A move finished: settle the source, or return the offsets for another try.
    pub(super) fn on_moved(&mut self, moved: Moved) {
        let Moved {
            subscription,
            offsets,
            outcome,
            result,
            done,
        } = moved;
        match result {
            Ok(()) => {
                failpoint("dead-letter-before-settle");
                let command = Command::Settle {
                    subscription,
                    offsets,
                    outcome: outcome.into(),
                };
                self.change(command, done);
            }
            Err(e) => {
                tracing::warn!(channel = %self.config.channel, "moving messages failed, retrying: {e}");
                if let Some(moving) = self.moving.get_mut(&subscription) {
                    for offset in &offsets {
                        moving.remove(offset);
                    }
                }
                done.err(e);
                self.return_offsets(subscription, offsets, RETRY_AFTER, Done::Nothing);
            }
        }
    }

    /// Handles a consumer's reject: dead-letter (or move to the invalid channel) what it holds.
    pub(super) async fn reject(&mut self, key: u64, offsets: &[u64], kind: MoveKind, done: Done) {
        let name = match self.attached(key) {
            Ok(name) => name,
            Err(e) => return done.err(e),
        };
        let held = match self.subs.get_mut(&name) {
            Some(sub) => sub.cursor.take_held(key, offsets),
            None => Vec::new(),
        };
        if held.is_empty() {
            return done.ok(Response::Ok);
        }
        self.start_move(name, held, kind, done).await;
    }

    /// Takes up to `max` messages of the queue's own subscription out of reach for a redrive.
    pub(super) async fn take_for_redrive(&mut self, max: u64) -> Vec<(u64, bytes::Bytes)> {
        // Apply what is already on its way to the log first (a nack or detach that came just
        // before), so the redrive sees every message that is waiting.
        while let Some((result, after)) = self.writes.next().await {
            self.on_durable(result, after);
        }
        let name = self.config.channel.to_string();
        let now = self.now();
        let Some(sub) = self.subs.get_mut(&name) else {
            return Vec::new();
        };
        let deadline = now + REDRIVE_LEASE;
        let grants = sub
            .cursor
            .grant(REDRIVE_KEY, max, self.committed, now, deadline);
        let mut taken = Vec::new();
        for offset in grants.iter().flat_map(|g| g.start..g.end) {
            let Some(batch) = self.batch_at(offset).await else {
                continue;
            };
            if let Some(record) = batch
                .raw_records()
                .nth((offset - batch.base_offset()) as usize)
            {
                taken.push((offset, record));
            }
        }
        taken
    }

    /// Settles redriven offsets and returns the ones that could not be published, waiting again
    /// at once: nothing retries them on its own, the next redrive or a consumer takes them.
    ///
    /// A redrive that outlasted [`REDRIVE_LEASE`] no longer holds what it took: those
    /// messages already returned on their own, and a consumer may hold them now. Of the failed
    /// ones, only those the redrive still holds are returned, so such a consumer keeps its
    /// delivery. The redriven ones are settled whoever holds them: their copies are stored.
    pub(super) fn finish_redrive(&mut self, settled: Vec<u64>, failed: Vec<u64>, done: Done) {
        let name = self.config.channel.to_string();
        let failed = match self.subs.get_mut(&name) {
            Some(sub) => {
                sub.cursor.take_held(REDRIVE_KEY, &settled);
                sub.cursor.take_held(REDRIVE_KEY, &failed)
            }
            None => Vec::new(),
        };
        if !failed.is_empty() {
            self.return_offsets(name.clone(), failed, Duration::ZERO, Done::Nothing);
        }
        let command = Command::Settle {
            subscription: name,
            offsets: settled,
            outcome: "redriven".into(),
        };
        self.change(command, done);
    }
}

/// The consumer key redrive holds its messages under while it publishes them.
const REDRIVE_KEY: u64 = u64::MAX;
/// How long a redrive may hold messages before they return on their own.
const REDRIVE_LEASE: Duration = Duration::from_secs(60);

/// Test hook: when `SLUICE_FAILPOINT` names this point, the process aborts here, as a crash
/// would (no flush, no shutdown). Read once; costs one atomic load afterwards.
fn failpoint(name: &str) {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("SLUICE_FAILPOINT").ok());
    if armed.as_deref() == Some(name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
}
