//! The partition log: a segmented write-ahead log of record batches, which is also the Raft log.
//!
//! The log knows offsets, entry indexes, terms, timestamps and bytes. It stores each
//! [`RecordBatch`] exactly as given (after stamping its header in place) and returns the same
//! bytes on read. It knows nothing of channels, cursors, acks or frames.
//!
//! ```text
//! <dir>/
//!   00000000000000000000.log    sealed segment: batches back to back
//!   00000000000000000000.index  its sparse index (offset, entry → position)
//!   00000000000000004096.log    active segment (the writer appends here)
//!   meta                        Raft vote and commit index (atomic replace)
//!   log-start                   low-water mark and last purged entry (atomic replace)
//! ```
//!
//! Data flow: [`Log::append`] stamps the batch (base offset, entry index, term, timestamp),
//! updates the in-memory view and hands the bytes to the [writer thread](writer), which writes
//! groups with `writev` and syncs once per group. Reads `pread` what the writer has written and
//! take not-yet-written batches from an in-memory queue, so they see every append at once.
//! Opening runs [recovery]. One task owns a `Log`; it is `Send` but not shared.

mod append;
mod config;
mod error;
mod index;
mod meta;
mod read;
mod recovery;
mod segment;
mod truncate;
mod writer;

use std::collections::VecDeque;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use sluice_protocol::RecordBatch;
use tokio::sync::{oneshot, watch};

pub use config::{FsyncPolicy, LogConfig};
pub use error::LogError;
pub use meta::Meta;
pub(crate) use meta::{atomic_write, sync_dir};
pub use writer::Durable;

use segment::Segment;
use writer::{Cmd, Progress, Target, Writer};

/// Position of a batch in the Raft log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    /// Entry index (position among batches).
    pub index: u64,
    /// Term of the leader that appended it.
    pub term: u64,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// The log's next offset after this batch.
    pub next_offset: u64,
    /// Entry index of the batch.
    pub entry_index: u64,
}

/// Size of the log on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Number of segment files.
    pub segments: u32,
    /// Bytes of batches in all segments.
    pub bytes: u64,
}

/// One segment as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Offset of its first batch (the file name).
    pub base_offset: u64,
    /// Offset after its last batch.
    pub end_offset: u64,
    /// Bytes of batches in it.
    pub bytes: u64,
    /// Append time of its first batch, ms since the Unix epoch; `None` when empty.
    pub first_timestamp: Option<i64>,
}

/// A batch handed to the writer but not yet known to be written; reads serve it from memory.
#[derive(Debug)]
struct Queued {
    /// Append sequence number.
    seq: u64,
    /// Base offset of the segment it goes to.
    segment: u64,
    /// Its position in that segment.
    position: u64,
    /// The stamped batch.
    batch: RecordBatch,
}

/// The log of one partition. See the [module docs](self).
#[derive(Debug)]
pub struct Log {
    /// The partition directory.
    dir: PathBuf,
    /// Sizes, ages and the fsync policy.
    config: LogConfig,
    /// Segments in offset order; never empty; the last one is active.
    segments: Vec<Segment>,
    /// First readable offset (the persisted low-water mark, clamped to the data).
    low_water: u64,
    /// Id of the last purged entry, for `last_entry` of an emptied log.
    prev: Option<EntryId>,
    /// Raft metadata as last saved.
    meta: Meta,
    /// Batches queued to the writer and not yet confirmed written, in append order.
    queued: VecDeque<Queued>,
    /// Sequence number of the last append.
    seq: u64,
    /// Requests to the writer thread; `None` once closed.
    tx: Option<mpsc::Sender<Cmd>>,
    /// The writer's progress.
    progress: watch::Receiver<Progress>,
}

