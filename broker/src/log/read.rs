//! Reads: whole batches from a starting offset or entry index, up to a byte budget.
//!
//! The log finds the segment and the sparse-index point at or before the start, then scans
//! forward in one `pread` per chunk on a blocking thread; batches are slices of the chunk (no
//! copy per batch) and are CRC-checked, so damage found at read time is a
//! [`LogError::Corrupt`]. Batches the writer has not written yet come from the in-memory queue.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_protocol::RecordBatch;

use super::segment::Scanner;
use super::{blocking, Log, LogError};

/// Where a read starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// The first batch that holds this offset or begins at or after it.
    Offset(u64),
    /// The batch with this entry index.
    Entry(u64),
}

impl Start {
    /// Whether `batch` is at or past the start.
    fn reached(self, batch: &RecordBatch) -> bool {
        match self {
            Self::Offset(o) => batch.next_offset() > o || batch.base_offset() >= o,
            Self::Entry(e) => batch.entry_index() >= e,
        }
    }
}

/// A region of one segment file to scan.
struct Part {
    /// The segment file.
    file: Arc<File>,
    /// For error messages.
    path: PathBuf,
    /// First position to scan.
    start: u64,
    /// End of the written bytes to scan.
    end: u64,
}

impl Log {
    /// Whole batches starting with the one that holds `from_offset` (or the first at or after
    /// it, control batches included), until `max_bytes` is reached; always at least one batch
    /// when any exists. Empty at [`next_offset`](Self::next_offset). Includes batches not yet
    /// durable.
    ///
    /// # Errors
    /// [`LogError::OffsetOutOfRange`] below `first_offset` or above `next_offset`;
    /// [`LogError::Corrupt`] when a stored batch fails its CRC; [`LogError::Io`].
    pub async fn read(
        &self,
        from_offset: u64,
        max_bytes: usize,
    ) -> Result<Vec<RecordBatch>, LogError> {
        let (first, next) = (self.first_offset(), self.next_offset());
        if from_offset < first || from_offset > next {
            return Err(LogError::OffsetOutOfRange {
                offset: from_offset,
                first,
                next,
            });
        }
        if from_offset == next {
            return Ok(Vec::new());
        }
        self.read_from(Start::Offset(from_offset), max_bytes).await
    }

    /// Whole batches starting with entry `from_entry`, as [`read`](Self::read) (for Raft).
    ///
    /// # Errors
    /// [`LogError::EntryOutOfRange`] outside `first_entry..=next_entry`; otherwise as `read`.
    pub async fn read_entries(
        &self,
        from_entry: u64,
        max_bytes: usize,
    ) -> Result<Vec<RecordBatch>, LogError> {
        let (first, next) = (self.first_entry(), self.next_entry());
        if from_entry < first || from_entry > next {
            return Err(LogError::EntryOutOfRange {
                entry: from_entry,
                first,
                next,
            });
        }
        if from_entry == next {
            return Ok(Vec::new());
        }
        self.read_from(Start::Entry(from_entry), max_bytes).await
    }

    /// Reads from the files, then from the queue of unwritten batches.
    async fn read_from(
        &self,
        start: Start,
        max_bytes: usize,
    ) -> Result<Vec<RecordBatch>, LogError> {
        let parts = self.plan(start);
        let mut out = Vec::new();
        let mut total = 0;
        if parts.iter().any(|p| p.end > p.start) {
            let chunk = max_bytes
                .saturating_add(self.config.index_interval_bytes)
                .min(8 << 20);
            (out, total) = blocking(move || scan_parts(parts, start, max_bytes, chunk)).await?;
        }
        for q in &self.queued {
            if total >= max_bytes && !out.is_empty() {
                break;
            }
            if start.reached(&q.batch) {
                total += q.batch.len();
                out.push(q.batch.clone());
            }
        }
        Ok(out)
    }

    /// The file regions to scan: from the index point before `start` to the end of what the
    /// writer has written, segment by segment.
    fn plan(&self, start: Start) -> Vec<Part> {
        let first = match start {
            Start::Offset(o) => self.segments.partition_point(|s| s.base_offset < o),
            Start::Entry(e) => self.segments.partition_point(|s| s.base_entry <= e),
        };
        let first = first.saturating_sub(1);
        self.segments[first..]
            .iter()
            .enumerate()
            .map(|(i, seg)| {
                let from = match (i, start) {
                    (0, Start::Offset(o)) => seg.index.position_for_offset(o),
                    (0, Start::Entry(e)) => seg.index.position_for_entry(e),
                    _ => 0,
                };
                let queued = self.queued.iter().find(|q| q.segment == seg.base_offset);
                Part {
                    file: seg.file.clone(),
                    path: seg.log_path.clone(),
                    start: from,
                    end: queued.map_or(seg.len, |q| q.position),
                }
            })
            .collect()
    }
}

/// Scans the parts in order, keeping batches from `start` on until `max_bytes` is reached.
fn scan_parts(
    parts: Vec<Part>,
    start: Start,
    max_bytes: usize,
    chunk: usize,
) -> Result<(Vec<RecordBatch>, usize), LogError> {
    let mut out = Vec::new();
    let mut total = 0;
    for part in parts.iter().filter(|p| p.end > p.start) {
        let mut scanner = Scanner::new(&part.file, &part.path, part.start, part.end, chunk);
        loop {
            let batch = match scanner.next_batch() {
                Ok(Some((_, batch))) => batch,
                Ok(None) => break,
                Err(Ok(bad)) => {
                    return Err(LogError::corrupt(&part.path, bad.position, bad.reason))
                }
                Err(Err(io)) => return Err(io),
            };
            if !start.reached(&batch) {
                continue;
            }
            total += batch.len();
            out.push(batch);
            if total >= max_bytes {
                return Ok((out, total));
            }
        }
    }
    Ok((out, total))
}
