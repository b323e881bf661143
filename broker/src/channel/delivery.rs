//! Turning granted offsets into delivery frames: the tail cache of committed batches and
//! zero-copy slicing of their records.
//!
//! Recent committed message batches stay in memory so consumers that keep up never cause a disk
//! read; older ones are read back from the log on demand, a chunk at a time, and the chunk is kept
//! for the grants that follow.

use std::cell::Cell;
use std::collections::VecDeque;

use bytes::Buf;
use sluice_protocol::batch::HEADER_LEN;
use sluice_protocol::{Delivery, RecordBatch};

/// Committed message batches, oldest first, bounded in bytes.
#[derive(Debug)]
pub struct TailCache {
    /// The batches.
    batches: InOrder,
    /// Sum of their lengths.
    bytes: usize,
    /// Eviction threshold.
    max_bytes: usize,
}

impl TailCache {
    /// An empty cache holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            batches: InOrder::default(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Adds a committed message batch, evicting the oldest past the limit.
    pub fn push(&mut self, batch: RecordBatch) {
        self.bytes += batch.len();
        let batches = &mut self.batches.batches;
        batches.push_back(batch);
        while self.bytes > self.max_bytes && batches.len() > 1 {
            if let Some(old) = batches.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// The cached batch holding `offset`, if it is cached.
    pub fn find(&self, offset: u64) -> Option<&RecordBatch> {
        self.batches.find(offset)
    }

    /// Drops the batches wholly below `offset` (their segments were deleted).
    pub fn drop_below(&mut self, offset: u64) {
        let batches = &mut self.batches.batches;
        while let Some(old) = batches.pop_front_if(|b| b.next_offset() <= offset) {
            self.bytes -= old.len();
        }
    }
}

/// The message batches of the latest log read, for consumers behind the [`TailCache`].
///
/// A log read returns a chunk of batches; the consumer's next grants usually want the ones after
/// the batch it needed, so the chunk stays here until the next read replaces it, and each chunk
/// is read (and checksummed) once rather than once per batch delivered from it.
#[derive(Debug, Default)]
pub struct ReadBehind {
    /// Message batches of the last read.
    batches: InOrder,
}

impl ReadBehind {
    /// The kept batch holding `offset`, if any.
    pub fn find(&self, offset: u64) -> Option<&RecordBatch> {
        self.batches.find(offset)
    }

    /// Keeps the message batches of a new read (control batches never reach consumers).
    pub fn replace(&mut self, batches: Vec<RecordBatch>) {
        let mut batches = VecDeque::from(batches);
        batches.retain(|b| !b.is_control());
        self.batches = InOrder {
            batches,
            last: Cell::new(0),
        };
    }

    /// Forgets everything (the batches' segments were deleted).
    pub fn clear(&mut self) {
        self.batches = InOrder::default();
    }
}

/// Message batches in offset order, found by offset.
#[derive(Debug, Default)]
struct InOrder {
    batches: VecDeque<RecordBatch>,
    /// Index of the batch `find` returned last: consumers read in order, so the next request is
    /// usually for it or the one after, and a binary search (a cache miss per probe, ~10 ns a
    /// message in the broker's profile when consumers read behind the tail) is skipped.
    last: Cell<usize>,
}

impl InOrder {
    fn find(&self, offset: u64) -> Option<&RecordBatch> {
        // A consumer behind the tail cache asks it for every batch before reading behind: no
        // search for what is not there.
        let first = self.batches.front()?.base_offset();
        let end = self.batches.back()?.next_offset();
        if !(first..end).contains(&offset) {
            return None;
        }
        let last = self.last.get();
        let i = [last, last + 1, self.batches.len().wrapping_sub(1)]
            .into_iter()
            .find(|&i| self.batches.get(i).is_some_and(|b| holds(b, offset)))
            .unwrap_or_else(|| self.batches.partition_point(|b| b.next_offset() <= offset));
        let found = self.batches.get(i).filter(|b| holds(b, offset));
        if found.is_some() {
            self.last.set(i);
        }
        found
    }
}

/// Whether `batch` holds the record at `offset`.
fn holds(batch: &RecordBatch, offset: u64) -> bool {
    batch.base_offset() <= offset && offset < batch.next_offset()
}

/// The records `[from, to)` of `batch` (absolute offsets, clamped to the batch) as one delivery.
pub fn slice(
    batch: &RecordBatch,
    from: u64,
    to: u64,
    consumer_id: u64,
    partition: u32,
    delivery_count: u32,
) -> Delivery {
    let from = from.max(batch.base_offset());
    let to = to.min(batch.next_offset());
    let bytes = batch.as_bytes();
    // Finding a record means walking the lengths of those before it, one dependent load each
    // and a cache miss each once the batch has left the caches: most of this function's time
    // in the broker's profile. A slice that starts or ends with its batch needs no walk there,
    // as a stored batch holds nothing after its last record.
    let start = record_position(bytes, from - batch.base_offset());
    let end = if to == batch.next_offset() {
        bytes.len()
    } else {
        record_position_from(bytes, start, to - from)
    };
    Delivery {
        consumer_id,
        partition,
        delivery_count,
        first_offset: from,
        timestamp: batch.first_timestamp(),
        record_count: (to - from) as u32,
        records: bytes.slice(start..end),
    }
}

/// Byte position of record number `n` in a batch.
fn record_position(bytes: &[u8], n: u64) -> usize {
    record_position_from(bytes, HEADER_LEN, n)
}

/// Byte position `n` records after the record at `pos`. The batch was validated on the way in,
/// so the framing is sound; a short read stops at the end rather than panicking.
fn record_position_from(bytes: &[u8], mut pos: usize, n: u64) -> usize {
    for _ in 0..n {
        if pos + 4 > bytes.len() {
            return bytes.len();
        }
        let len = (&bytes[pos..pos + 4]).get_u32_le() as usize;
        pos = (pos + 4 + len).min(bytes.len());
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::{BatchBuilder, Stamp};

    fn batch(base: u64, records: &[&str]) -> RecordBatch {
        let mut b = BatchBuilder::messages();
        for r in records {
            b.push_raw(r.as_bytes());
        }
        b.finish().unwrap().stamp(Stamp {
            base_offset: base,
            entry_index: 0,
            term: 1,
            timestamp: 9,
        })
    }

    #[test]
    fn a_slice_carries_exactly_the_requested_records() {
        let b = batch(10, &["a", "bb", "ccc", "dddd"]);
        let d = slice(&b, 11, 13, 7, 2, 1);
        assert_eq!(d.first_offset, 11);
        assert_eq!(d.record_count, 2);
        let records: Vec<_> = d.records().collect();
        assert_eq!(records, vec![&b"bb"[..], &b"ccc"[..]]);
        assert_eq!(slice(&b, 0, 100, 7, 2, 1).record_count, 4);
        // Slices that start or end with the batch, and the whole batch.
        for (from, to, expected) in [
            (10, 14, &["a", "bb", "ccc", "dddd"][..]),
            (10, 12, &["a", "bb"][..]),
            (12, 14, &["ccc", "dddd"][..]),
            (13, 99, &["dddd"][..]),
        ] {
            let d = slice(&b, from, to, 7, 2, 1);
            let records: Vec<_> = d.records().collect();
            let expected: Vec<&[u8]> = expected.iter().map(|r| r.as_bytes()).collect();
            assert_eq!(records, expected, "[{from}, {to})");
            assert_eq!(
                d.records.len(),
                expected.iter().map(|r| 4 + r.len()).sum::<usize>()
            );
        }
    }

    #[test]
    fn the_cache_finds_batches_by_offset_and_evicts_the_oldest() {
        let mut cache = TailCache::new(200);
        cache.push(batch(0, &["a", "b"]));
        cache.push(batch(2, &["c"]));
        assert_eq!(cache.find(1).unwrap().base_offset(), 0);
        assert_eq!(cache.find(2).unwrap().base_offset(), 2);
        assert!(cache.find(3).is_none());
        cache.push(batch(3, &["d"]));
        assert!(cache.find(0).is_none(), "oldest evicted past 200 bytes");
    }

    #[test]
    fn the_cache_finds_every_offset_in_any_order() {
        let mut cache = TailCache::new(1 << 20);
        for base in (0..40).step_by(2) {
            cache.push(batch(base, &["x", "y"]));
        }
        let order: Vec<u64> = (0..40)
            .chain((0..40).rev())
            .chain([7, 31, 0, 39, 12])
            .collect();
        for offset in order {
            let b = cache.find(offset).unwrap();
            assert!(
                holds(b, offset),
                "offset {offset} found in {}",
                b.base_offset()
            );
        }
        assert!(cache.find(40).is_none());
        cache.drop_below(10);
        assert!(cache.find(8).is_none(), "dropped, whatever the hint said");
        assert_eq!(cache.find(10).unwrap().base_offset(), 10);
    }

    #[test]
    fn read_behind_keeps_the_message_batches_of_the_last_read() {
        let mut kept = ReadBehind::default();
        assert!(kept.find(0).is_none());
        let mut control = BatchBuilder::control();
        control.push_raw(b"cmd");
        let control = control.finish().unwrap().stamp(Stamp {
            base_offset: 2,
            entry_index: 1,
            term: 1,
            timestamp: 9,
        });
        kept.replace(vec![batch(0, &["a", "b"]), control, batch(2, &["c"])]);
        assert_eq!(kept.find(1).unwrap().base_offset(), 0);
        assert_eq!(kept.find(2).unwrap().record_count(), 1);
        assert!(kept.find(3).is_none());
        kept.replace(vec![batch(3, &["d"])]);
        assert!(kept.find(0).is_none(), "replaced");
        kept.clear();
        assert!(kept.find(3).is_none());
    }
}