/// Runs blocking file work off the async worker threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::io("<blocking task>", std::io::Error::other(e.to_string())))?
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, running recovery.
    ///
    /// # Errors
    /// [`LogError::Corrupt`] when a sealed segment or a metadata file is damaged,
    /// [`LogError::Io`] when files cannot be read or written.
    pub async fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log, LogError> {
        let dir = dir.into();
        let (d, c) = (dir.clone(), config.clone());
        let rec = blocking(move || recovery::recover(&d, &c)).await?;
        let active = rec.segments.last().ok_or(LogError::Closed)?;
        (&*active.file)
            .seek(SeekFrom::End(0))
            .map_err(|e| LogError::io(&active.log_path, e))?;
        let target = Target {
            file: active.file.clone(),
            path: active.log_path.clone(),
        };
        let first_base = rec.segments[0].base_offset;
        let progress = Progress {
            durable_offset: active.end_offset,
            ..Progress::default()
        };
        let (tx, rx) = mpsc::channel();
        let (ptx, prx) = watch::channel(progress);
        Writer::spawn(rx, ptx, target, dir.clone(), config.fsync)
            .map_err(|e| LogError::io(&dir, e))?;
        let mut log = Log {
            dir,
            config,
            segments: rec.segments,
            low_water: rec.start.low_water.max(first_base),
            prev: rec.start.prev,
            meta: rec.meta,
            queued: VecDeque::new(),
            seq: 0,
            tx: Some(tx),
            progress: prx,
        };
        log.low_water = log.low_water.min(log.next_offset());
        Ok(log)
    }

    /// Sends a command to the writer.
    fn send(&self, cmd: Cmd) -> Result<(), LogError> {
        let tx = self.tx.as_ref().ok_or(LogError::Closed)?;
        tx.send(cmd).map_err(|_| self.writer_error())
    }

    /// Why the writer stopped.
    fn writer_error(&self) -> LogError {
        self.progress.borrow().error().unwrap_or(LogError::Closed)
    }

    /// Sends a command carrying a reply channel and waits for the reply.
    async fn request(&self, cmd: impl FnOnce(oneshot::Sender<()>) -> Cmd) -> Result<(), LogError> {
        let (reply, done) = oneshot::channel();
        self.send(cmd(reply))?;
        done.await.map_err(|_| self.writer_error())
    }

    /// Makes everything appended so far durable, whatever the policy.
    ///
    /// # Errors
    /// [`LogError::Closed`] or the writer's I/O failure.
    pub async fn sync(&mut self) -> Result<(), LogError> {
        self.request(|reply| Cmd::Sync { reply }).await?;
        self.reap();
        Ok(())
    }

    /// Writes and syncs everything, writes the active segment's index and stops the writer.
    ///
    /// # Errors
    /// [`LogError::Closed`], the writer's I/O failure, or [`LogError::Io`] for the index.
    pub async fn close(mut self) -> Result<(), LogError> {
        self.request(|reply| Cmd::Close { reply }).await?;
        self.tx = None;
        let active = self.active();
        let (path, index) = (active.index_path.clone(), active.index.encode(active.len));
        blocking(move || std::fs::write(&path, index).map_err(|e| LogError::io(&path, e))).await
    }

    /// First readable offset (the low-water mark).
    pub fn first_offset(&self) -> u64 {
        self.low_water
    }

    /// Offset the next appended record will get.
    pub fn next_offset(&self) -> u64 {
        self.active().end_offset
    }

    /// Entry index of the first retained batch (or of the next one when none is retained).
    pub fn first_entry(&self) -> u64 {
        self.segments[0].base_entry
    }

    /// Entry index the next batch will get.
    pub fn next_entry(&self) -> u64 {
        self.active().end_entry()
    }

    /// Id of the last batch, purged or not; `None` for a log that never held one.
    pub fn last_entry(&self) -> Option<EntryId> {
        self.segments
            .iter()
            .rev()
            .find_map(|s| s.last)
            .or(self.prev)
    }

    /// Offsets below this are durable under the fsync policy.
    pub fn durable_offset(&self) -> u64 {
        self.progress.borrow().durable_offset
    }

    /// The Raft metadata as last saved.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Replaces the Raft metadata atomically and durably.
    ///
    /// # Errors
    /// [`LogError::Io`] when the file cannot be written.
    pub async fn save_meta(&mut self, meta: Meta) -> Result<(), LogError> {
        let (dir, m) = (self.dir.clone(), meta.clone());
        blocking(move || m.store(&dir)).await?;
        self.meta = meta;
        Ok(())
    }

    /// Number of segments and bytes stored.
    pub fn stats(&self) -> LogStats {
        LogStats {
            segments: self.segments.len() as u32,
            bytes: self.segments.iter().map(|s| s.len).sum(),
        }
    }

    /// Number of segments (cheaper than [`stats`](Self::stats)).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The segments, oldest first; the last one is active.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                end_offset: s.end_offset,
                bytes: s.len,
                first_timestamp: s.first_timestamp,
            })
            .collect()
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }
}

#[cfg(test)]
mod tests;
