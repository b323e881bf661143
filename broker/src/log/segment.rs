//! One segment: a `<base>.log` file of record batches back to back, named by the base offset
//! of its first batch, and its in-memory sparse index. Also the [`Scanner`] that walks batches
//! in a file, used by recovery and by reads.
//!
//! ```text
//! 00000000000000000000.log   batches with offsets 0..1200
//! 00000000000000000000.index sparse index of it (written when sealed)
//! 00000000000000001200.log   the active segment: the only one appended to
//! ```
//!
//! A segment knows files and positions; offsets, entries and terms are read from the batch
//! headers. It does not know about fsync policies or the writer.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sluice_protocol::batch::{peek_length, HEADER_LEN};
use sluice_protocol::RecordBatch;

use super::index::{IndexEntry, OffsetIndex};
use super::{EntryId, LogError};

/// A segment's file and what the log knows about its contents.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first batch (the file name); the log's next offset when empty.
    pub base_offset: u64,
    /// Entry index of the first batch; the log's next entry when empty.
    pub base_entry: u64,
    /// The `.log` file path.
    pub log_path: PathBuf,
    /// The `.index` file path.
    pub index_path: PathBuf,
    /// Open for reading and writing; shared with readers and the writer thread.
    pub file: Arc<File>,
    /// Bytes of batches in the segment (queued ones included).
    pub len: u64,
    /// Sparse index over the batches.
    pub index: OffsetIndex,
    /// Timestamp of the first batch, for age-based rolling.
    pub first_timestamp: Option<i64>,
    /// Offset after the last batch.
    pub end_offset: u64,
    /// Id of the last batch, if any.
    pub last: Option<EntryId>,
}

/// The `.log` and `.index` paths of the segment with base offset `base`.
pub(crate) fn paths(dir: &Path, base: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{base:020}.log")),
        dir.join(format!("{base:020}.index")),
    )
}

/// Opens a segment file for reading and writing, creating it when asked.
///
/// # Errors
/// [`LogError::Io`] naming the file.
pub(crate) fn open_file(path: &Path, create: bool) -> Result<File, LogError> {
    File::options()
        .read(true)
        .write(true)
        .create(create)
        .open(path)
        .map_err(|e| LogError::io(path, e))
}

impl Segment {
    /// An empty segment over `file`, whose first batch will have these numbers.
    pub fn empty(dir: &Path, base_offset: u64, base_entry: u64, file: File) -> Self {
        let (log_path, index_path) = paths(dir, base_offset);
        Self {
            base_offset,
            base_entry,
            log_path,
            index_path,
            file: Arc::new(file),
            len: 0,
            index: OffsetIndex::default(),
            first_timestamp: None,
            end_offset: base_offset,
            last: None,
        }
    }

    /// Accounts for `batch`, placed at the end of the segment.
    pub fn on_batch(&mut self, batch: &RecordBatch, index_interval: usize) {
        let point = IndexEntry {
            offset: batch.base_offset(),
            entry: batch.entry_index(),
            position: self.len,
        };
        self.index.on_batch(point, batch.len(), index_interval);
        self.len += batch.len() as u64;
        self.first_timestamp.get_or_insert(batch.first_timestamp());
        self.end_offset = batch.next_offset();
        self.last = Some(EntryId {
            index: batch.entry_index(),
            term: batch.term(),
        });
    }

    /// Entry index after the last batch.
    pub fn end_entry(&self) -> u64 {
        self.last.map_or(self.base_entry, |l| l.index + 1)
    }
}

/// Why a scan stopped before the end of the file.
#[derive(Debug)]
pub(crate) struct ScanError {
    /// File position of the bad batch.
    pub position: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Walks the batches of a file region, reading it in large chunks; returned batches share the
/// chunk buffers (no copy per batch).
pub(crate) struct Scanner<'a> {
    /// The file being scanned.
    file: &'a File,
    /// For error messages.
    path: &'a Path,
    /// Position of the next batch.
    pos: u64,
    /// End of the region.
    end: u64,
    /// Bytes read ahead, starting at file position `buf_at`.
    buf: Bytes,
    /// File position of `buf[0]`.
    buf_at: u64,
    /// Preferred read size.
    chunk: usize,
}

impl<'a> Scanner<'a> {
    /// Scans `file` from `pos` to `end`, reading `chunk` bytes at a time.
    pub fn new(file: &'a File, path: &'a Path, pos: u64, end: u64, chunk: usize) -> Self {
        Self {
            file,
            path,
            pos,
            end,
            buf: Bytes::new(),
            buf_at: pos,
            chunk: chunk.max(HEADER_LEN),
        }
    }

