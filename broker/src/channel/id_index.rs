//! The hash index of the message-id window ([`super::dedupe::IdWindow`]): which entry of the
//! window's insertion-order queue holds a given id.
//!
//! Why not a general-purpose map: at hundreds of thousands of new ids a second the index is tens
//! or hundreds of MB, far past the CPU caches, and nearly every insert is a cache miss. What
//! matters is that each operation touches one cache line and that a publish batch can ask for its
//! lines ahead of time ([`IdIndex::prefetch`]) so the misses overlap instead of queueing. A
//! general map keeps its control bytes and its slots in different lines (two misses), and cannot
//! say where an insert will write.
//!
//! The layout is the one of F14 (folly) and Swiss tables, cut to one line: a bucket is 64 bytes
//! holding seven 8-byte [`Handle`]s, a one-byte tag per slot and an overflow count, the tags
//! searched eight at a time as one word. An id's home bucket comes from the top bits of its
//! hash; a full bucket sends inserts on to the next one and counts them, so a lookup stops at the
//! first bucket whose count is zero. Since homes are the hash's top bits, buckets are in hash
//! order and growing the table to twice the buckets writes the new one front to back (old bucket
//! `i` goes to `2i` and `2i + 1`), not at random.
//!
//! New bucket arrays are allocated zeroed (`calloc`), so a large one is fresh memory the kernel
//! zeroes page by page as it is first written, not a second pass over it. Advising transparent
//! huge pages for them was measured and dropped: fewer TLB misses, but on this VM first-touch
//! zeroing of 2 MiB pages cost the broker more than the TLB saved (-5% publish with ids).

use bytemuck::{Pod, Zeroable};

/// Slots per bucket: seven 8-byte handles plus eight bytes of tags and count fill a cache line.
const SLOTS: usize = 7;

/// The table grows once it holds this many entries per bucket on average (4/7 full). Fuller
/// tables save memory but fill buckets: an insert into a full bucket goes on to the next line,
/// which nothing prefetched (at 6/7 a third of inserts did, at 4/7 about one in ten).
const MAX_PER_BUCKET: usize = 4;

/// An overflow count that has reached this value stays there: lookups then probe on past the
/// bucket for good, which costs time, never correctness. Reaching it takes 255 entries pushed
/// past one bucket at once, which a 4/7 load with a keyed hash does not produce.
const OVERFLOW_STUCK: u8 = u8::MAX;

/// What the index holds per id: where its entry is and enough hash to move it without the id.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Handle {
    /// Sequence number of the id's entry in the window's queue.
    pub seq: u32,
    /// The top 32 bits of the id's hash: the home bucket when the table grows, and a cheap
    /// first comparison.
    pub hash: u32,
}

/// An id's 64-bit hash, split into what the index uses of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdHash(pub u64);

impl IdHash {
    /// The part kept in the [`Handle`].
    fn stored(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The slot tag: seven bits not in `stored`, with the top bit set so no tag is 0 (empty).
    fn tag(self) -> u8 {
        self.0 as u8 | 0x80
    }
}

/// One cache line of the index.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
struct Bucket {
    /// Bytes `0..7`: per slot, 0 when empty, else the entry's [`IdHash::tag`]. Byte 7: how many
    /// entries whose home is this bucket or before it were placed after it, because it was full
    /// when they came (up to [`OVERFLOW_STUCK`]). Read as one word, so a bucket's slots are
    /// searched without a branch per slot.
    control: [u8; 8],
    /// Per slot: the entry, meaningful when its tag is not 0.
    handles: [Handle; SLOTS],
}

/// Index of the overflow count in [`Bucket::control`].
const OVERFLOW: usize = SLOTS;

/// The top bit of each tag byte of a control word.
const TAG_BITS: u64 = 0x0080_8080_8080_8080;

/// The low seven bits of every byte.
const LOW_BITS: u64 = 0x7f7f_7f7f_7f7f_7f7f;

impl Bucket {
    fn control_word(&self) -> u64 {
        u64::from_le_bytes(self.control)
    }

    /// Slots holding `tag`, as a mask of [`TAG_BITS`].
    fn with_tag(&self, tag: u8) -> u64 {
        let x = self.control_word() ^ (u64::from(tag) * 0x0101_0101_0101_0101);
        // A byte of `x` keeps its top bit here only if all eight of its bits were 0; the sum
        // cannot carry into the next byte.
        !(((x & LOW_BITS) + LOW_BITS) | x) & TAG_BITS
    }

    /// Empty slots, as a mask of [`TAG_BITS`] (every tag has its top bit set).
    fn empty(&self) -> u64 {
        !self.control_word() & TAG_BITS
    }

    /// Slots whose entry has `hash`'s tag and stored hash.
    fn matching(&self, hash: IdHash) -> impl Iterator<Item = usize> + '_ {
        let stored = hash.stored();
        slots(self.with_tag(hash.tag())).filter(move |&i| self.handles[i].hash == stored)
    }

