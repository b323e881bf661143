//! Cutting the log at either end: `truncate_after` drops the newest entries (a Raft conflict),
//! `purge_before` raises the low-water mark and deletes whole segments below it (retention or
//! a Raft snapshot), and `purge_segments_before` does the same but also drops control batches
//! sitting exactly at the mark (for callers that snapshotted their effect). Truncation waits for
//! the writer to drain first, so no append is in flight.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_protocol::RecordBatch;

use super::meta::{sync_dir, LogStart};
use super::recovery::remove;
use super::segment::{Scanner, Segment};
use super::writer::{Cmd, Target};
use super::{blocking, EntryId, Log, LogError};

/// Where an entry sits in a segment, and the batch before it.
struct Cut {
    /// Position of the first batch to drop.
    position: u64,
    /// The last batch kept in the segment, if any.
    before: Option<RecordBatch>,
}

impl Log {
    /// Drops every entry after `entry`; `next_offset` and `last_entry` follow. Dropping
    /// nothing (`entry` is the last one) is fine.
    ///
    /// # Errors
    /// [`LogError::EntryOutOfRange`] when `entry` is past the last entry or before the entry
    /// preceding the first retained one; [`LogError::Io`] or the writer's failure.
    pub async fn truncate_after(&mut self, entry: u64) -> Result<(), LogError> {
        let (first, next) = (self.first_entry(), self.next_entry());
        let cut = entry.wrapping_add(1);
        if cut < first || cut > next {
            let (entry, first) = (entry, first.saturating_sub(1));
            return Err(LogError::EntryOutOfRange { entry, first, next });
        }
        if cut == next {
            return Ok(());
        }
        self.sync().await?;
        let keep = self
            .segments
            .partition_point(|s| s.base_entry <= cut)
            .max(1)
            - 1;
        let dropped: Vec<Segment> = self.segments.drain(keep + 1..).collect();
        let dir = self.dir.clone();
        let paths: Vec<_> = dropped.iter().map(files_of).collect();
        blocking(move || remove_segments(&dir, &paths)).await?;
        let found = self.locate(keep, cut).await?;
        self.cut_segment(keep, found);
        let seg = &self.segments[keep];
        let target = Target {
            file: seg.file.clone(),
            path: seg.log_path.clone(),
        };
        let (len, durable) = (seg.len, self.durable_offset().min(seg.end_offset));
        let index_path = seg.index_path.clone();
        blocking(move || remove(&index_path)).await?;
        self.request(|reply| Cmd::Truncate {
            target,
            len,
            durable_offset: durable,
            reply,
        })
        .await?;
        self.queued.clear();
        if self.low_water > self.next_offset() {
            // The mark cannot stay above the data, or a reopen would hide new appends.
            self.low_water = self.next_offset();
            let (dir, start) = (self.dir.clone(), self.log_start());
            blocking(move || start.store(&dir)).await?;
        }
        Ok(())
    }

    /// The low-water checkpoint as it stands.
    fn log_start(&self) -> LogStart {
        LogStart {
            low_water: self.low_water,
            prev: self.prev,
        }
    }

    /// Finds entry `cut` in segment `i`.
    async fn locate(&self, i: usize, cut: u64) -> Result<Cut, LogError> {
        let seg = &self.segments[i];
        let (file, path) = (seg.file.clone(), seg.log_path.clone());
        let (from, end) = (seg.index.position_for_entry(cut.saturating_sub(1)), seg.len);
        blocking(move || find_entry(&file, &path, from, end, cut)).await
    }

    /// Makes segment `i` end just before `cut.position` and the active segment.
    fn cut_segment(&mut self, i: usize, cut: Cut) {
        let seg = &mut self.segments[i];
        seg.len = cut.position;
        seg.index.truncate(cut.position);
        match cut.before {
            Some(b) => {
                seg.end_offset = b.next_offset();
                seg.last = Some(EntryId {
                    index: b.entry_index(),
                    term: b.term(),
                });
            }
            None => {
                seg.end_offset = seg.base_offset;
                seg.last = None;
                seg.first_timestamp = None;
            }
        }
    }

