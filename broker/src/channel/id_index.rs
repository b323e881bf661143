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
//! `i` goes to `2i` and `2i + 1`), not at random; it is done a few buckets per insert, so growing
//! never holds up a publish for long (see [`IdIndex`]).
//!
//! Bucket arrays are anonymous memory maps: the kernel hands out zeroed pages as they are first
//! written, so a new table costs no zeroing pass. (The global allocator zeroes an allocation
//! aligned to 64 bytes with a memset of its own: 200 ms for a 256 MiB table, all at once, on the
//! partition task.) Advising transparent
//! huge pages for them was measured and dropped: fewer TLB misses, but on this VM first-touch
//! zeroing of 2 MiB pages cost the broker more than the TLB saved (-5% publish with ids).

use bytemuck::{Pod, Zeroable};
use memmap2::MmapMut;

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

/// Where an entry sits: which table, bucket and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// In the table being moved out of while the index grows.
    old: bool,
    bucket: usize,
    slot: usize,
}

/// Old buckets moved into the new table per insert while the index grows. The new table takes
/// as many inserts again as the old one held before it must grow in turn, so even one bucket
/// per insert would finish in time. More per insert end the growth sooner (while it lasts, a
/// new id's lookup reads a line of each table) and keep the moves sequential. Filling a window
/// with 16 M ids (`--bench id_window_pauses`, 3 runs): 1.23–1.41 s moving 16, 1.17–1.32 s
/// moving 64, against 1.30–1.34 s growing all at once with a 190 ms pause; 64 moves cost an
/// insert a few µs at most.
const MOVES_PER_INSERT: usize = 64;

/// Maps id hashes to [`Handle`]s; the caller tells equal ids apart (see [`IdIndex::find`]).
///
/// Growing does not stop the partition: the index allocates a table of twice the buckets, puts
/// new entries there, and moves the old table's entries over a few buckets per insert
/// ([`MOVES_PER_INSERT`]); lookups meanwhile look in both. Doubling a table of 8 M ids in one go
/// held its partition for 0.2 s (`--bench id_window_pauses`), and the time grows with the table.
#[derive(Debug, Default)]
pub struct IdIndex {
    /// Where entries are put.
    table: Table,
    /// While growing: the table before, and how many of its buckets have been moved.
    growing: Option<Growing>,
    /// Entries held, in both tables.
    len: usize,
}

/// The table an index is growing out of.
#[derive(Debug)]
struct Growing {
    old: Table,
    /// Buckets `0..moved` of `old` have been moved: their slots are empty, but their overflow
    /// counts stay, so lookups of entries that overflowed past them still probe on.
    moved: usize,
    /// Bytes of the new table whose pages have been faulted in ahead of use.
    populated: usize,
}

/// One array of buckets.
#[derive(Debug, Default)]
struct Table {
    /// `1 << bits` buckets, or none before the first insert; page-aligned, so each bucket is
    /// one cache line.
    memory: Option<MmapMut>,
    bits: u32,
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

    /// Asks for the lines a lookup of `hash` starts at, and does nothing else. Calling it for a
    /// batch of ids before working on them lets their cache misses overlap.
    pub fn prefetch(&self, hash: IdHash) {
        self.table.prefetch(hash);
        if let Some(growing) = &self.growing {
            growing.old.prefetch(hash);
        }
    }

    /// The slot of the entry with `hash` for which `is_it(seq)` holds. `is_it` is only asked
    /// about entries whose tag and stored hash match, so it can afford to compare full ids.
    pub fn find(&self, hash: IdHash, mut is_it: impl FnMut(u32) -> bool) -> Option<Slot> {
        if let Some((bucket, slot)) = self.table.find(hash, &mut is_it) {
            return Some(Slot {
                old: false,
                bucket,
                slot,
            });
        }
        let (bucket, slot) = self.growing.as_ref()?.old.find(hash, &mut is_it)?;
        Some(Slot {
            old: true,
            bucket,
            slot,
        })
    }

    /// The handle at `at`, which must come from [`IdIndex::find`] with no change since.
    pub fn get(&self, at: Slot) -> Handle {
        self.table_of(at).buckets()[at.bucket].handles[at.slot]
    }

    /// Points the entry at `at` (from [`IdIndex::find`], no change since) at another sequence.
    pub fn set_seq(&mut self, at: Slot, seq: u32) {
        self.table_of_mut(at).buckets_mut()[at.bucket].handles[at.slot].seq = seq;
    }

    /// Adds an entry for `hash` at `seq`; the caller has checked that its id has none.
    pub fn insert(&mut self, hash: IdHash, seq: u32) {
        if self.len >= self.table.buckets().len() * MAX_PER_BUCKET {
            self.start_growing();
        }
        let handle = Handle {
            seq,
            hash: hash.stored(),
        };
        self.table.place(hash.tag(), handle);
        self.len += 1;
        self.move_buckets(MOVES_PER_INSERT);
    }

