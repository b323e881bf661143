//! A set of `u64` offsets stored as disjoint half-open ranges, for acks that arrive as ranges.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent `[start, end)` ranges keyed by start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start → end; ranges never overlap or touch.
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// Adds `[start, end)`, merging with neighbours; returns how many of its offsets were not
    /// in the set before.
    pub fn insert(&mut self, start: u64, end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        let (mut from, mut to) = (start, end);
        let mut present = 0;
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                present += e.min(end) - start;
                from = s;
                to = to.max(e);
                self.ranges.remove(&s);
            }
        }
        while let Some((&s, &e)) = self.ranges.range(from..=to).next() {
            present += e.min(end).saturating_sub(s);
            to = to.max(e);
            self.ranges.remove(&s);
        }
        self.ranges.insert(from, to);
        end - start - present
    }

    /// Whether `offset` is in the set.
    pub fn contains(&self, offset: u64) -> bool {
        self.ranges
            .range(..=offset)
            .next_back()
            .is_some_and(|(_, &end)| offset < end)
    }

    /// The end of the range that starts exactly at `start`, removing it.
    pub fn take_range_at(&mut self, start: u64) -> Option<u64> {
        self.ranges.remove(&start)
    }

    /// Drops everything below `floor`.
    pub fn remove_below(&mut self, floor: u64) {
        let keep = self.ranges.split_off(&floor);
        if let Some((_, &end)) = self.ranges.iter().next_back() {
            if end > floor {
                self.ranges = keep;
                self.ranges.insert(floor, end);
                return;
            }
        }
        self.ranges = keep;
    }

    /// First offset at or after `from` that is not in the set.
    pub fn next_absent(&self, from: u64) -> u64 {
        match self.ranges.range(..=from).next_back() {
            Some((_, &end)) if end > from => end,
            _ => from,
        }
    }

    /// First offset at or after `from` that is in the set, if any.
    pub fn next_present(&self, from: u64) -> Option<u64> {
        if self.contains(from) {
            return Some(from);
        }
        self.ranges.range(from..).next().map(|(&s, _)| s)
    }

    /// Number of offsets in the set.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn adjacent_ranges_merge() {
        let mut set = RangeSet::default();
        set.insert(0, 2);
        set.insert(4, 6);
        set.insert(2, 4);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![(0, 6)]);
    }

    #[test]
    fn remove_below_cuts_a_straddling_range() {
        let mut set = RangeSet::default();
        set.insert(0, 10);
        set.insert(20, 30);
        set.remove_below(5);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![(5, 10), (20, 30)]);
        assert_eq!(set.next_absent(5), 10);
        assert_eq!(set.next_present(10), Some(20));
    }

    proptest! {
        #[test]
        fn behaves_like_a_set_of_offsets(ops in prop::collection::vec((0u64..64, 0u64..8, any::<bool>()), 1..40)) {
            let mut set = RangeSet::default();
            let mut model = BTreeSet::new();
            for (start, len, cut) in ops {
                if cut {
                    set.remove_below(start);
                    model = model.split_off(&start);
                } else {
                    let before = model.len() as u64;
                    model.extend(start..start + len);
                    prop_assert_eq!(set.insert(start, start + len), model.len() as u64 - before);
                }
                prop_assert_eq!(set.len(), model.len() as u64);
                for x in 0..80 {
                    prop_assert_eq!(set.contains(x), model.contains(&x));
                }
                for w in set.iter().collect::<Vec<_>>().windows(2) {
                    prop_assert!(w[0].1 < w[1].0, "ranges touch: {:?}", w);
                }
            }
        }
    }
}
