//! Log recovery on open: find the segments, check every batch, cut a torn tail, refuse damage.
//!
//! Every segment is scanned once: header, length, CRC32C, and stamp continuity (each batch's
//! base offset and entry index follow the previous batch's, terms never decrease), because the
//! stamped fields are outside the CRC. Scanning is sequential reading plus a hardware CRC, so
//! it runs at disk speed.
//!
//! - A bad batch in the **last** segment is a torn tail: it can only come from writes that
//!   were never acknowledged under `always`. The file is cut there and a warning logged.
//! - A bad batch in a **sealed** segment (the writer synced it before starting the next) is
//!   corruption: [`LogError::Corrupt`] naming the file and byte position, and the partition
//!   does not open.
//! - An `.index` file that is missing or disagrees with the scan is rewritten.
//! - An empty last segment after another one (a roll interrupted by a crash) is removed.
//! - Segments wholly below the persisted low-water mark (a purge interrupted by a crash) are
//!   deleted; leftover `*.tmp` files are removed.

use std::fs;
use std::path::Path;

use super::meta::{sync_dir, LogStart, Meta};
use super::segment::{open_file, paths, ScanError, Scanner, Segment};
use super::{EntryId, LogConfig, LogError};

/// Read size while scanning.
const SCAN_CHUNK: usize = 1 << 20;

/// Everything open needs from the directory.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The segments in order, at least one; the last is the active one.
    pub segments: Vec<Segment>,
    /// The persisted low-water mark and last purged entry.
    pub start: LogStart,
    /// Raft metadata.
    pub meta: Meta,
}

/// What the next batch must look like.
#[derive(Debug, Clone, Copy)]
struct Expect {
    /// Its base offset, once known.
    offset: Option<u64>,
    /// Its entry index, once known.
    entry: Option<u64>,
    /// The lowest term it may carry.
    term: u64,
}

/// Recovers the log in `dir`, creating the directory and a first segment when needed.
///
/// # Errors
/// [`LogError::Corrupt`] for damage outside the torn tail, [`LogError::Io`] when a file
/// cannot be read, written or listed.
pub(crate) fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered, LogError> {
    fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
    let bases = list(dir)?;
    let start = LogStart::load(dir)?;
    let meta = Meta::load(dir)?;
    let bases = drop_purged(dir, bases, start.low_water)?;
    let bases = drop_empty_tail(dir, bases)?;
    let mut expect = Expect {
        offset: None,
        entry: start.prev.map(|p| p.index + 1),
        term: start.prev.map_or(0, |p| p.term),
    };
    let mut segments = Vec::with_capacity(bases.len().max(1));
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let seg = recover_segment(dir, base, expect, last, config)?;
        expect = Expect {
            offset: Some(seg.end_offset),
            entry: Some(seg.end_entry()),
            term: seg.last.map_or(expect.term, |l| l.term),
        };
        segments.push(seg);
    }
    if segments.is_empty() {
        let entry = start.prev.map_or(0, |p| p.index + 1);
        let (path, _) = paths(dir, start.low_water);
        let file = open_file(&path, true)?;
        sync_dir(dir)?;
        segments.push(Segment::empty(dir, start.low_water, entry, file));
    }
    Ok(Recovered {
        segments,
        start,
        meta,
    })
}

/// Base offsets of the `.log` files in `dir`, sorted; removes temp files and orphan indexes.
fn list(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
        let path = entry.map_err(|e| LogError::io(dir, e))?.path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        match path.extension().and_then(|e| e.to_str()) {
            Some("log") => match stem.parse::<u64>() {
                Ok(base) => bases.push(base),
                Err(_) => tracing::warn!(path = %path.display(), "ignoring unrecognised file"),
            },
            Some("index") => indexes.push(path),
            Some("tmp") => remove(&path)?,
            _ => {}
        }
    }
    bases.sort_unstable();
    for index in indexes {
        if !index.with_extension("log").exists() {
            remove(&index)?;
        }
    }
    Ok(bases)
}

/// Deletes the segments that a purge had already given up, keeping at least the last one.
fn drop_purged(dir: &Path, bases: Vec<u64>, low_water: u64) -> Result<Vec<u64>, LogError> {
    let keep_from = (1..bases.len())
        .take_while(|&i| bases[i] < low_water)
        .last()
        .unwrap_or(0);
    for &base in &bases[..keep_from] {
        let (log, index) = paths(dir, base);
        tracing::warn!(path = %log.display(), "deleting segment below the low-water mark");
        remove(&index)?;
        remove(&log)?;
    }
    Ok(bases[keep_from..].to_vec())
}

