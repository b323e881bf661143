//! Dispatch: handing committed messages to consumers with free credit, round robin, skipping
//! expired ones and setting aside those past `max_deliveries`.

use sluice_protocol::RecordBatch;
use tokio::time::Instant;

use super::moves;
use super::writes::Done;
use super::{Partition, READ_CHUNK, TURN};
use crate::channel::consumer::ConsumerHandle;
use crate::channel::cursor::Grant;
use crate::channel::dead_letter::DeathReason;
use crate::channel::delivery;
use crate::channel::outbox::Outgoing;

impl Partition {
    /// Hands out deliveries to every subscription's consumers while credit and messages last.
    pub(super) async fn dispatch(&mut self) {
        let now = self.now();
        let names: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| {
                !s.consumers.is_empty() && s.cursor.deliverable(self.committed, now) > 0
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            while let Some(out) = self.grant_round(&name, now) {
                for (handle, grants) in out {
                    self.metrics.delivered(&name, &grants);
                    self.send_grants(&handle, &grants).await;
                }
            }
            if !self.expired.is_empty() {
                let offsets = std::mem::take(&mut self.expired);
                self.settle_expired(name.clone(), offsets).await;
            }
            if !self.doomed.is_empty() {
                let offsets = std::mem::take(&mut self.doomed);
                let kind = moves::MoveKind::Dead {
                    reason: DeathReason::MaxDeliveries,
                    error: None,
                };
                self.start_move(name, offsets, kind, Done::Nothing).await;
            }
        }
    }

    /// One round robin pass over a subscription's consumers; `None` when nobody got anything.
    /// The next pass starts after the last consumer served in this one, so consumers take turns
    /// whether messages come one at a time or in bursts.
    fn grant_round(
        &mut self,
        name: &str,
        now: Instant,
    ) -> Option<Vec<(ConsumerHandle, Vec<Grant>)>> {
        let sub = self.subs.get_mut(name)?;
        let n = sub.consumers.len();
        let mut out = Vec::new();
        let mut last_served = None;
        for i in 0..n {
            let available = sub.cursor.deliverable(self.committed, now);
            if available == 0 {
                break;
            }
            let key = sub.consumers[(sub.turn + i) % n];
            let Some(attached) = self.consumers.get(&key) else {
                continue;
            };
            let handle = &attached.handle;
            let got = handle.credit.reserve(available.min(TURN));
            if got == 0 {
                continue;
            }
            let deadline = now + handle.lease.unwrap_or(sub.lease);
            let mut grants = sub.cursor.grant(key, got, self.committed, now, deadline);
            // Expiry first: an expired message is settled as expired whatever its delivery
            // count, as the sweeper would have settled it.
            if self.expiry.is_active() {
                let now_ms = self.config.clock.now_ms();
                let expired: Vec<u64> = grants
                    .iter()
                    .flat_map(|g| self.expiry.expired_in(g.start, g.end, now_ms))
                    .collect();
                if !expired.is_empty() {
                    self.expired.extend(sub.cursor.take_held(key, &expired));
                    grants = without(grants, &expired);
                }
            }
            let max = self.config.dead_letters.max_deliveries;
            for g in grants.iter().filter(|g| g.count > max) {
                let offsets: Vec<u64> = (g.start..g.end).collect();
                self.doomed.extend(sub.cursor.take_held(key, &offsets));
            }
            grants.retain(|g| g.count <= max);
            let used: u64 = grants.iter().map(|g| g.end - g.start).sum();
            handle.credit.refund(got - used);
            if used > 0 {
                out.push((handle.clone(), grants));
                last_served = Some(i);
            }
        }
        let served = last_served?;
        sub.turn = (sub.turn + served + 1) % n;
        Some(out)
    }

    async fn send_grants(&mut self, handle: &ConsumerHandle, grants: &[Grant]) {
        for grant in grants {
            let mut offset = grant.start;
            while offset < grant.end {
                let Some(batch) = self.batch_at(offset).await else {
                    tracing::warn!(offset, "granted offsets could not be read; returning them");
                    self.give_back(handle, offset, grant.end);
                    break;
                };
                let d = delivery::slice(
                    &batch,
                    offset,
                    grant.end,
                    handle.client_id,
                    self.config.id,
                    grant.count,
                );
                offset = d.first_offset + u64::from(d.record_count);
                let _ = handle.outbox.send(Outgoing::Delivery(d));
            }
        }
    }

    /// Undoes the unsent part `[from, to)` of a grant: the consumer gets its credit back and
    /// the offsets return for another try, so a failed read never leaks credit.
    fn give_back(&mut self, handle: &ConsumerHandle, from: u64, to: u64) {
        handle.credit.refund(to - from);
        let name = self
            .consumers
            .get(&handle.key)
            .map(|a| a.subscription.clone());
        let Some((name, sub)) = name.and_then(|n| self.subs.get_mut(&n).map(|s| (n, s))) else {
            return;
        };
        let offsets: Vec<u64> = (from..to).collect();
        let held = sub.cursor.take_held(handle.key, &offsets);
        self.return_offsets(name, held, std::time::Duration::from_secs(1), Done::Nothing);
    }

    /// The committed message batch holding `offset`, from the cache or the log.
    pub(super) async fn batch_at(&mut self, offset: u64) -> Option<RecordBatch> {
        if let Some(batch) = self
            .cache
            .find(offset)
            .or_else(|| self.read_behind.find(offset))
        {
            return Some(batch.clone());
        }
        let batches = match self.log.read(offset, READ_CHUNK).await {
            Ok(batches) => batches,
            Err(e) => {
                tracing::error!(offset, "reading the log for delivery: {e}");
                return None;
            }
        };
        self.read_behind.replace(batches);
        self.read_behind.find(offset).cloned()
    }
}

/// `grants` without the offsets in `removed`, split around them.
fn without(grants: Vec<Grant>, removed: &[u64]) -> Vec<Grant> {
    let removed: std::collections::BTreeSet<u64> = removed.iter().copied().collect();
    let mut out = Vec::with_capacity(grants.len());
    for g in grants {
        let mut start = g.start;
        for &o in removed.range(g.start..g.end) {
            if o > start {
                out.push(Grant {
                    start,
                    end: o,
                    count: g.count,
                });
            }
            start = o + 1;
        }
        if start < g.end {
            out.push(Grant {
                start,
                end: g.end,
                count: g.count,
            });
        }
    }
    out
}