    /// Raises the low-water mark to `offset` (clamped to `next_offset`), persists it, and
    /// deletes the segments wholly below it, the active one included when everything is
    /// purged (a new empty segment then keeps `next_offset`).
    ///
    /// # Errors
    /// [`LogError::Io`] or the writer's failure.
    pub async fn purge_before(&mut self, offset: u64) -> Result<(), LogError> {
        self.purge(offset, false).await
    }

    /// As [`purge_before`](Self::purge_before), but a segment also goes when its successor
    /// starts exactly at the mark: control batches at the mark go with it. For callers that
    /// saved the effect of those control batches elsewhere (a state snapshot), so retention can
    /// delete a segment whose messages are all below the mark.
    ///
    /// # Errors
    /// [`LogError::Io`] or the writer's failure.
    pub async fn purge_segments_before(&mut self, offset: u64) -> Result<(), LogError> {
        self.purge(offset, true).await
    }

    async fn purge(&mut self, offset: u64, at_mark: bool) -> Result<(), LogError> {
        let next = self.next_offset();
        let low_water = offset.min(next).max(self.low_water);
        let below = |b: u64| b < low_water || (at_mark && b == low_water);
        let none_to_drop = self.segments.len() < 2 || !below(self.segments[1].base_offset);
        if low_water == self.low_water && (!at_mark || none_to_drop) {
            return Ok(());
        }
        let before = self.segments.len();
        if low_water == next && self.active().len > 0 {
            self.roll()?;
        }
        // A segment goes when its successor starts below the mark (so none of its batches,
        // control batches at the mark included, is still readable), or when everything is
        // purged and a new empty segment now holds `next_offset`.
        let all = self.segments.len() > before;
        let n = (1..self.segments.len())
            .map(|i| self.segments[i].base_offset)
            .take_while(|&b| below(b) || (all && b == low_water))
            .count();
        let prev = self.segments[..n].iter().rev().find_map(|s| s.last);
        let start = LogStart {
            low_water,
            prev: prev.or(self.prev),
        };
        let dir = self.dir.clone();
        blocking(move || start.store(&dir)).await?;
        self.low_water = low_water;
        self.prev = start.prev;
        let dropped: Vec<Segment> = self.segments.drain(..n).collect();
        let dir = self.dir.clone();
        let paths: Vec<_> = dropped.iter().map(files_of).collect();
        blocking(move || remove_segments(&dir, &paths)).await
    }
}

/// The `.log` and `.index` paths of a segment.
fn files_of(seg: &Segment) -> (PathBuf, PathBuf) {
    (seg.log_path.clone(), seg.index_path.clone())
}

/// Deletes segment files, newest first (so a crash leaves a prefix), then syncs the directory.
fn remove_segments(dir: &Path, paths: &[(PathBuf, PathBuf)]) -> Result<(), LogError> {
    for (log, index) in paths.iter().rev() {
        remove(index)?;
        remove(log)?;
    }
    sync_dir(dir)
}

/// Scans from `from` for the batch with entry index `cut`, remembering the batch before it.
fn find_entry(
    file: &Arc<File>,
    path: &Path,
    from: u64,
    end: u64,
    cut: u64,
) -> Result<Cut, LogError> {
    let mut scanner = Scanner::new(file, path, from, end, 64 << 10);
    let mut before = None;
    loop {
        match scanner.next_batch() {
            Ok(Some((position, batch))) if batch.entry_index() >= cut => {
                return Ok(Cut { position, before });
            }
            Ok(Some((_, batch))) => before = Some(batch),
            Ok(None) => {
                return Ok(Cut {
                    position: end,
                    before,
                })
            }
            Err(Ok(bad)) => return Err(LogError::corrupt(path, bad.position, bad.reason)),
            Err(Err(io)) => return Err(io),
        }
    }
}
