//! The cursor of one subscription over one partition: what is done, what is out, what is next.
//!
//! Two kinds of state live here. The *logged* state (`ack_floor`, the acked set above it, and
//! the number of logged returns per offset) changes only through [`Cursor::apply_ack`] and
//! [`Cursor::apply_return`], which the partition calls for committed commands in log order, so
//! replaying the log rebuilds it exactly. The *volatile* state (what is in flight to whom, until
//! when, and what waits for redelivery) is rebuilt empty after a restart: everything not acked is
//! then delivered again, with its delivery count taken from the logged returns.
//!
//! In-flight deliveries are kept as ranges (`[start, end)` handed to one consumer together), so
//! a consumer taking 1000 messages costs one entry, not 1000.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::time::Instant;

use super::range_set::RangeSet;

/// Identifies an attached consumer across the broker.
pub type ConsumerKey = u64;

/// Offsets `[start, end)` handed to one consumer with one delivery count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// First offset.
    pub start: u64,
    /// One past the last offset.
    pub end: u64,
    /// Delivery count of every offset in the grant.
    pub count: u32,
}

/// A range of offsets out with a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    /// One past the last offset of the range.
    end: u64,
    /// Who holds it.
    consumer: ConsumerKey,
    /// When the lease runs out.
    deadline: Instant,
}

/// The logged part of a cursor (what replay rebuilds), as a snapshot keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggedState {
    /// Everything below is done.
    pub ack_floor: u64,
    /// Acked `[from, to)` ranges above the floor.
    pub acked: Vec<(u64, u64)>,
    /// Logged returns per offset, by offset.
    pub returns: Vec<(u64, u32)>,
}

/// Cursor state of one subscription on one partition.
#[derive(Debug, Clone)]
pub struct Cursor {
    /// Every offset below is done (logged).
    ack_floor: u64,
    /// Acked offsets at or above the floor (logged).
    acked: RangeSet,
    /// Logged returns per offset; the delivery count is 1 + this (logged).
    returns: HashMap<u64, u32>,
    /// First offset not yet delivered in this incarnation (volatile).
    next_unsent: u64,
    /// Returned offsets ready for redelivery, lowest first (volatile).
    ready: BTreeSet<u64>,
    /// Returned offsets waiting out a nack delay (volatile).
    delayed: BTreeSet<(Instant, u64)>,
    /// Ranges out with consumers, keyed by start (volatile).
    in_flight: BTreeMap<u64, InFlight>,
}

impl Cursor {
    /// A cursor whose first message is `start`.
    pub fn new(start: u64) -> Self {
        Self {
            ack_floor: start,
            acked: RangeSet::default(),
            returns: HashMap::new(),
            next_unsent: start,
            ready: BTreeSet::new(),
            delayed: BTreeSet::new(),
            in_flight: BTreeMap::new(),
        }
    }

    /// Everything below this offset is done.
    pub fn ack_floor(&self) -> u64 {
        self.ack_floor
    }

    /// Messages below `end` not acked yet, in flight included.
    pub fn backlog(&self, end: u64) -> u64 {
        end.saturating_sub(self.ack_floor)
            .saturating_sub(self.acked.len())
    }

