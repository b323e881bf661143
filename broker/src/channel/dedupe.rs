//! Broker-side idempotent receiver state of one partition (DESIGN §2 "Idempotent receiver"): a
//! window of recently stored message ids, and Kafka-style producer sessions.
//!
//! This module owns the rules that decide whether a publish is a duplicate. It does not know the
//! log, the clock or the wire: the partition task passes in offsets and timestamps, calls
//! [`IdWindow::insert`] and [`ProducerState::record`] for every stored message or batch (also
//! while replaying the log on start, which is what makes the state survive restart, failover and
//! purge), and turns verdicts into publish outcomes.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::Duration;

use super::id_index::{IdHash, IdIndex};

/// Batches remembered per producer, so a retry of any of them is answered as a duplicate.
const RECENT_BATCHES: usize = 5;

/// Most inserts a window holds at once (sequence numbers are 32-bit); past it the oldest go
/// early. 4 billion ids is 160 GB of window, far beyond any configuration that makes sense.
const MAX_INSERTS: usize = u32::MAX as usize;

/// Message ids stored within `window` of now are duplicates.
///
/// An entry stored at `t` is live while `now - t < window`. Expiry assumes timestamps arrive
/// roughly in order (broker-assigned); an out-of-order one is only dropped late, never wrongly.
///
/// The entries themselves live in `order`, appended in insertion order (which is offset order),
/// so inserting writes sequentially, expiry pops from the front, and a deleted log range is one
/// slice of it. The hash index ([`IdIndex`]) holds 8-byte handles into it rather than the
/// 32-byte entries: at hundreds of thousands of ids per second the index is far larger than the
/// CPU caches, and each insert's random write into it is the cost that matters.
#[derive(Debug)]
pub struct IdWindow {
    /// How long an id stays a duplicate, in ms; 0 turns the window off.
    window_ms: i64,
    /// Keyed per window, so ids chosen by a client cannot be made to collide.
    hasher: foldhash::fast::RandomState,
    /// One handle per remembered id, naming its current entry in `order`.
    index: IdIndex,
    /// Every insert, oldest first; `order[i]` has sequence number `head + i` (mod 2^32). An id
    /// stored again after it expired leaves its old entry here, no longer named by the index.
    order: VecDeque<Stored>,
    /// Sequence number of `order[0]`.
    head: u32,
}

/// An id with its hash, computed ahead of its check (see [`IdWindow::prepare`]).
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    id: [u8; 16],
    hash: IdHash,
}

/// One insert, in [`IdWindow::order`].
#[derive(Debug, Clone, Copy)]
struct Stored {
    at: i64,
    offset: u64,
    id: [u8; 16],
}

impl IdWindow {
    /// An empty window; a zero `window` remembers nothing.
    pub fn new(window: Duration) -> Self {
        Self {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            hasher: foldhash::fast::RandomState::default(),
            index: IdIndex::new(),
            order: VecDeque::new(),
            head: 0,
        }
    }

    /// Whether the window is off (zero): nothing is remembered and nothing is a duplicate.
    pub fn window_is_off(&self) -> bool {
        self.window_ms == 0
    }

    /// Whether something stored at `stored_at_ms` is still inside the window at `now_ms`.
    pub fn covers(&self, stored_at_ms: i64, now_ms: i64) -> bool {
        now_ms.saturating_sub(stored_at_ms) < self.window_ms
    }

    /// The offset `id` was first stored at, if that was within the window of `now_ms`.
    pub fn lookup(&self, id: &[u8; 16], now_ms: i64) -> Option<u64> {
        let at = self
            .index
            .find(self.hash(id), |seq| self.entry(seq).id == *id)?;
        let stored = self.entry(self.index.get(at).seq);
        self.covers(stored.at, now_ms).then_some(stored.offset)
    }

    /// Remembers that `id` was stored at `offset`. The first writer wins: an id still live at
    /// `stored_at_ms` keeps its original offset; an expired one is replaced.
    pub fn insert(&mut self, id: [u8; 16], offset: u64, stored_at_ms: i64) {
        self.check_and_insert(id, offset, stored_at_ms);
    }