/// Removes an empty last segment that follows another: the log creates the next segment's file
/// before the writer has synced the previous one, so after a crash the empty file may follow a
/// segment whose own tail is torn. The previous segment becomes the active one again.
fn drop_empty_tail(dir: &Path, mut bases: Vec<u64>) -> Result<Vec<u64>, LogError> {
    while bases.len() > 1 {
        let (log, index) = paths(dir, bases[bases.len() - 1]);
        let len = fs::metadata(&log).map_err(|e| LogError::io(&log, e))?.len();
        if len > 0 {
            break;
        }
        tracing::warn!(path = %log.display(), "removing an empty segment left by an interrupted roll");
        remove(&index)?;
        remove(&log)?;
        bases.pop();
    }
    Ok(bases)
}

/// Removes a file; a file that is already gone is fine.
pub(crate) fn remove(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LogError::io(path, e)),
        _ => Ok(()),
    }
}

/// Scans one segment, checking batches against `expect` and each other.
fn recover_segment(
    dir: &Path,
    base: u64,
    expect: Expect,
    last: bool,
    config: &LogConfig,
) -> Result<Segment, LogError> {
    let (log_path, _) = paths(dir, base);
    if let Some(offset) = expect.offset.filter(|&o| o != base) {
        let reason = format!("segment starts at offset {base}, previous one ends at {offset}");
        return Err(LogError::corrupt(&log_path, 0, reason));
    }
    let file = open_file(&log_path, false)?;
    let file_len = file
        .metadata()
        .map_err(|e| LogError::io(&log_path, e))?
        .len();
    let mut seg = Segment::empty(dir, base, expect.entry.unwrap_or(0), file);
    let file = seg.file.clone();
    let mut scanner = Scanner::new(&file, &log_path, 0, file_len, SCAN_CHUNK);
    let stop = loop {
        match scanner.next_batch() {
            Ok(None) => break None,
            Ok(Some((position, batch))) => {
                if let Err(reason) = check_continuity(&seg, &batch, expect) {
                    break Some(ScanError { position, reason });
                }
                if seg.last.is_none() {
                    seg.base_entry = batch.entry_index();
                }
                seg.on_batch(&batch, config.index_interval_bytes);
            }
            Err(Ok(bad)) => break Some(bad),
            Err(Err(io)) => return Err(io),
        }
    };
    match stop {
        Some(bad) if last => cut_torn_tail(&seg, bad, file_len)?,
        Some(bad) => return Err(LogError::corrupt(&log_path, bad.position, bad.reason)),
        None if !last && seg.len == 0 => {
            return Err(LogError::corrupt(&log_path, 0, "sealed segment is empty"));
        }
        None => {}
    }
    check_index(&seg, last)?;
    Ok(seg)
}

/// Why `batch` cannot follow what `seg` holds so far, if it cannot.
fn check_continuity(
    seg: &Segment,
    batch: &sluice_protocol::RecordBatch,
    expect: Expect,
) -> Result<(), String> {
    let (offset, entry, term) = match seg.last {
        Some(EntryId { index, term }) => (seg.end_offset, Some(index + 1), term),
        None => (seg.base_offset, expect.entry, expect.term),
    };
    if batch.base_offset() != offset {
        return Err(format!(
            "base offset {} where {offset} was expected",
            batch.base_offset()
        ));
    }
    if let Some(entry) = entry.filter(|&e| e != batch.entry_index()) {
        return Err(format!(
            "entry index {} where {entry} was expected",
            batch.entry_index()
        ));
    }
    if batch.term() < term {
        return Err(format!("term {} after term {term}", batch.term()));
    }
    Ok(())
}

/// Cuts the active segment's file at the first bad batch.
fn cut_torn_tail(seg: &Segment, bad: ScanError, file_len: u64) -> Result<(), LogError> {
    tracing::warn!(
        file = %seg.log_path.display(),
        position = bad.position,
        dropped_bytes = file_len - bad.position,
        reason = %bad.reason,
        "truncating torn tail of the log (never acknowledged)"
    );
    let io = |e| LogError::io(&seg.log_path, e);
    seg.file.set_len(bad.position).map_err(io)?;
    seg.file.sync_all().map_err(io)
}

/// Rewrites a sealed segment's index when missing or wrong; drops the active one's (it is
/// written again when the segment is sealed or the log closed).
fn check_index(seg: &Segment, last: bool) -> Result<(), LogError> {
    if last {
        return remove(&seg.index_path);
    }
    let stored = fs::read(&seg.index_path).ok();
    let points = stored.and_then(|b| super::index::OffsetIndex::decode(&b, seg.len));
    if points.is_some_and(|p| seg.index.same_points(&p)) {
        return Ok(());
    }
    tracing::warn!(file = %seg.index_path.display(), "index missing or damaged; rebuilt");
    fs::write(&seg.index_path, seg.index.encode(seg.len))
        .map_err(|e| LogError::io(&seg.index_path, e))
}