    fn overflow(&self) -> u8 {
        self.control[OVERFLOW]
    }
}

/// The slots named by a mask of [`TAG_BITS`], lowest first.
fn slots(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let slot = (mask != 0).then(|| mask.trailing_zeros() as usize / 8)?;
        mask &= mask - 1;
        Some(slot)
    })
}

/// Where an entry sits: bucket and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    bucket: usize,
    slot: usize,
}

/// Maps id hashes to [`Handle`]s; the caller tells equal ids apart (see [`IdIndex::find`]).
#[derive(Debug, Default)]
pub struct IdIndex {
    /// A power of two of them, or none before the first insert.
    buckets: Vec<Bucket>,
    /// `buckets.len() == 1 << bits`.
    bits: u32,
    /// Entries held.
    len: usize,
}

impl IdIndex {
    /// An empty index; it allocates on the first insert.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Asks for the line a lookup of `hash` starts at, and does nothing else. Calling it for a
    /// batch of ids before working on them lets their cache misses overlap.
    pub fn prefetch(&self, hash: IdHash) {
        if let Some(bucket) = self.buckets.get(self.home(hash.stored())) {
            prefetch_line(bucket);
        }
    }

    /// The slot of the entry with `hash` for which `is_it(seq)` holds. `is_it` is only asked
    /// about entries whose tag and stored hash match, so it can afford to compare full ids.
    pub fn find(&self, hash: IdHash, mut is_it: impl FnMut(u32) -> bool) -> Option<Slot> {
        let mut bucket = self.home(hash.stored());
        for _ in 0..self.buckets.len() {
            let b = &self.buckets[bucket];
            if let Some(slot) = b.matching(hash).find(|&i| is_it(b.handles[i].seq)) {
                return Some(Slot { bucket, slot });
            }
            if b.overflow() == 0 {
                return None;
            }
            bucket = self.next(bucket);
        }
        None
    }

    /// The handle at `at`, which must come from [`IdIndex::find`] with no change since.
    pub fn get(&self, at: Slot) -> Handle {
        self.buckets[at.bucket].handles[at.slot]
    }

    /// Points the entry at `at` (from [`IdIndex::find`], no change since) at another sequence.
    pub fn set_seq(&mut self, at: Slot, seq: u32) {
        self.buckets[at.bucket].handles[at.slot].seq = seq;
    }

    /// Adds an entry for `hash` at `seq`; the caller has checked that its id has none.
    pub fn insert(&mut self, hash: IdHash, seq: u32) {
        if self.len >= self.buckets.len() * MAX_PER_BUCKET {
            self.grow();
        }
        let handle = Handle {
            seq,
            hash: hash.stored(),
        };
        self.place(hash.tag(), handle);
        self.len += 1;
    }

    /// Removes the entry for `hash` at `seq`, if there is one; says whether there was.
    pub fn remove(&mut self, hash: IdHash, seq: u32) -> bool {
        let Some(at) = self.find(hash, |s| s == seq) else {
            return false;
        };
        self.buckets[at.bucket].control[at.slot] = 0;
        let mut bucket = self.home(hash.stored());
        while bucket != at.bucket {
            let overflow = &mut self.buckets[bucket].control[OVERFLOW];
            if *overflow != OVERFLOW_STUCK {
                *overflow -= 1;
            }
            bucket = self.next(bucket);
        }
        self.len -= 1;
        true
    }

    /// The bucket an entry with stored hash `stored` belongs in: its top `bits` bits.
    fn home(&self, stored: u32) -> usize {
        ((u64::from(stored) << self.bits) >> 32) as usize
    }

    fn next(&self, bucket: usize) -> usize {
        (bucket + 1) & (self.buckets.len() - 1)
    }

    /// Puts an entry in the first free slot from its home bucket on, counting the full buckets
    /// it passes. There is always a free slot: the table is at most 4/7 full.
    fn place(&mut self, tag: u8, handle: Handle) {
        let mut bucket = self.home(handle.hash);
        loop {
            let b = &mut self.buckets[bucket];
            if let Some(slot) = slots(b.empty()).next() {
                b.control[slot] = tag;
                b.handles[slot] = handle;
                return;
            }
            b.control[OVERFLOW] = b.overflow().saturating_add(1);
            bucket = self.next(bucket);
        }
    }

    /// Doubles the buckets (or makes the first), moving every entry. Old bucket `i` maps to new
    /// buckets `2i` and `2i + 1`, so the moves write the new table in order.
    fn grow(&mut self) {
        let bits = if self.buckets.is_empty() {
            0
        } else {
            self.bits + 1
        };
        let old = std::mem::replace(&mut self.buckets, bytemuck::zeroed_vec(1 << bits));
        self.bits = bits;
        for b in &old {
            for slot in slots(!b.empty() & TAG_BITS) {
                self.place(b.control[slot], b.handles[slot]);
            }
        }
    }
}

