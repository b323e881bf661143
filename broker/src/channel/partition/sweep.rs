//! The eager half of expiry: dropping or dead-lettering expired messages at the heads of
//! subscriptions, whether or not a consumer is attached.

use super::moves;
use super::writes::Done;
use super::{Partition, SWEEP_SPAN};
use crate::channel::command::Command;
use crate::channel::dead_letter::DeathReason;

impl Partition {
    /// Drops expired messages at the heads of subscriptions, delivered or not (the eager half
    /// of expiry; dispatch skipping expired messages is the lazy half). Channels that
    /// dead-letter expired messages do that when dispatch reaches them.
    pub(super) fn sweep_expired(&mut self) {
        if !self.expiry.is_active() || self.config.dead_letters.on_expiry {
            return;
        }
        let now = self.now_ms();
        let mut swept = Vec::new();
        for (name, sub) in &mut self.subs {
            let moving = self.moving.get(name);
            let floor = sub.cursor.ack_floor();
            let end = self.committed.min(floor + SWEEP_SPAN);
            let offsets: Vec<u64> = self
                .expiry
                .expired_in(floor, end, now)
                .into_iter()
                .filter(|&o| !sub.cursor.is_acked(o) && !sub.cursor.is_held(o))
                .filter(|o| !moving.is_some_and(|m| m.contains(o)))
                .collect();
            if !offsets.is_empty() {
                swept.push((name.clone(), offsets));
            }
        }
        for (name, offsets) in swept {
            self.drop_expired(name, offsets);
        }
    }

    /// Settles expired offsets: dead-letters them where the channel says so, drops them
    /// otherwise.
    pub(super) async fn settle_expired(&mut self, subscription: String, offsets: Vec<u64>) {
        if self.config.dead_letters.on_expiry {
            self.metrics.expired(&subscription, offsets.len());
            let kind = moves::MoveKind::Dead {
                reason: DeathReason::Expired,
                error: None,
            };
            self.start_move(subscription, offsets, kind, Done::Nothing)
                .await;
        } else {
            self.drop_expired(subscription, offsets);
        }
    }

    /// Drops expired offsets: done at once in memory (expiry is decided again the same way
    /// after a restart, so applying before the log commits loses nothing), and logged.
    fn drop_expired(&mut self, subscription: String, offsets: Vec<u64>) {
        self.metrics.expired(&subscription, offsets.len());
        if let Some(sub) = self.subs.get_mut(&subscription) {
            for &o in &offsets {
                sub.cursor.apply_ack(o, o + 1);
            }
        }
        tracing::debug!(channel = %self.config.channel, count = offsets.len(), "expired");
        let command = Command::Settle {
            subscription,
            offsets,
            outcome: "expired".into(),
        };
        self.change(command, Done::Nothing);
    }
}
