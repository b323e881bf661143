//! Turning granted offsets into delivery frames: the tail cache of committed batches and
//! zero-copy slicing of their records.
//!
//! Recent committed message batches stay in memory so consumers that keep up never cause a disk
//! read; older ones are read back from the log on demand.

use std::collections::VecDeque;

use bytes::Buf;
use sluice_protocol::batch::HEADER_LEN;
use sluice_protocol::{Delivery, RecordBatch};

/// Committed message batches, oldest first, bounded in bytes.
#[derive(Debug)]
pub struct TailCache {
    /// The batches, in offset order.
    batches: VecDeque<RecordBatch>,
    /// Sum of their lengths.
    bytes: usize,
    /// Eviction threshold.
    max_bytes: usize,
}

impl TailCache {
    /// An empty cache holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            batches: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Adds a committed message batch, evicting the oldest past the limit.
    pub fn push(&mut self, batch: RecordBatch) {
        self.bytes += batch.len();
        self.batches.push_back(batch);
        while self.bytes > self.max_bytes && self.batches.len() > 1 {
            if let Some(old) = self.batches.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// The cached batch holding `offset`, if it is cached.
    pub fn find(&self, offset: u64) -> Option<&RecordBatch> {
        let i = self.batches.partition_point(|b| b.next_offset() <= offset);
        self.batches
            .get(i)
            .filter(|b| b.base_offset() <= offset && offset < b.next_offset())
    }

    /// Drops the batches wholly below `offset` (their segments were deleted).
    pub fn drop_below(&mut self, offset: u64) {
        while let Some(old) = self.batches.pop_front_if(|b| b.next_offset() <= offset) {
            self.bytes -= old.len();
        }
    }
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
    let start = record_position(bytes, from - batch.base_offset());
    let end = record_position_from(bytes, start, to - from);
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
}