    /// Removes the entry for `hash` at `seq`, if there is one; says whether there was.
    pub fn remove(&mut self, hash: IdHash, seq: u32) -> bool {
        let Some(at) = self.find(hash, |s| s == seq) else {
            return false;
        };
        self.table_of_mut(at).remove(hash, at.bucket, at.slot);
        self.len -= 1;
        true
    }

    fn table_of(&self, at: Slot) -> &Table {
        match (&self.growing, at.old) {
            (Some(growing), true) => &growing.old,
            _ => &self.table,
        }
    }

    fn table_of_mut(&mut self, at: Slot) -> &mut Table {
        match (&mut self.growing, at.old) {
            (Some(growing), true) => &mut growing.old,
            _ => &mut self.table,
        }
    }

    /// Puts a table of twice the buckets (or the first one) in place for new entries; the
    /// current one's entries follow a few at a time. A growth still under way is finished
    /// first, which the pace of [`MOVES_PER_INSERT`] makes a no-op.
    fn start_growing(&mut self) {
        self.move_buckets(usize::MAX);
        let bits = if self.table.memory.is_none() {
            0
        } else {
            self.table.bits + 1
        };
        let old = std::mem::replace(&mut self.table, Table::with_bits(bits));
        if old.memory.is_some() {
            self.growing = Some(Growing {
                old,
                moved: 0,
                populated: 0,
            });
        }
    }

    /// Moves up to `count` more buckets of the old table into the new one. Since homes are the
    /// hash's top bits, old bucket `i`'s entries go to new buckets `2i` and `2i + 1`: the moves
    /// read the old table and write the new one front to back.
    fn move_buckets(&mut self, count: usize) {
        let Self { table, growing, .. } = self;
        let Some(g) = growing else {
            return;
        };
        let end = g.moved.saturating_add(count).min(g.old.buckets().len());
        for bucket in &mut g.old.buckets_mut()[g.moved..end] {
            for slot in slots(!bucket.empty() & TAG_BITS) {
                table.place(bucket.control[slot], bucket.handles[slot]);
                bucket.control[slot] = 0;
            }
        }
        g.moved = end;
        g.populate_ahead(table);
        if end == g.old.buckets().len() {
            *growing = None;
        }
    }
}

impl Growing {
    /// Faults in the new table's pages at twice the pace of the moves, a chunk at a time, so it
    /// is all in place half way through the growth. A page first written by a random insert
    /// instead costs that insert a page fault, and until then prefetches of lines in it do
    /// nothing (a prefetch does not fault): filling a window with 16 M ids took 1.47 s that
    /// way and 1.36 s with every page faulted in at the start. Best effort: Linux only, and
    /// kernels before 5.14 do not know the advice and refuse it; elsewhere inserts fault pages
    /// in as they come.
    fn populate_ahead(&mut self, new: &Table) {
        const CHUNK: usize = 64 << 10;
        let Some(memory) = &new.memory else {
            return;
        };
        let due = memory.len() / self.old.buckets().len() * self.moved * 2;
        let due = due.min(memory.len());
        if due < self.populated + CHUNK && due < memory.len() {
            return;
        }
        if due == self.populated {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            let len = due - self.populated;
            let _ = memory.advise_range(memmap2::Advice::PopulateWrite, self.populated, len);
        }
        self.populated = due;
    }
}

impl Table {
    /// A table of `1 << bits` empty buckets, in fresh zeroed pages.
    fn with_bits(bits: u32) -> Self {
        let len = (1usize << bits) * std::mem::size_of::<Bucket>();
        let memory = MmapMut::map_anon(len)
            .unwrap_or_else(|e| panic!("cannot map {len} bytes for the id index: {e}"));
        Self {
            memory: Some(memory),
            bits,
        }
    }

    fn buckets(&self) -> &[Bucket] {
        self.memory.as_deref().map_or(&[], bytemuck::cast_slice)
    }

    fn buckets_mut(&mut self) -> &mut [Bucket] {
        self.memory
            .as_deref_mut()
            .map_or(&mut [], bytemuck::cast_slice_mut)
    }

    fn prefetch(&self, hash: IdHash) {
        if let Some(bucket) = self.buckets().get(self.home(hash.stored())) {
            prefetch_line(bucket);
        }
    }

    /// Bucket and slot of the entry with `hash` for which `is_it(seq)` holds.
    fn find(&self, hash: IdHash, is_it: &mut impl FnMut(u32) -> bool) -> Option<(usize, usize)> {
        let mut bucket = self.home(hash.stored());
        let buckets = self.buckets();
        for _ in 0..buckets.len() {
            let b = &buckets[bucket];
            if let Some(slot) = b.matching(hash).find(|&i| is_it(b.handles[i].seq)) {
                return Some((bucket, slot));
            }
            if b.overflow() == 0 {
                return None;
            }
            bucket = self.next(bucket);
        }
        None
    }