    /// One hash lookup for the publish path: the offset `id` was first stored at if that is
    /// still live at `now_ms` (a duplicate); otherwise remembers it at `offset`, stored at
    /// `now_ms`, and returns `None`.
    pub fn check_and_insert(&mut self, id: [u8; 16], offset: u64, now_ms: i64) -> Option<u64> {
        let prepared = Prepared {
            id,
            hash: self.hash(&id),
        };
        self.check_and_insert_prepared(prepared, offset, now_ms)
    }

    /// [`IdWindow::check_and_insert`] for an id [`IdWindow::prepare`]d earlier.
    pub fn check_and_insert_prepared(
        &mut self,
        prepared: Prepared,
        offset: u64,
        now_ms: i64,
    ) -> Option<u64> {
        if self.window_ms == 0 {
            return None;
        }
        if self.order.len() >= MAX_INSERTS {
            self.pop_oldest();
        }
        let Prepared { id, hash } = prepared;
        let seq = self.head.wrapping_add(self.order.len() as u32);
        match self.index.find(hash, |s| self.entry(s).id == id) {
            Some(slot) => {
                let stored = *self.entry(self.index.get(slot).seq);
                if self.covers(stored.at, now_ms) {
                    return Some(stored.offset);
                }
                self.index.set_seq(slot, seq);
            }
            None => self.index.insert(hash, seq),
        }
        self.order.push_back(Stored {
            at: now_ms,
            offset,
            id,
        });
        None
    }

    /// Checks a publish batch's ids, as [`IdWindow::check_and_insert_prepared`] each, in the
    /// order that makes it fast: every index line asked for first, so the cache misses
    /// overlap, then the expired entries dropped, then each id checked. `ids` are
    /// `(record index, id)` in record order; the batch's first record goes at offset `base`,
    /// and each record after the ones before it that are not duplicates. Returns the
    /// duplicates as `(record index, offset first stored at)`.
    pub fn check_batch(
        &mut self,
        ids: &[(u32, Prepared)],
        base: u64,
        now_ms: i64,
    ) -> Vec<(u32, u64)> {
        for (_, id) in ids {
            self.prefetch(id);
        }
        self.expire(now_ms);
        let mut duplicates = Vec::new();
        for &(i, id) in ids {
            let offset = base + u64::from(i) - duplicates.len() as u64;
            if let Some(first) = self.check_and_insert_prepared(id, offset, now_ms) {
                duplicates.push((i, first));
            }
        }
        duplicates
    }

    /// Hashes `id` for [`IdWindow::check_and_insert_prepared`], touching no memory.
    pub fn prepare(&self, id: [u8; 16]) -> Prepared {
        Prepared {
            id,
            hash: self.hash(&id),
        }
    }

    /// Starts loading the index line `prepared`'s check will read, without waiting for it.
    /// Prefetching a batch's ids before checking them lets their cache misses (the index is far
    /// larger than the caches) overlap instead of queueing.
    pub fn prefetch(&self, prepared: &Prepared) {
        self.index.prefetch(prepared.hash);
    }

    /// Forgets ids that are no longer live at `now_ms`. Amortised O(1) per insert; call it once
    /// per batch.
    pub fn expire(&mut self, now_ms: i64) {
        while self
            .order
            .front()
            .is_some_and(|s| !self.covers(s.at, now_ms))
        {
            self.pop_oldest();
        }
    }

    /// Offset of the oldest id still live at `now_ms`, after forgetting the expired ones: the log
    /// from there on holds ids deduplication still needs.
    pub fn oldest_live_offset(&mut self, now_ms: i64) -> Option<u64> {
        self.expire(now_ms);
        self.order.front().map(|s| s.offset)
    }

    /// Drops the oldest entry, and its id from the index unless a later entry replaced it.
    fn pop_oldest(&mut self) {
        let Some(oldest) = self.order.pop_front() else {
            return;
        };
        let seq = self.head;
        self.head = self.head.wrapping_add(1);
        self.index.remove(self.hash(&oldest.id), seq);
    }

    fn hash(&self, id: &[u8; 16]) -> IdHash {
        IdHash(self.hasher.hash_one(id))
    }