    /// Messages out with consumers.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.iter().map(|(s, f)| f.end - s).sum()
    }

    /// Whether `offset` was acked.
    pub fn is_acked(&self, offset: u64) -> bool {
        offset < self.ack_floor || self.acked.contains(offset)
    }

    /// Whether `offset` is out with a consumer.
    pub fn is_held(&self, offset: u64) -> bool {
        self.holder(offset).is_some()
    }

    /// Delivery count the next delivery of `offset` will carry.
    pub fn delivery_count(&self, offset: u64) -> u32 {
        1 + self.returns.get(&offset).copied().unwrap_or(0)
    }

    /// Applies an ack of `[from, to)`; returns how many of those offsets were not done before.
    pub fn apply_ack(&mut self, from: u64, to: u64) -> u64 {
        let from = from.max(self.ack_floor);
        if from >= to {
            return 0;
        }
        let added = self.acked.insert(from, to);
        self.cut_in_flight(from, to);
        self.ready.retain(|o| !(from..to).contains(o));
        self.delayed.retain(|(_, o)| !(from..to).contains(o));
        if !self.returns.is_empty() {
            self.returns.retain(|o, _| !(from..to).contains(o));
        }
        if let Some(end) = self.acked.take_range_at(self.ack_floor) {
            self.ack_floor = end;
        }
        self.next_unsent = self.next_unsent.max(self.ack_floor);
        added
    }

    /// Applies a committed return of `offsets`; they are redelivered from `ready_at` on.
    pub fn apply_return(&mut self, offsets: &[u64], ready_at: Instant, now: Instant) {
        for &offset in offsets {
            if self.is_acked(offset) {
                continue;
            }
            *self.returns.entry(offset).or_insert(0) += 1;
            self.cut_in_flight(offset, offset + 1);
            if offset >= self.next_unsent {
                continue; // not delivered in this incarnation: it goes out as new
            }
            if ready_at <= now {
                self.ready.insert(offset);
            } else {
                self.delayed.insert((ready_at, offset));
            }
        }
    }

    /// Settles everything below `to` (purge, retention, the log's first offset after replay).
    pub fn apply_skip_to(&mut self, to: u64) {
        self.apply_ack(self.ack_floor, to);
    }

    /// The logged state, for a snapshot.
    pub fn logged(&self) -> LoggedState {
        let mut returns: Vec<(u64, u32)> = self.returns.iter().map(|(&o, &n)| (o, n)).collect();
        returns.sort_unstable();
        LoggedState {
            ack_floor: self.ack_floor,
            acked: self.acked.iter().collect(),
            returns,
        }
    }

    /// A cursor with this logged state and nothing in flight, as replay would leave it.
    pub fn from_logged(state: &LoggedState) -> Self {
        let ack_floor = state.ack_floor;
        let mut cursor = Self::new(ack_floor);
        for &(from, to) in &state.acked {
            cursor.acked.insert(from.max(ack_floor), to);
        }
        if let Some(end) = cursor.acked.take_range_at(ack_floor) {
            cursor.ack_floor = end;
            cursor.next_unsent = end;
        }
        cursor.returns = state
            .returns
            .iter()
            .filter(|&&(o, _)| !cursor.is_acked(o))
            .copied()
            .collect();
        cursor
    }

    /// Upper bound of what [`Cursor::grant`] could hand out now.
    pub fn deliverable(&self, end: u64, now: Instant) -> u64 {
        let delayed = self.delayed.iter().take_while(|(t, _)| *t <= now).count() as u64;
        self.ready.len() as u64 + delayed + end.saturating_sub(self.next_unsent)
    }

    /// Hands at most `max` offsets below `end` to `consumer` until `deadline`: redeliveries
    /// first, then new offsets in order.
    pub fn grant(
        &mut self,
        consumer: ConsumerKey,
        max: u64,
        end: u64,
        now: Instant,
        deadline: Instant,
    ) -> Vec<Grant> {
        self.promote_delayed(now);
        let mut grants = Vec::new();
        let mut budget = max;
        while budget > 0 {
            let Some(offset) = self.ready.pop_first() else {
                break;
            };
            push_grant(&mut grants, offset, offset + 1, self.delivery_count(offset));
            budget -= 1;
        }
        while budget > 0 && self.next_unsent < end {
            let start = self.acked.next_absent(self.next_unsent);
            if start >= end {
                self.next_unsent = end;
                break;
            }
            let stop = self
                .acked
                .next_present(start)
                .unwrap_or(end)
                .min(end)
                .min(start.saturating_add(budget));
            let (stop, count) = self.same_count_run(start, stop);
            push_grant(&mut grants, start, stop, count);
            budget -= stop - start;
            self.next_unsent = stop;
        }
        for g in &grants {
            let flight = InFlight {
                end: g.end,
                consumer,
                deadline,
            };
            self.in_flight.insert(g.start, flight);
        }
        grants
    }

    /// Removes leases that ran out by `now`; returns the offsets to log a return for.
    pub fn take_expired(&mut self, now: Instant) -> Vec<u64> {
        self.take_in_flight(|f| f.deadline <= now)
    }

    /// Removes everything `consumer` holds; returns the offsets to log a return for.
    pub fn release(&mut self, consumer: ConsumerKey) -> Vec<u64> {
        self.take_in_flight(|f| f.consumer == consumer)
    }

    /// Of `offsets`, those out with `consumer` now.
    pub fn held_by(&self, consumer: ConsumerKey, offsets: &[u64]) -> Vec<u64> {
        offsets
            .iter()
            .copied()
            .filter(|&o| self.holder(o).is_some_and(|f| f.consumer == consumer))
            .collect()
    }

    /// Takes those of `offsets` that `consumer` holds out of flight (for a nack); returns them.
    pub fn take_held(&mut self, consumer: ConsumerKey, offsets: &[u64]) -> Vec<u64> {
        let held = self.held_by(consumer, offsets);
        for &offset in &held {
            self.cut_in_flight(offset, offset + 1);
        }
        held
    }

    /// Sets a new deadline for those of `offsets` that `consumer` holds; returns how many.
    pub fn extend(&mut self, consumer: ConsumerKey, offsets: &[u64], deadline: Instant) -> usize {
        let held = self.held_by(consumer, offsets);
        for &offset in &held {
            self.cut_in_flight(offset, offset + 1);
            let flight = InFlight {
                end: offset + 1,
                consumer,
                deadline,
            };
            self.in_flight.insert(offset, flight);
        }
        held.len()
    }

    /// The earliest lease deadline or nack delay, for the partition's timer.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let lease = self.in_flight.values().map(|f| f.deadline).min();
        let delay = self.delayed.first().map(|(t, _)| *t);
        lease.into_iter().chain(delay).min()
    }

    fn holder(&self, offset: u64) -> Option<&InFlight> {
        let (&start, flight) = self.in_flight.range(..=offset).next_back()?;
        (start <= offset && offset < flight.end).then_some(flight)
    }

    /// Makes the returns whose nack delay has passed by `now` ready for redelivery, so
    /// [`Cursor::next_wakeup`] looks past them.
    pub fn promote_delayed(&mut self, now: Instant) {
        while let Some(&(at, offset)) = self.delayed.first() {
            if at > now {
                break;
            }
            self.delayed.pop_first();
            self.ready.insert(offset);
        }
    }

    /// Shortens `[start, stop)` to the run whose offsets share one delivery count.
    fn same_count_run(&self, start: u64, stop: u64) -> (u64, u32) {
        let count = self.delivery_count(start);
        if self.returns.is_empty() {
            return (stop, count);
        }
        let end = (start + 1..stop)
            .find(|&o| self.delivery_count(o) != count)
            .unwrap_or(stop);
        (end, count)
    }

    /// Removes `[from, to)` from the in-flight ranges, keeping the parts outside it.
    fn cut_in_flight(&mut self, from: u64, to: u64) {
        let first = self.in_flight.range(..=from).next_back().map(|(&s, _)| s);
        let starts: Vec<u64> = first
            .into_iter()
            .chain(self.in_flight.range(from..to).map(|(&s, _)| s))
            .collect();
        for start in starts {
            let Some(flight) = self.in_flight.remove(&start) else {
                continue;
            };
            if flight.end <= from || start >= to {
                self.in_flight.insert(start, flight);
                continue;
            }
            if start < from {
                self.in_flight.insert(
                    start,
                    InFlight {
                        end: from,
                        ..flight
                    },
                );
            }
            if flight.end > to {
                self.in_flight.insert(to, flight);
            }
        }
    }

    fn take_in_flight(&mut self, pick: impl Fn(&InFlight) -> bool) -> Vec<u64> {
        let picked: Vec<(u64, u64)> = self
            .in_flight
            .iter()
            .filter(|(_, f)| pick(f))
            .map(|(&s, f)| (s, f.end))
            .collect();
        let mut offsets = Vec::new();
        for (start, end) in picked {
            self.in_flight.remove(&start);
            offsets.extend((start..end).filter(|&o| !self.acked.contains(o)));
        }
        offsets
    }
}

fn push_grant(grants: &mut Vec<Grant>, start: u64, end: u64, count: u32) {
    match grants.last_mut() {
        Some(last) if last.end == start && last.count == count => last.end = end,
        _ => grants.push(Grant { start, end, count }),
    }
}

#[cfg(test)]
#[path = "cursor_tests.rs"]
mod tests;
