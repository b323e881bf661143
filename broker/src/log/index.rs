//! The sparse index of one segment: every few KiB of batches, the base offset, entry index and
//! file position of the batch that starts there. Lookups return a position at or before the
//! wanted batch; the caller scans forward from it. The index is derived data: recovery rebuilds
//! it from the `.log` whenever the file is missing or disagrees.
//!
//! ```text
//! .index file (little-endian)
//!  0   4  magic "SLIX"
//!  4   4  entry count n
//!  8   8  length of the .log this index covers
//! 16  24n entries: base_offset u64, entry_index u64, position u64
//!  ..  4  crc32c of everything before it
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

const MAGIC: &[u8; 4] = b"SLIX";
const HEADER: usize = 16;
const ENTRY: usize = 24;

/// One sparse index point: a batch boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Base offset of the batch that starts at `position`.
    pub offset: u64,
    /// Entry index of that batch.
    pub entry: u64,
    /// Byte position of the batch in the `.log` file.
    pub position: u64,
}

/// Sparse offset/entry → position map of one segment, kept in memory for reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    /// Index points in file order; offsets non-decreasing, entries increasing.
    entries: Vec<IndexEntry>,
    /// Bytes of batches appended since the last index point.
    since_last: usize,
}

impl OffsetIndex {
    /// Notes a batch of `len` bytes at `point.position`; records a point when the interval is
    /// reached (and always for the first batch).
    pub fn on_batch(&mut self, point: IndexEntry, len: usize, interval: usize) {
        if self.entries.is_empty() || self.since_last >= interval {
            self.entries.push(point);
            self.since_last = 0;
        }
        self.since_last += len;
    }

    /// Position to scan from to find the first batch that holds or follows `offset`.
    pub fn position_for_offset(&self, offset: u64) -> u64 {
        let n = self.entries.partition_point(|e| e.offset < offset);
        n.checked_sub(1).map_or(0, |i| self.entries[i].position)
    }

    /// Position to scan from to find the batch with entry index `entry`.
    pub fn position_for_entry(&self, entry: u64) -> u64 {
        let n = self.entries.partition_point(|e| e.entry <= entry);
        n.checked_sub(1).map_or(0, |i| self.entries[i].position)
    }

    /// Drops the points at or after `position` (the segment was truncated there).
    pub fn truncate(&mut self, position: u64) {
        let keep = self.entries.partition_point(|e| e.position < position);
        self.entries.truncate(keep);
        // Conservative: the next batch gets a point once another interval has passed.
        self.since_last = 0;
    }

    /// Number of index points.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The file form of the index, covering a `.log` of `log_len` bytes.
    pub fn encode(&self, log_len: u64) -> Bytes {
        let mut b = BytesMut::with_capacity(HEADER + ENTRY * self.entries.len() + 4);
        b.put_slice(MAGIC);
        b.put_u32_le(self.entries.len() as u32);
        b.put_u64_le(log_len);
        for e in &self.entries {
            b.put_u64_le(e.offset);
            b.put_u64_le(e.entry);
            b.put_u64_le(e.position);
        }
        let crc = crc32c::crc32c(&b);
        b.put_u32_le(crc);
        b.freeze()
    }

    /// Parses an index file; `None` when it is damaged or does not cover a `.log` of `log_len`
    /// bytes (the caller then rebuilds it).
    pub fn decode(mut bytes: &[u8], log_len: u64) -> Option<Vec<IndexEntry>> {
        if bytes.len() < HEADER + 4 || &bytes[..4] != MAGIC {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        bytes.advance(4);
        let count = bytes.get_u32_le() as usize;
        let covers = bytes.get_u64_le();
        if covers != log_len || body.len() != HEADER + count * ENTRY {
            return None;
        }
        let entries = (0..count)
            .map(|_| IndexEntry {
                offset: bytes.get_u64_le(),
                entry: bytes.get_u64_le(),
                position: bytes.get_u64_le(),
            })
            .collect();
        Some(entries)
    }

    /// Whether the points equal `other` (used to check an index file against a rebuild).
    pub fn same_points(&self, other: &[IndexEntry]) -> bool {
        self.entries == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(batches: &[(u64, u64, usize)], interval: usize) -> OffsetIndex {
        let mut index = OffsetIndex::default();
        let mut position = 0;
        for (i, &(offset, count, len)) in batches.iter().enumerate() {
            let point = IndexEntry {
                offset,
                entry: i as u64,
                position,
            };
            index.on_batch(point, len, interval);
            position += len as u64;
            let _ = count;
        }
        index
    }

    #[test]
    fn lookup_lands_at_or_before_the_wanted_batch() {
        // Ten batches of 100 bytes, 5 offsets each; a point every 300 bytes.
        let batches: Vec<_> = (0..10).map(|i| (i * 5, 5, 100)).collect();
        let index = index_of(&batches, 300);
        assert_eq!(index.len(), 4); // batches 0, 3, 6, 9
        assert_eq!(index.position_for_offset(0), 0);
        assert_eq!(index.position_for_offset(16), 300);
        assert_eq!(index.position_for_offset(15), 0);
        assert_eq!(index.position_for_offset(1000), 900);
        assert_eq!(index.position_for_entry(5), 300);
        assert_eq!(index.position_for_entry(6), 600);
    }

    #[test]
    fn lookup_by_offset_starts_before_control_batches_sharing_the_offset() {
        // A control batch at offset 10 followed by messages at 10.
        let index = index_of(&[(0, 10, 100), (10, 0, 100), (10, 5, 100)], 0);
        assert_eq!(index.position_for_offset(10), 0);
        assert_eq!(index.position_for_offset(11), 200);
    }

    #[test]
    fn encoding_round_trips_and_damage_is_detected() {
        let batches: Vec<_> = (0..10).map(|i| (i * 5, 5, 100)).collect();
        let index = index_of(&batches, 300);
        let bytes = index.encode(1000);
        let points = OffsetIndex::decode(&bytes, 1000).unwrap();
        assert!(index.same_points(&points));
        assert!(OffsetIndex::decode(&bytes, 999).is_none(), "stale length");
        for at in 0..bytes.len() {
            let mut copy = bytes.to_vec();
            copy[at] ^= 1;
            assert!(OffsetIndex::decode(&copy, 1000).is_none(), "flip at {at}");
        }
        assert!(OffsetIndex::decode(&bytes[..bytes.len() - 1], 1000).is_none());
    }

    #[test]
    fn truncation_drops_points_at_and_after_the_cut() {
        let batches: Vec<_> = (0..10).map(|i| (i * 5, 5, 100)).collect();
        let mut index = index_of(&batches, 300);
        index.truncate(600);
        assert_eq!(index.len(), 2);
        assert_eq!(index.position_for_offset(1000), 300);
    }
}
