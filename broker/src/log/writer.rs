//! The writer thread of one partition log: the only code that writes `.log` files.
//!
//! `Log::append` stamps a batch, queues its `Bytes` on a channel and returns; it makes no
//! syscall and copies no payload (the channel wakes the thread only when it sleeps). The thread
//! drains everything queued, writes it with vectored writes (`writev`), then, under
//! [`FsyncPolicy::Always`], issues one `fdatasync` for the whole group and publishes the new
//! durable point: that is the group commit. While it syncs, new appends pile up in the channel
//! and become the next group.
//!
//! A dedicated OS thread (rather than `spawn_blocking` per group) keeps the file handle, the
//! position and the batching state in one place, never occupies a runtime thread and costs one
//! thread per open partition, which a broker with hundreds of partitions can afford.
//!
//! Progress is published on a `watch` channel: `written` (the OS has the bytes, readers may
//! `pread` them), `durable` (the policy's promise holds). An I/O error is sticky: every waiting
//! and later append fails, and the partition must be reopened (which runs recovery).

use std::fs::File;
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::meta::sync_dir;
use super::{FsyncPolicy, LogError};

/// What the writer has achieved so far, by append sequence number.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Appends up to this sequence number are in the OS (readable with `pread`).
    pub written: u64,
    /// Appends up to this sequence number are durable under the policy.
    pub durable: u64,
    /// Offsets below this are durable under the policy.
    pub durable_offset: u64,
    /// The first I/O failure; sticky.
    pub failed: Option<Arc<(PathBuf, std::io::ErrorKind, String)>>,
}

impl Progress {
    /// The sticky failure as a fresh error value.
    pub fn error(&self) -> Option<LogError> {
        self.failed.as_ref().map(|f| LogError::Io {
            path: f.0.clone(),
            source: std::io::Error::new(f.1, f.2.clone()),
        })
    }
}

/// The file the writer appends to.
pub(crate) struct Target {
    /// Shared with readers, who `pread` it.
    pub file: Arc<File>,
    /// For error messages.
    pub path: PathBuf,
}

/// A request to the writer thread, handled in order.
pub(crate) enum Cmd {
    /// Append one batch at the end of the current segment.
    Write {
        seq: u64,
        bytes: Bytes,
        next_offset: u64,
    },
    /// Seal the current segment (sync it, write its index) and continue in `next`.
    Roll {
        next: Target,
        index_path: PathBuf,
        index: Bytes,
    },
    /// Write and sync everything queued before, whatever the policy; then reply.
    Sync { reply: oneshot::Sender<()> },
    /// Cut the current file to `len` (after everything queued is written), sync, reply.
    Truncate {
        target: Target,
        len: u64,
        durable_offset: u64,
        reply: oneshot::Sender<()>,
    },
    /// Sync everything and stop.
    Close { reply: oneshot::Sender<()> },
}

/// Completes when an append is durable under the log's fsync policy.
///
/// Owns what it needs (a progress subscription and the append's sequence number), so it can
/// be awaited after the log moved on or in another task. A holder of many (the partition's
/// pending writes) can instead poll [`Durable::ready`] and [`Durable::wait`] on the oldest one
/// and so allocate nothing per append.
#[must_use = "an append is not acknowledged until its Durable completes"]
pub struct Durable {
    /// Where the writer publishes its progress.
    rx: watch::Receiver<Progress>,
    /// The append's sequence number: durable once progress reaches it.
    seq: u64,
    /// The wait, created on the first poll when awaited as a future.
    waiting: Option<Wait>,
}

/// A boxed wait for durability, for awaiting a [`Durable`] as a future.
type Wait = Pin<Box<dyn std::future::Future<Output = Result<(), LogError>> + Send>>;

impl Durable {
    /// A future that completes once progress reaches `seq`.
    pub(crate) fn new(rx: watch::Receiver<Progress>, seq: u64) -> Self {
        Self {
            rx,
            seq,
            waiting: None,
        }
    }

    /// The outcome if it is already known: no waiting, no allocation.
    pub fn ready(&self) -> Option<Result<(), LogError>> {
        outcome(&self.rx.borrow(), self.seq)
    }