/// Starts loading `bucket`'s line into the caches without waiting for it.
#[cfg(target_arch = "x86_64")]
fn prefetch_line(bucket: &Bucket) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: `_mm_prefetch` only needs SSE, which every x86_64 CPU has (it is in the target's
    // baseline); a prefetch reads nothing the program sees, never faults and changes only caches.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(bucket).cast()) };
}

/// Loads `bucket`'s line; unlike a prefetch, later work may wait for the load.
#[cfg(not(target_arch = "x86_64"))]
fn prefetch_line(bucket: &Bucket) {
    std::hint::black_box(bucket.overflow());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash whose stored part is `stored` and whose tag byte is `low`.
    fn hash(stored: u32, low: u8) -> IdHash {
        IdHash(u64::from(stored) << 32 | u64::from(low))
    }

    #[test]
    fn bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
    }

    #[test]
    fn control_word_masks_name_exactly_the_slots() {
        let mut b = Bucket::default();
        assert_eq!(
            slots(b.empty()).collect::<Vec<_>>(),
            (0..SLOTS).collect::<Vec<_>>()
        );
        // Tags that differ from 0x85 in one bit each, and a full overflow byte.
        b.control = [0x85, 0, 0x84, 0x85, 0xc5, 0x81, 0x85, 0xff];
        assert_eq!(slots(b.with_tag(0x85)).collect::<Vec<_>>(), [0, 3, 6]);
        assert_eq!(slots(b.with_tag(0x84)).collect::<Vec<_>>(), [2]);
        assert_eq!(
            slots(b.with_tag(0xff)).count(),
            0,
            "the overflow byte is no slot"
        );
        assert_eq!(slots(b.empty()).collect::<Vec<_>>(), [1]);
        assert_eq!(b.overflow(), 0xff);
    }

    #[test]
    fn finds_what_was_inserted_and_not_what_was_not() {
        let mut index = IdIndex::new();
        for seq in 0..10_000u32 {
            index.insert(hash(seq.wrapping_mul(2_654_435_761), seq as u8), seq);
        }
        assert_eq!(index.len(), 10_000);
        for seq in 0..10_000u32 {
            let h = hash(seq.wrapping_mul(2_654_435_761), seq as u8);
            let at = index.find(h, |s| s == seq).expect("inserted");
            assert_eq!(
                index.get(at),
                Handle {
                    seq,
                    hash: h.stored()
                }
            );
        }
        assert_eq!(index.find(hash(12345, 1), |_| true), None);
    }

    #[test]
    fn entries_with_one_home_overflow_into_later_buckets_and_back() {
        let mut index = IdIndex::new();
        // Same stored hash, so the same home bucket whatever the size; tags differ only in part.
        let same = |i: u32| hash(0xdead_beef, i as u8);
        for seq in 0..40 {
            index.insert(same(seq), seq);
        }
        for seq in 0..40 {
            assert!(index.find(same(seq), |s| s == seq).is_some(), "seq {seq}");
        }
        for seq in (0..40).step_by(2) {
            assert!(index.remove(same(seq), seq));
        }
        assert!(!index.remove(same(0), 0), "already removed");
        for seq in 0..40 {
            assert_eq!(index.find(same(seq), |s| s == seq).is_some(), seq % 2 == 1);
        }
        for seq in (1..40).step_by(2) {
            assert!(index.remove(same(seq), seq));
        }
        assert_eq!(index.len(), 0);
        assert!(
            index.buckets.iter().all(|b| b.overflow() == 0),
            "every overflow count is undone by the removals"
        );
    }

    #[test]
    fn the_caller_tells_apart_entries_with_equal_hashes() {
        let mut index = IdIndex::new();
        let h = hash(7, 7);
        index.insert(h, 1);
        index.insert(h, 2);
        let at = index.find(h, |s| s == 2).expect("second entry");
        index.set_seq(at, 3);
        assert!(index.find(h, |s| s == 2).is_none());
        assert!(index.find(h, |s| s == 3).is_some());
        assert!(index.find(h, |s| s == 1).is_some());
    }

    #[test]
    fn entries_wrapping_past_the_last_bucket_are_found_after_growth() {
        let mut index = IdIndex::new();
        // Homes at the very end of the table push their overflow round to bucket 0.
        let seqs = 0..200u32;
        for seq in seqs.clone() {
            index.insert(hash(u32::MAX - (seq % 3), seq as u8), seq);
        }
        for seq in seqs {
            let h = hash(u32::MAX - (seq % 3), seq as u8);
            assert!(index.find(h, |s| s == seq).is_some(), "seq {seq}");
            assert!(index.remove(h, seq));
        }
        assert_eq!(index.len(), 0);
    }
}