    /// The entry with sequence number `seq` (which must be in `order`).
    fn entry(&self, seq: u32) -> &Stored {
        &self.order[seq.wrapping_sub(self.head) as usize]
    }

    /// Ids remembered, including expired ones not yet dropped by [`IdWindow::expire`].
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The ids stored at offsets in `offsets` that are still live at `now_ms`, as
    /// `(id, offset, stored_at_ms)` in offset order: what a deleted range of the log held that
    /// deduplication still needs. Costs the size of the range, not of the window, and no hash
    /// lookups: an id whose entry was replaced by a later insert (it had expired) comes out with
    /// both, and [`IdWindow::restore`] keeps the later one, as `insert` did.
    pub fn entries_in(
        &self,
        offsets: std::ops::Range<u64>,
        now_ms: i64,
    ) -> impl Iterator<Item = ([u8; 16], u64, i64)> + '_ {
        let start = self.order.partition_point(|s| s.offset < offsets.start);
        self.order
            .range(start..)
            .take_while(move |s| s.offset < offsets.end)
            .filter(move |s| self.covers(s.at, now_ms))
            .map(|s| (s.id, s.offset, s.at))
    }

    /// Remembers `(id, offset, stored_at_ms)` entries (see [`IdWindow::entries_in`]), in offset
    /// order whatever order they come in.
    pub fn restore(&mut self, entries: &[([u8; 16], u64, i64)]) {
        let mut sorted = entries.to_vec();
        sorted.sort_unstable_by_key(|&(_, offset, _)| offset);
        for (id, offset, at) in sorted {
            self.insert(id, offset, at);
        }
    }
}

/// How a producer session's batch relates to what the partition already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionVerdict {
    /// Not seen before: store it.
    New,
    /// A retry of a stored batch: answer with its original base offset, store nothing.
    Duplicate {
        /// Offset the original batch's first record was stored at.
        base_offset: u64,
    },
    /// From an older epoch of the producer, which a newer session has replaced.
    Fenced {
        /// The newest epoch known for the producer id.
        current_epoch: u16,
    },
    /// A gap or a rewind beyond the remembered batches: the producer lost track.
    OutOfOrder {
        /// Sequence the next batch must start at.
        expected: u32,
        /// Sequence the batch started at.
        got: u32,
    },
}

/// One producer session as a snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerSession {
    /// The producer id (never 0).
    pub producer_id: u64,
    /// Its newest epoch.
    pub epoch: u16,
    /// Sequence its next new batch must start at.
    pub next_sequence: u32,
    /// `(base_sequence, base_offset)` of its last stored batches, oldest first.
    pub recent: Vec<(u32, u64)>,
}

/// One stored batch of a producer, remembered to answer its retries.
#[derive(Debug, Clone, Copy)]
struct BatchMark {
    /// Sequence of the batch's first record.
    base_sequence: u32,
    /// Offset of the batch's first record.
    base_offset: u64,
}

/// What the partition knows about one producer id.
#[derive(Debug)]
struct Producer {
    /// Newest epoch seen; older ones are fenced.
    epoch: u16,
    /// Sequence the next new batch must start at.
    next_sequence: u32,
    /// The last [`RECENT_BATCHES`] batches, oldest first.
    recent: VecDeque<BatchMark>,
}

/// Producer sessions of one partition: Kafka-style `(producer_id, epoch, sequence)`.
///
/// Sequences count records and wrap at `u32::MAX`. Producer id 0 means "no session" and is never
/// tracked.
#[derive(Debug, Default)]
pub struct ProducerState {
    /// Every producer id with a stored batch (or a known epoch) in this partition.
    producers: HashMap<u64, Producer>,
}