    /// Waits for the outcome. Cancel safe: dropping the wait loses nothing.
    pub async fn wait(&mut self) -> Result<(), LogError> {
        let seq = self.seq;
        match self.rx.wait_for(|p| outcome(p, seq).is_some()).await {
            Ok(progress) => outcome(&progress, seq).unwrap_or(Err(LogError::Closed)),
            Err(_) => Err(LogError::Closed),
        }
    }
}

/// Whether append `seq` is durable (`Ok`) or failed (`Err`) at `progress`; `None` while unknown.
fn outcome(progress: &Progress, seq: u64) -> Option<Result<(), LogError>> {
    if progress.durable >= seq {
        return Some(Ok(()));
    }
    progress
        .failed
        .as_ref()
        .map(|_| Err(progress.error().unwrap_or(LogError::Closed)))
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").field("seq", &self.seq).finish()
    }
}

impl std::future::Future for Durable {
    type Output = Result<(), LogError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let waiting = this.waiting.get_or_insert_with(|| {
            let mut own = Durable::new(this.rx.clone(), this.seq);
            Box::pin(async move { own.wait().await })
        });
        waiting.as_mut().poll(cx)
    }
}

/// The state of the writer thread.
pub(crate) struct Writer {
    /// Requests from the log.
    rx: Receiver<Cmd>,
    /// Where progress is published.
    progress: watch::Sender<Progress>,
    /// The active segment.
    target: Target,
    /// The partition directory (synced after a roll).
    dir: PathBuf,
    /// When to sync.
    policy: FsyncPolicy,
    /// Batches of the current group, written together.
    group: Vec<Bytes>,
    /// Highest sequence number written to the OS.
    written: u64,
    /// Offset after the last written batch.
    written_offset: u64,
    /// Whether bytes were written since the last sync.
    dirty: bool,
    /// When the last sync happened (for the interval policy).
    last_sync: Instant,
    /// Time per `fdatasync`.
    fsync_seconds: metrics::Histogram,
    /// Time per group write (`writev` calls of one group).
    write_seconds: metrics::Histogram,
}

/// The most commands handled before the group is written and synced.
const MAX_GROUP: usize = 4096;

impl Writer {
    /// Starts the writer thread for `target`, whose cursor is at the end of its valid data.
    pub(crate) fn spawn(
        rx: Receiver<Cmd>,
        progress: watch::Sender<Progress>,
        target: Target,
        dir: PathBuf,
        policy: FsyncPolicy,
    ) -> std::io::Result<()> {
        let start = progress.borrow().clone();
        let writer = Writer {
            rx,
            progress,
            target,
            dir,
            policy,
            group: Vec::with_capacity(MAX_GROUP),
            written: start.written,
            written_offset: start.durable_offset,
            dirty: false,
            last_sync: Instant::now(),
            fsync_seconds: metrics::histogram!("sluice_log_fsync_duration_seconds"),
            write_seconds: metrics::histogram!("sluice_log_write_duration_seconds"),
        };
        std::thread::Builder::new()
            .name("sluice-log-writer".into())
            .spawn(move || writer.run())
            .map(drop)
    }