    /// Empties the slot of an entry with `hash` and undoes the overflow counts it added on its
    /// way from its home.
    fn remove(&mut self, hash: IdHash, at_bucket: usize, slot: usize) {
        self.buckets_mut()[at_bucket].control[slot] = 0;
        let mut bucket = self.home(hash.stored());
        while bucket != at_bucket {
            let overflow = &mut self.buckets_mut()[bucket].control[OVERFLOW];
            if *overflow != OVERFLOW_STUCK {
                *overflow -= 1;
            }
            bucket = self.next(bucket);
        }
    }

    /// The bucket an entry with stored hash `stored` belongs in: its top `bits` bits.
    fn home(&self, stored: u32) -> usize {
        ((u64::from(stored) << self.bits) >> 32) as usize
    }

    fn next(&self, bucket: usize) -> usize {
        (bucket + 1) & (self.buckets().len() - 1)
    }

    /// Puts an entry in the first free slot from its home bucket on, counting the full buckets
    /// it passes. There is always a free slot: the table is at most 4/7 full.
    fn place(&mut self, tag: u8, handle: Handle) {
        let mut bucket = self.home(handle.hash);
        loop {
            let b = &mut self.buckets_mut()[bucket];
            if let Some(slot) = slots(b.empty()).next() {
                b.control[slot] = tag;
                b.handles[slot] = handle;
                return;
            }
            b.control[OVERFLOW] = b.overflow().saturating_add(1);
            bucket = self.next(bucket);
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
        assert!(index.growing.is_none());
        assert!(
            index.table.buckets().iter().all(|b| b.overflow() == 0),
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
    fn growing_moves_a_few_buckets_per_insert_and_lookups_see_both_tables() {
        let mut index = IdIndex::new();
        let h = |seq: u32| hash(seq.wrapping_mul(2_654_435_761), seq as u8);
        let mut seq = 0;
        while index.growing.is_none() || index.table.buckets().len() < 1 << 10 {
            index.insert(h(seq), seq);
            seq += 1;
        }
        let g = index.growing.as_ref().unwrap();
        assert_eq!(
            g.moved, MOVES_PER_INSERT,
            "one insert into the new table so far"
        );
        assert_eq!(g.old.buckets().len() * 2, index.table.buckets().len());
        // Mid-move, every entry is found, in whichever table it is, and can be changed there.
        for s in 0..seq {
            let at = index.find(h(s), |x| x == s).expect("found while growing");
            assert_eq!(index.get(at).seq, s);
        }
        let at = index.find(h(0), |x| x == 0).unwrap();
        index.set_seq(at, 1_000_000);
        assert!(index.find(h(0), |x| x == 1_000_000).is_some());
        assert!(index.remove(h(0), 1_000_000));
        assert!(index.find(h(0), |x| x == 1_000_000).is_none());
        // The move finishes before the new table is half way to growing again.
        let old_buckets = index.growing.as_ref().unwrap().old.buckets().len();
        for _ in 0..old_buckets / MOVES_PER_INSERT {
            index.insert(h(seq), seq);
            seq += 1;
        }
        assert!(index.growing.is_none());
        assert_eq!(index.len(), seq as usize - 1);
    }

    #[test]
    fn inserts_removes_and_changes_across_many_growths_match_a_map() {
        let mut index = IdIndex::new();
        // The entries the index should hold, as (seq, hash), in no particular order.
        let mut model: Vec<(u32, IdHash)> = Vec::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut next_seq = 0u32;
        let mut grew_midway = 0;
        for step in 0..60_000u32 {
            match random() % 10 {
                0..=5 => {
                    // Few distinct stored hashes (spread over the range), so homes collide,
                    // buckets overflow and equal hashes must be told apart by `seq`.
                    let stored = (random() % 5_000).wrapping_mul(0x9e37_79b9) as u32;
                    let h = hash(stored, random() as u8);
                    index.insert(h, next_seq);
                    model.push((next_seq, h));
                    next_seq += 1;
                }
                6..=7 if !model.is_empty() => {
                    let (seq, h) = model.swap_remove(random() as usize % model.len());
                    assert!(index.remove(h, seq), "step {step}: remove {seq}");
                }
                8 if !model.is_empty() => {
                    let i = random() as usize % model.len();
                    let (seq, h) = model[i];
                    let at = index.find(h, |s| s == seq).expect("present");
                    index.set_seq(at, next_seq);
                    model[i] = (next_seq, h);
                    next_seq += 1;
                }
                _ => {}
            }
            grew_midway += usize::from(index.growing.is_some());
            if step % 5_000 == 0 {
                for &(seq, h) in &model {
                    assert!(index.find(h, |s| s == seq).is_some(), "step {step}: {seq}");
                }
            }
            assert_eq!(index.len(), model.len());
        }
        for &(seq, h) in &model {
            assert!(index.find(h, |s| s == seq).is_some(), "at the end: {seq}");
            assert!(index.remove(h, seq));
        }
        assert!(index.find(hash(12345, 1), |_| true).is_none());
        assert!(
            grew_midway > 100,
            "steps taken while growing: {grew_midway}"
        );
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