impl ProducerState {
    /// An empty state, as for a new partition before its log is replayed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Judges a batch of `count` records from `producer_id` at `epoch` starting at
    /// `base_sequence`.
    ///
    /// Producer id 0 is always [`SessionVerdict::New`]. An unknown producer or a newer epoch must
    /// start at sequence 0; an older epoch is fenced; in the current epoch the next expected
    /// sequence is new, the base sequence of one of the last five batches is a duplicate, and
    /// anything else is out of order. `count` does not affect the verdict.
    pub fn check(
        &self,
        producer_id: u64,
        epoch: u16,
        base_sequence: u32,
        count: u32,
    ) -> SessionVerdict {
        // The base sequence alone names a batch; `count` mirrors `record` for callers.
        let _ = count;
        if producer_id == 0 {
            return SessionVerdict::New;
        }
        let expected = match self.producers.get(&producer_id) {
            Some(p) if epoch < p.epoch => {
                return SessionVerdict::Fenced {
                    current_epoch: p.epoch,
                }
            }
            Some(p) if epoch == p.epoch => return p.judge(base_sequence),
            _ => 0,
        };
        if base_sequence == expected {
            SessionVerdict::New
        } else {
            SessionVerdict::OutOfOrder {
                expected,
                got: base_sequence,
            }
        }
    }

    /// Records a stored batch: after a [`SessionVerdict::New`] verdict, and for every session
    /// batch while replaying the log. A newer epoch replaces the producer's history; a batch of an
    /// older epoch than known is ignored.
    pub fn record(
        &mut self,
        producer_id: u64,
        epoch: u16,
        base_sequence: u32,
        count: u32,
        base_offset: u64,
    ) {
        if producer_id == 0 {
            return;
        }
        let producer = self.producers.entry(producer_id).or_insert(Producer {
            epoch,
            next_sequence: 0,
            recent: VecDeque::with_capacity(RECENT_BATCHES),
        });
        if epoch < producer.epoch {
            return;
        }
        if epoch > producer.epoch {
            producer.epoch = epoch;
            producer.recent.clear();
        }
        if producer.recent.len() == RECENT_BATCHES {
            producer.recent.pop_front();
        }
        producer.recent.push_back(BatchMark {
            base_sequence,
            base_offset,
        });
        producer.next_sequence = base_sequence.wrapping_add(count);
    }

    /// Every producer session, by producer id, for a snapshot.
    pub fn sessions(&self) -> Vec<ProducerSession> {
        let mut out: Vec<ProducerSession> = self
            .producers
            .iter()
            .map(|(&producer_id, p)| ProducerSession {
                producer_id,
                epoch: p.epoch,
                next_sequence: p.next_sequence,
                recent: p
                    .recent
                    .iter()
                    .map(|b| (b.base_sequence, b.base_offset))
                    .collect(),
            })
            .collect();
        out.sort_unstable_by_key(|s| s.producer_id);
        out
    }

    /// Takes the sessions of a snapshot (see [`ProducerState::sessions`]), replacing any known.
    pub fn restore(&mut self, sessions: &[ProducerSession]) {
        for s in sessions.iter().filter(|s| s.producer_id != 0) {
            let recent = s
                .recent
                .iter()
                .rev()
                .take(RECENT_BATCHES)
                .rev()
                .map(|&(base_sequence, base_offset)| BatchMark {
                    base_sequence,
                    base_offset,
                })
                .collect();
            let producer = Producer {
                epoch: s.epoch,
                next_sequence: s.next_sequence,
                recent,
            };
            self.producers.insert(s.producer_id, producer);
        }
    }

    /// The newest epoch known for `producer_id`, so a re-initialised session can be given a
    /// higher one.
    pub fn epoch(&self, producer_id: u64) -> Option<u16> {
        self.producers.get(&producer_id).map(|p| p.epoch)
    }
}

impl Producer {
    /// Verdict on a batch of the current epoch.
    fn judge(&self, base_sequence: u32) -> SessionVerdict {
        if base_sequence == self.next_sequence {
            return SessionVerdict::New;
        }
        match self
            .recent
            .iter()
            .find(|b| b.base_sequence == base_sequence)
        {
            Some(b) => SessionVerdict::Duplicate {
                base_offset: b.base_offset,
            },
            None => SessionVerdict::OutOfOrder {
                expected: self.next_sequence,
                got: base_sequence,
            },
        }
    }
}

#[cfg(test)]
#[path = "dedupe_tests.rs"]
mod tests;