    /// The thread body: handle groups until closed, disconnected or failed.
    fn run(mut self) {
        while let Some(first) = self.next_command() {
            match self.handle_group(first) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return self.fail(e),
            }
        }
        // The log was dropped without close: keep the policy's promise for what was queued.
        if let Err(e) = self.finish_group(true) {
            self.fail(e);
        }
    }

    /// Waits for the next command; under the interval policy, syncs when the interval passes.
    fn next_command(&mut self) -> Option<Cmd> {
        loop {
            let wait = match self.policy {
                FsyncPolicy::Interval(every) if self.dirty => {
                    every.saturating_sub(self.last_sync.elapsed())
                }
                _ => return self.rx.recv().ok(),
            };
            match self.rx.recv_timeout(wait) {
                Ok(cmd) => return Some(cmd),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.sync() {
                        self.fail(e);
                        return None;
                    }
                }
            }
        }
    }

    /// Handles `first` and whatever else is queued; false once closed.
    fn handle_group(&mut self, first: Cmd) -> Result<bool, LogError> {
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(cmd) = next.take() {
            if !self.handle(cmd)? {
                return Ok(false);
            }
            handled += 1;
            if handled < MAX_GROUP {
                next = self.rx.try_recv().ok();
            }
        }
        self.finish_group(false)?;
        Ok(true)
    }

    /// Handles one command; false for `Close`.
    fn handle(&mut self, cmd: Cmd) -> Result<bool, LogError> {
        match cmd {
            Cmd::Write {
                seq,
                bytes,
                next_offset,
            } => {
                self.group.push(bytes);
                self.written = seq;
                self.written_offset = next_offset;
            }
            Cmd::Roll {
                next,
                index_path,
                index,
            } => self.roll(next, index_path, index)?,
            Cmd::Sync { reply } => {
                self.flush()?;
                self.sync()?;
                let _ = reply.send(());
            }
            Cmd::Truncate {
                target,
                len,
                durable_offset,
                reply,
            } => {
                self.truncate(target, len, durable_offset)?;
                let _ = reply.send(());
            }
            Cmd::Close { reply } => {
                self.finish_group(true)?;
                let _ = reply.send(());
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes the group, syncs if the policy (or `force`) says so, publishes progress.
    fn finish_group(&mut self, force: bool) -> Result<(), LogError> {
        self.flush()?;
        let now = match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        if now || force {
            self.sync()?;
        }
        self.publish();
        Ok(())
    }

    /// Tells waiting appends and readers how far the writer got.
    fn publish(&mut self) {
        let (written, offset) = (self.written, self.written_offset);
        let durable = !self.dirty || !matches!(self.policy, FsyncPolicy::Always);
        self.progress.send_if_modified(|p| {
            let before = (p.written, p.durable);
            p.written = written;
            if durable {
                p.durable = written;
                p.durable_offset = offset;
            }
            before != (p.written, p.durable)
        });
    }

    /// Writes the queued batches with as few `writev` calls as the kernel allows.
    fn flush(&mut self) -> Result<(), LogError> {
        if self.group.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut slices: Vec<IoSlice<'_>> = self.group.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        let mut file = &*self.target.file;
        while !rest.is_empty() {
            let n = file
                .write_vectored(rest)
                .map_err(|e| LogError::io(&self.target.path, e))?;
            if n == 0 {
                let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                return Err(LogError::io(&self.target.path, e));
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        self.group.clear();
        self.dirty = true;
        self.write_seconds.record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// `fdatasync` of the active segment.
    fn sync(&mut self) -> Result<(), LogError> {
        if self.dirty {
            let (file, started) = (&self.target.file, Instant::now());
            file.sync_data()
                .map_err(|e| LogError::io(&self.target.path, e))?;
            self.fsync_seconds.record(started.elapsed().as_secs_f64());
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        self.publish();
        Ok(())
    }

    /// Seals the current segment and switches to `next`. The sealed segment is synced whatever
    /// the policy, so that only the last segment can ever hold a torn tail.
    fn roll(&mut self, next: Target, index_path: PathBuf, index: Bytes) -> Result<(), LogError> {
        self.flush()?;
        self.dirty = true;
        self.sync()?;
        if let Err(e) = std::fs::write(&index_path, &index) {
            tracing::warn!(path = %index_path.display(), error = %e, "index not written; recovery rebuilds it");
        }
        self.target = next;
        sync_dir(&self.dir)
    }

    /// Cuts `target` to `len` bytes and continues there.
    fn truncate(&mut self, target: Target, len: u64, durable_offset: u64) -> Result<(), LogError> {
        self.flush()?;
        let io = |e| LogError::io(&target.path, e);
        target.file.set_len(len).map_err(io)?;
        (&*target.file).seek(SeekFrom::Start(len)).map_err(io)?;
        target.file.sync_all().map_err(io)?;
        self.target = target;
        self.dirty = false;
        self.written_offset = durable_offset;
        let written = self.written;
        self.progress.send_modify(|p| {
            p.written = written;
            p.durable = written;
            p.durable_offset = durable_offset;
        });
        sync_dir(&self.dir)
    }

    /// Records a sticky failure; every waiting append learns of it.
    fn fail(&mut self, e: LogError) {
        tracing::error!(error = %e, "log writer failed; the partition must be reopened");
        let failed = match e {
            LogError::Io { path, source } => (path, source.kind(), source.to_string()),
            other => (
                self.target.path.clone(),
                std::io::ErrorKind::Other,
                other.to_string(),
            ),
        };
        self.progress
            .send_modify(|p| p.failed = Some(Arc::new(failed)));
    }
}
