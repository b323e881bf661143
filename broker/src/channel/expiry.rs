//! Message expiration: which offsets of a partition are past their time.
//!
//! A message expires at its batch's append time plus its own TTL, or plus the channel's
//! `max_age`, whichever comes first. This index remembers only what it needs for that: batch
//! timestamps when the channel has a `max_age` (one entry per batch, and timestamps never
//! decrease along the log, so an expired prefix is found by one search) and the expiry of each
//! message that carries a TTL. It knows nothing about cursors; the partition asks it.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_protocol::message::peek_ttl;
use sluice_protocol::RecordBatch;

/// Expiry times of one partition's messages.
#[derive(Debug, Default)]
pub struct Expiry {
    /// The channel's `max_age` in ms, if any.
    max_age_ms: Option<i64>,
    /// Base offset → append time of each message batch (only with a `max_age`).
    batch_times: BTreeMap<u64, i64>,
    /// Offset → expiry time of messages with a TTL.
    ttl: BTreeMap<u64, i64>,
}

impl Expiry {
    /// An index for a channel with this `max_age`.
    pub fn new(max_age: Option<Duration>) -> Self {
        Self {
            max_age_ms: max_age.map(|d| d.as_millis() as i64),
            ..Self::default()
        }
    }

    /// Whether anything can expire at all; when not, callers skip every check.
    pub fn is_active(&self) -> bool {
        self.max_age_ms.is_some() || !self.ttl.is_empty()
    }

    /// Learns the expiry of a committed message batch's records.
    pub fn observe(&mut self, batch: &RecordBatch) {
        if batch.is_control() {
            return;
        }
        let at = batch.first_timestamp();
        if self.max_age_ms.is_some() {
            self.batch_times.insert(batch.base_offset(), at);
        }
        if !batch.may_have_ttls() {
            return;
        }
        for (i, record) in batch.record_slices().enumerate() {
            if let Some(ttl) = peek_ttl(record) {
                self.ttl
                    .insert(batch.base_offset() + i as u64, at + i64::from(ttl));
            }
        }
    }

    /// Whether `offset` has expired at `now_ms`.
    pub fn is_expired(&self, offset: u64, now_ms: i64) -> bool {
        let by_ttl = self.ttl.get(&offset).is_some_and(|&at| at <= now_ms);
        by_ttl || self.aged(offset, now_ms)
    }

    fn aged(&self, offset: u64, now_ms: i64) -> bool {
        let Some(max_age) = self.max_age_ms else {
            return false;
        };
        self.batch_times
            .range(..=offset)
            .next_back()
            .is_some_and(|(_, &at)| at + max_age <= now_ms)
    }

    /// The expired offsets of `[start, end)`.
    pub fn expired_in(&self, start: u64, end: u64, now_ms: i64) -> Vec<u64> {
        if !self.is_active() {
            return Vec::new();
        }
        let mut expired: Vec<u64> = (start..self.aged_until(start, end, now_ms)).collect();
        let first_fresh = expired.last().map_or(start, |o| o + 1);
        expired.extend(
            self.ttl
                .range(first_fresh..end)
                .filter(|(_, &at)| at <= now_ms)
                .map(|(&o, _)| o),
        );
        expired
    }

    /// One past the last offset of `[start, end)` expired by `max_age` (timestamps never
    /// decrease, so those form a prefix).
    fn aged_until(&self, start: u64, end: u64, now_ms: i64) -> u64 {
        let Some(max_age) = self.max_age_ms else {
            return start;
        };
        let from = self
            .batch_times
            .range(..=start)
            .next_back()
            .map_or(start, |(&b, _)| b);
        let fresh = self
            .batch_times
            .range(from..)
            .find(|(_, &at)| at + max_age > now_ms)
            .map(|(&base, _)| base);
        fresh.map_or(end, |base| base.clamp(start, end))
    }

    /// The next moment something expires after `now_ms`, for the sweeper's timer.
    pub fn next_expiry(&self, now_ms: i64) -> Option<i64> {
        let ttl = self.ttl.values().copied().filter(|&at| at > now_ms).min();
        let aged = self.max_age_ms.and_then(|max_age| {
            self.batch_times
                .values()
                .map(|&at| at + max_age)
                .find(|&at| at > now_ms)
        });
        ttl.into_iter().chain(aged).min()
    }

    /// Forgets everything below `offset` (every subscription is past it).
    pub fn forget_below(&mut self, offset: u64) {
        self.ttl = self.ttl.split_off(&offset);
        let keep_from = self
            .batch_times
            .range(..=offset)
            .next_back()
            .map(|(&b, _)| b);
        if let Some(from) = keep_from {
            self.batch_times = self.batch_times.split_off(&from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use sluice_protocol::{BatchBuilder, NewMessage, Stamp};

    fn batch(base: u64, at: i64, ttls: &[Option<u32>]) -> RecordBatch {
        let mut b = BatchBuilder::messages();
        for ttl in ttls {
            let m = NewMessage {
                ttl_ms: *ttl,
                ..NewMessage::new("x")
            };
            b.push_with(|buf: &mut BytesMut| m.encode(buf).unwrap());
        }
        b.finish().unwrap().stamp(Stamp {
            base_offset: base,
            entry_index: 0,
            term: 1,
            timestamp: at,
        })
    }

    #[test]
    fn a_ttl_expires_only_its_own_message() {
        let mut e = Expiry::new(None);
        e.observe(&batch(0, 1000, &[None, Some(50), None]));
        assert!(e.is_active());
        assert!(!e.is_expired(1, 1049));
        assert!(e.is_expired(1, 1050));
        assert!(!e.is_expired(0, 10_000) && !e.is_expired(2, 10_000));
        assert_eq!(e.expired_in(0, 3, 2000), vec![1]);
        assert_eq!(e.next_expiry(1000), Some(1050));
    }

    #[test]
    fn max_age_expires_whole_batches_as_a_prefix() {
        let mut e = Expiry::new(Some(Duration::from_millis(100)));
        e.observe(&batch(0, 1000, &[None, None]));
        e.observe(&batch(2, 1050, &[None]));
        e.observe(&batch(3, 1200, &[None]));
        assert_eq!(e.expired_in(0, 4, 1099), Vec::<u64>::new());
        assert_eq!(e.expired_in(0, 4, 1100), vec![0, 1]);
        assert_eq!(e.expired_in(1, 4, 1160), vec![1, 2]);
        assert_eq!(e.expired_in(0, 4, 5000), vec![0, 1, 2, 3]);
        assert_eq!(e.next_expiry(1100), Some(1150));
    }

    #[test]
    fn a_channel_without_ttls_or_max_age_never_expires_anything() {
        let mut e = Expiry::new(None);
        e.observe(&batch(0, 0, &[None]));
        assert!(!e.is_active());
        assert!(e.expired_in(0, 1, i64::MAX).is_empty());
    }

    #[test]
    fn forgetting_keeps_the_batch_that_straddles_the_mark() {
        let mut e = Expiry::new(Some(Duration::from_millis(10)));
        e.observe(&batch(0, 0, &[None, Some(5), None]));
        e.observe(&batch(3, 100, &[None]));
        e.forget_below(2);
        assert!(e.is_expired(2, 10));
        assert!(!e.is_expired(3, 100));
    }
}