    /// The next batch and its position; `Ok(None)` at the end of the region.
    ///
    /// # Errors
    /// `Err(Ok(ScanError))` for bytes that are not a valid batch, `Err(Err(LogError::Io))`
    /// when the file cannot be read.
    pub fn next_batch(
        &mut self,
    ) -> Result<Option<(u64, RecordBatch)>, Result<ScanError, LogError>> {
        let remaining = self.end - self.pos;
        if remaining == 0 {
            return Ok(None);
        }
        let position = self.pos;
        let bad = |reason: String| Err(Ok(ScanError { position, reason }));
        if remaining < HEADER_LEN as u64 {
            return bad(format!("{remaining} bytes left, less than a batch header"));
        }
        let head = self.window(HEADER_LEN).map_err(Err)?;
        let len = peek_length(&head).unwrap_or(0);
        if len < HEADER_LEN {
            return bad(format!("length field {len} is shorter than a batch header"));
        }
        if len as u64 > remaining {
            return bad(format!("batch of {len} bytes cut off after {remaining}"));
        }
        let bytes = self.window(len).map_err(Err)?;
        match RecordBatch::from_bytes_crc_only(bytes) {
            Ok(batch) => {
                let at = self.pos;
                self.pos += len as u64;
                Ok(Some((at, batch)))
            }
            Err(e) => bad(e.to_string()),
        }
    }

    /// `len` bytes at the current position, reading the file when the buffer lacks them.
    fn window(&mut self, len: usize) -> Result<Bytes, LogError> {
        let skip = (self.pos - self.buf_at) as usize;
        if self.pos < self.buf_at || skip + len > self.buf.len() {
            let want = len.max(self.chunk) as u64;
            let size = want.min(self.end - self.pos) as usize;
            let mut buf = BytesMut::zeroed(size);
            self.file
                .read_exact_at(&mut buf, self.pos)
                .map_err(|e| LogError::io(self.path, e))?;
            self.buf = buf.freeze();
            self.buf_at = self.pos;
            return Ok(self.buf.slice(..len));
        }
        Ok(self.buf.slice(skip..skip + len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::{BatchBuilder, Stamp};
    use std::io::Write;

    fn batch(base: u64, entry: u64, body: &[u8]) -> RecordBatch {
        let mut b = BatchBuilder::messages();
        b.push_raw(body);
        b.finish().unwrap().stamp(Stamp {
            base_offset: base,
            entry_index: entry,
            term: 1,
            timestamp: 5,
        })
    }

    #[test]
    fn scanner_walks_batches_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut file = File::create(&path).unwrap();
        for i in 0..50 {
            file.write_all(batch(i, i, &[i as u8; 37]).as_bytes())
                .unwrap();
        }
        let file = File::open(&path).unwrap();
        let end = file.metadata().unwrap().len();
        let mut scanner = Scanner::new(&file, &path, 0, end, 100);
        let mut seen = 0;
        while let Some((_, b)) = scanner.next_batch().unwrap() {
            assert_eq!(b.base_offset(), seen);
            assert_eq!(b.raw_records().next().unwrap()[0], seen as u8);
            seen += 1;
        }
        assert_eq!(seen, 50);
    }

    #[test]
    fn scanner_reports_a_cut_off_batch_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let one = batch(0, 0, b"hello");
        let mut bytes = one.as_bytes().to_vec();
        bytes.extend_from_slice(&one.as_bytes()[..one.len() - 1]);
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let mut scanner = Scanner::new(&file, &path, 0, bytes.len() as u64, 4096);
        assert!(scanner.next_batch().unwrap().is_some());
        let err = scanner.next_batch().unwrap_err().unwrap();
        assert_eq!(err.position, one.len() as u64);
    }

    #[test]
    fn segment_tracks_its_end_and_last_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = paths(dir.path(), 10);
        assert!(path.ends_with("00000000000000000010.log"));
        let mut seg = Segment::empty(dir.path(), 10, 4, open_file(&path, true).unwrap());
        assert_eq!(seg.end_entry(), 4);
        seg.on_batch(&batch(10, 4, b"a"), 4096);
        assert_eq!(seg.end_offset, 11);
        assert_eq!(seg.end_entry(), 5);
        assert_eq!(seg.first_timestamp, Some(5));
    }
}
