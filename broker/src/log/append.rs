//! The append path: checks, stamping, segment rolling, and the hand-off to the writer. No
//! syscall and no payload copy per batch: the bytes are queued as `Bytes` and written by the
//! writer thread in groups.

use sluice_protocol::{RecordBatch, Stamp};

use super::segment::{open_file, paths, Segment};
use super::writer::{Cmd, Durable, Target};
use super::{Appended, Log, LogError, Queued};

impl Log {
    /// Stamps `batch` with the next offset and entry index, `term` and `timestamp_ms`, and
    /// queues it for writing. Returns at once; the [`Durable`] completes when the batch is
    /// durable under the fsync policy. Appends issued back to back share one write and sync.
    ///
    /// # Errors
    /// [`LogError::EmptyBatch`], [`LogError::BatchTooLarge`], [`LogError::TermRegression`],
    /// [`LogError::Closed`] or the writer's earlier I/O failure; [`LogError::Io`] when a new
    /// segment file cannot be created.
    pub fn append(
        &mut self,
        batch: RecordBatch,
        term: u64,
        timestamp_ms: i64,
    ) -> Result<(Appended, Durable), LogError> {
        self.check(&batch, term)?;
        let stamp = Stamp {
            base_offset: self.next_offset(),
            entry_index: self.next_entry(),
            term,
            timestamp: timestamp_ms,
        };
        self.push(batch.stamp(stamp))
    }

    /// Appends a batch that already carries its stamp (replicated from a leader).
    ///
    /// # Errors
    /// As [`append`](Self::append), plus [`LogError::NotContiguous`] when its entry index or
    /// base offset does not continue the log.
    pub fn append_stamped(&mut self, batch: RecordBatch) -> Result<(Appended, Durable), LogError> {
        self.check(&batch, batch.term())?;
        for (field, expected, found) in [
            ("entry index", self.next_entry(), batch.entry_index()),
            ("base offset", self.next_offset(), batch.base_offset()),
        ] {
            if expected != found {
                return Err(LogError::NotContiguous {
                    field,
                    expected,
                    found,
                });
            }
        }
        self.push(batch)
    }

    /// Rejects batches the log must not take.
    pub(super) fn check(&self, batch: &RecordBatch, term: u64) -> Result<(), LogError> {
        if let Some(e) = self.progress.borrow().error() {
            return Err(e);
        }
        if batch.record_count() == 0 {
            return Err(LogError::EmptyBatch);
        }
        if batch.len() > self.config.max_batch_bytes {
            return Err(LogError::BatchTooLarge {
                size: batch.len(),
                max: self.config.max_batch_bytes,
            });
        }
        match self.last_entry() {
            Some(last) if term < last.term => Err(LogError::TermRegression {
                term,
                last: last.term,
            }),
            _ => Ok(()),
        }
    }

    /// Accounts for a stamped batch and hands it to the writer.
    fn push(&mut self, batch: RecordBatch) -> Result<(Appended, Durable), LogError> {
        self.reap();
        if self.should_roll(&batch) {
            self.roll()?;
        }
        let interval = self.config.index_interval_bytes;
        let seg = self.active_mut();
        let (segment, position) = (seg.base_offset, seg.len);
        seg.on_batch(&batch, interval);
        self.seq += 1;
        let appended = Appended {
            base_offset: batch.base_offset(),
            next_offset: batch.next_offset(),
            entry_index: batch.entry_index(),
        };
        let cmd = Cmd::Write {
            seq: self.seq,
            bytes: batch.as_bytes().clone(),
            next_offset: appended.next_offset,
        };
        self.queued.push_back(Queued {
            seq: self.seq,
            segment,
            position,
            batch,
        });
        self.send(cmd)?;
        Ok((appended, Durable::new(self.progress.clone(), self.seq)))
    }

    /// Forgets queued batches the writer has written (reads then `pread` them).
    pub(super) fn reap(&mut self) {
        let written = self.progress.borrow().written;
        while self.queued.front().is_some_and(|q| q.seq <= written) {
            self.queued.pop_front();
        }
    }

    /// Whether `batch` must start a new segment: the active one is non-empty, has advanced
    /// the offset (so segment names stay unique) and is too big or too old.
    fn should_roll(&self, batch: &RecordBatch) -> bool {
        let seg = self.active();
        let Some(first_ts) = seg.first_timestamp else {
            return false;
        };
        let age_ms = batch.first_timestamp().saturating_sub(first_ts);
        let too_old = age_ms >= 0 && age_ms as u128 >= self.config.segment_max_age.as_millis();
        let too_big = seg.len + batch.len() as u64 > self.config.segment_bytes;
        seg.end_offset > seg.base_offset && (too_big || too_old)
    }

    /// Seals the active segment and starts a new one at the next offset.
    pub(super) fn roll(&mut self) -> Result<(), LogError> {
        let (base, entry) = (self.next_offset(), self.next_entry());
        if base == self.active().base_offset {
            // Only control batches since the last roll: the name would repeat. Keep growing.
            return Ok(());
        }
        let (path, _) = paths(&self.dir, base);
        let file = open_file(&path, true)?;
        let seg = Segment::empty(&self.dir, base, entry, file);
        let sealed = self.active();
        let cmd = Cmd::Roll {
            next: Target {
                file: seg.file.clone(),
                path: seg.log_path.clone(),
            },
            index_path: sealed.index_path.clone(),
            index: sealed.index.encode(sealed.len),
        };
        tracing::debug!(dir = %self.dir.display(), base, "rolling to a new segment");
        self.segments.push(seg);
        self.send(cmd)
    }
}
