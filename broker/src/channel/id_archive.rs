//! The message ids of deleted log segments that are still inside the dedupe window.
//!
//! The id window is rebuilt on open by replaying the log, but purge and the retention limits
//! (`max_age`, `max_bytes`) delete log segments while ids stored in them may still be inside
//! `dedupe_window` (DESIGN §2: purge does not reset deduplication). Consumption alone never
//! does: retention keeps consumed segments until their ids leave the window
//! (`partition/purge.rs`). Before segments go, the partition writes their live ids here, once:
//! one immutable file per deletion, removed when its newest id has left the window. Each id is
//! written at most once, so the cost is a sequential write of ~18 bytes per archived id, however
//! large the window; a full copy of the window per deletion would grow with the window.
//!
//! ```text
//! <data_dir>/channels/<channel>/
//!   0/                          the partition's log directory
//!   0.ids/
//!     00000000000001048576.ids  ids stored at offsets from 1048576 (20 digits, so names sort)
//! ```
//!
//! A file is `magic "SLIDARC2" | count u64 LE | crc32c u32 LE of the records | records`, in
//! offset order, each record `id [16] | offset delta | stored-time delta`: LEB128 varints of the
//! difference to the previous record (to 0 for the first), the time delta zigzag-coded as clocks
//! may step back. Consecutive offsets and equal milliseconds make both deltas one byte. Files
//! are written to a `.tmp` name, fsynced, renamed and the directory fsynced, so a file either
//! exists whole or not at all.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::ChannelError;
use crate::log;

/// First bytes of every archive file.
const MAGIC: &[u8; 8] = b"SLIDARC2";
/// Magic, record count and checksum.
const HEADER: usize = 8 + 8 + 4;
/// The shortest record: id and two one-byte deltas.
const MIN_RECORD: usize = 16 + 1 + 1;

/// One archived id: `(id, offset, stored_at_ms)`.
pub type ArchivedId = ([u8; 16], u64, i64);

/// Ids encoded as an archive file, ready to be written (see [`IdArchive::encode`]).
#[derive(Debug)]
pub struct Encoded {
    /// Offset of the first id: the file's name.
    first: u64,
    /// Newest stored time among the ids.
    newest_at: i64,
    /// The whole file.
    bytes: Vec<u8>,
}

/// One archive file: where it is and the newest stored time in it.
#[derive(Debug, Clone)]
pub struct ArchiveFile {
    path: PathBuf,
    newest_at: i64,
}

/// A partition's archive of ids from deleted segments. See the [module docs](self).
#[derive(Debug)]
pub struct IdArchive {
    dir: PathBuf,
    files: Vec<ArchiveFile>,
}

impl IdArchive {
    /// The archive directory of the partition whose log lives in `log_dir` (beside it).
    pub fn dir_for(log_dir: &Path) -> PathBuf {
        let name = log_dir
            .file_name()
            .map_or_else(|| "partition".into(), |n| n.to_string_lossy().into_owned());
        log_dir.with_file_name(format!("{name}.ids"))
    }

    /// An archive in `dir` that knows no files yet (see [`IdArchive::load`]).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            files: Vec::new(),
        }
    }

    /// The directory the files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether any archive file exists (so someone should call [`IdArchive::forget_expired`]).
    pub fn has_files(&self) -> bool {
        !self.files.is_empty()
    }

    /// Reads every archive file, oldest offsets first, and returns their ids in offset order.
    /// Leftover `.tmp` files of an interrupted write are removed.
    ///
    /// # Errors
    /// [`ChannelError::Metadata`] when the directory or a file cannot be read, or a file fails
    /// its checksum or layout: never ignored, as it would forget ids purge must not reset.
    pub fn load(&mut self) -> Result<Vec<ArchivedId>, ChannelError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(error(&self.dir, e)),
        };
        let mut named = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| error(&self.dir, e))?.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                fs::remove_file(&path).map_err(|e| error(&path, e))?;
                continue;
            }
            let first = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|_| path.extension().is_some_and(|x| x == "ids"))
                .ok_or_else(|| error(&path, "not an id archive file"))?;
            named.push((first, path));
        }
        named.sort_unstable();
        let mut ids = Vec::new();
        self.files.clear();
        for (_, path) in named {
            let bytes = fs::read(&path).map_err(|e| error(&path, e))?;
            let records = decode(&bytes).map_err(|detail| error(&path, detail))?;
            let newest_at = records.iter().map(|r| r.2).max().unwrap_or(i64::MIN);
            ids.extend(records);
            self.files.push(ArchiveFile { path, newest_at });
        }
        Ok(ids)
    }

    /// Encodes `ids` (in offset order) as an archive file; `None` for no ids. Cheap enough for
    /// the partition task: one pass, one buffer.
    pub fn encode(ids: impl Iterator<Item = ArchivedId>) -> Option<Encoded> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&[0; 12]); // count and checksum, set below
        let (mut first, mut newest_at, mut count) = (None, i64::MIN, 0u64);
        let (mut prev_offset, mut prev_at) = (0u64, 0i64);
        for (id, offset, at) in ids {
            first.get_or_insert(offset);
            newest_at = newest_at.max(at);
            count += 1;
            bytes.extend_from_slice(&id);
            put_varint(&mut bytes, offset.wrapping_sub(prev_offset));
            put_varint(&mut bytes, zigzag(at.wrapping_sub(prev_at)));
            (prev_offset, prev_at) = (offset, at);
        }
        let first = first?;
        let crc = crc32c::crc32c(&bytes[HEADER..]);
        bytes[8..16].copy_from_slice(&count.to_le_bytes());
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
        Some(Encoded {
            first,
            newest_at,
            bytes,
        })
    }

    /// Writes an encoded file into the archive directory `dir`, durably; [`IdArchive::add`] it
    /// afterwards. Blocking: the partition runs it on the blocking pool.
    ///
    /// # Errors
    /// [`ChannelError::Metadata`] naming the file that could not be written.
    pub fn write(dir: &Path, encoded: &Encoded) -> Result<ArchiveFile, ChannelError> {
        let Encoded {
            first,
            newest_at,
            ref bytes,
        } = *encoded;
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| error(dir, e))?;
            let parent = dir.parent().unwrap_or(Path::new("."));
            log::sync_dir(parent).map_err(|e| ChannelError::metadata("id archive", parent, e))?;
        }
        let name = format!("{first:020}.ids");
        let path = dir.join(&name);
        log::atomic_write(dir, &name, bytes)
            .map_err(|e| ChannelError::metadata("id archive", &path, e))?;
        Ok(ArchiveFile { path, newest_at })
    }

    /// Knows `file` (just written by [`IdArchive::write`]) from now on. A file of the same name
    /// (a retried deletion) is replaced.
    pub fn add(&mut self, file: ArchiveFile) {
        self.files.retain(|f| f.path != file.path);
        self.files.push(file);
    }

    /// Deletes the files whose every id has left the window: `is_live(newest stored_at)` false.
    ///
    /// # Errors
    /// [`ChannelError::Metadata`] when a file cannot be deleted (it stays known, to retry).
    pub fn forget_expired(&mut self, is_live: impl Fn(i64) -> bool) -> Result<(), ChannelError> {
        let mut result = Ok(());
        self.files.retain(|f| {
            if is_live(f.newest_at) || result.is_err() {
                return true;
            }
            match fs::remove_file(&f.path) {
                Ok(()) => false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    result = Err(error(&f.path, e));
                    true
                }
            }
        });
        result
    }
}

fn decode(bytes: &[u8]) -> Result<Vec<ArchivedId>, String> {
    let Some((header, mut records)) = bytes.split_at_checked(HEADER) else {
        return Err(format!("{} bytes, shorter than its header", bytes.len()));
    };
    if &header[..8] != MAGIC {
        return Err("not an id archive (bad magic)".into());
    }
    let count = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
    if crc32c::crc32c(records) != crc {
        return Err("checksum mismatch".into());
    }
    if count > (records.len() / MIN_RECORD) as u64 {
        return Err(format!(
            "{count} records cannot fit in {} bytes",
            records.len()
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    let (mut offset, mut at) = (0u64, 0i64);
    for n in 0..count {
        let truncated = || format!("record {n} of {count} is cut short");
        let (id, rest) = records.split_first_chunk::<16>().ok_or_else(truncated)?;
        let (offset_delta, rest) = take_varint(rest).ok_or_else(truncated)?;
        let (at_delta, rest) = take_varint(rest).ok_or_else(truncated)?;
        offset = offset.wrapping_add(offset_delta);
        at = at.wrapping_add(unzigzag(at_delta));
        out.push((*id, offset, at));
        records = rest;
    }
    if !records.is_empty() {
        return Err(format!("{} bytes after the last record", records.len()));
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A LEB128 varint at the start of `bytes` and what follows it; `None` when cut short or longer
/// than a u64.
fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((v, &bytes[i + 1..]));
        }
    }
    None
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

fn error(path: &Path, detail: impl std::fmt::Display) -> ChannelError {
    ChannelError::Metadata {
        path: path.to_owned(),
        detail: format!("id archive: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> (tempfile::TempDir, IdArchive) {
        let dir = tempfile::tempdir().unwrap();
        let archive = IdArchive::new(IdArchive::dir_for(&dir.path().join("0")));
        (dir, archive)
    }

    impl IdArchive {
        fn put(&mut self, ids: &[ArchivedId]) {
            if let Some(encoded) = IdArchive::encode(ids.iter().copied()) {
                let file = IdArchive::write(&self.dir, &encoded).unwrap();
                self.add(file);
            }
        }
    }

    #[test]
    fn written_files_load_back_in_offset_order() {
        let (_dir, mut a) = archive();
        a.put(&[([2; 16], 10, 1_000), ([3; 16], 11, 1_001)]);
        a.put(&[([1; 16], 5, 900)]);
        a.put(&[]);
        let mut back = IdArchive::new(a.dir.clone());
        let ids = back.load().unwrap();
        assert_eq!(
            ids,
            vec![
                ([1; 16], 5, 900),
                ([2; 16], 10, 1_000),
                ([3; 16], 11, 1_001)
            ]
        );
        assert_eq!(back.files.len(), 2);
    }

    #[test]
    fn a_missing_directory_is_an_empty_archive() {
        let (_dir, mut a) = archive();
        assert!(a.load().unwrap().is_empty());
        assert!(!a.has_files());
    }

    #[test]
    fn files_go_once_their_newest_id_left_the_window() {
        let (_dir, mut a) = archive();
        a.put(&[([1; 16], 1, 100), ([2; 16], 2, 300)]);
        a.put(&[([3; 16], 3, 200)]);
        a.forget_expired(|at| at >= 250).unwrap();
        let mut back = IdArchive::new(a.dir.clone());
        assert_eq!(
            back.load().unwrap(),
            vec![([1; 16], 1, 100), ([2; 16], 2, 300)]
        );
        a.forget_expired(|_| false).unwrap();
        assert!(!a.has_files());
        assert!(back.load().unwrap().is_empty());
    }

    #[test]
    fn leftover_tmp_files_are_removed() {
        let (_dir, mut a) = archive();
        a.put(&[([1; 16], 1, 100)]);
        let tmp = a.dir.join("00000000000000000007.tmp");
        fs::write(&tmp, b"half written").unwrap();
        assert_eq!(a.load().unwrap().len(), 1);
        assert!(!tmp.exists());
    }

    /// Recomputes the checksum after a damage, so the layout checks behind it are reached.
    fn reseal(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[HEADER..]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn damaged_files_are_typed_errors_naming_the_file() {
        type Damage = fn(&mut Vec<u8>);
        let cases: [(&str, Damage); 6] = [
            ("checksum mismatch", |b| *b.last_mut().unwrap() ^= 1),
            ("shorter than its header", |b| b.truncate(5)),
            ("bad magic", |b| b[0] = b'X'),
            ("cannot fit", |b| {
                b[8..16].copy_from_slice(&1000u64.to_le_bytes())
            }),
            ("cut short", |b| {
                b.pop();
                reseal(b);
            }),
            ("after the last record", |b| {
                b.push(0);
                reseal(b);
            }),
        ];
        for (expected, damage) in cases {
            let (_dir, mut a) = archive();
            a.put(&[([1; 16], 1, 100), ([2; 16], 2, 200)]);
            let path = a.files[0].path.clone();
            let mut bytes = fs::read(&path).unwrap();
            damage(&mut bytes);
            fs::write(&path, bytes).unwrap();
            match a.load() {
                Err(ChannelError::Metadata { path: p, detail }) => {
                    assert_eq!(p, path);
                    assert!(detail.contains(expected), "{expected}: {detail}");
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
    }

    #[test]
    fn extreme_offsets_and_times_round_trip_in_about_18_bytes_per_id() {
        let ids: Vec<ArchivedId> = vec![
            ([1; 16], 0, i64::MIN),
            ([2; 16], 1, i64::MAX),
            ([3; 16], u64::MAX - 1, -5),
            ([4; 16], u64::MAX - 1, -6),
        ];
        let encoded = IdArchive::encode(ids.iter().copied()).unwrap();
        assert_eq!(decode(&encoded.bytes).unwrap(), ids);
        assert_eq!((encoded.first, encoded.newest_at), (0, i64::MAX));
        let steady: Vec<ArchivedId> = (0..1000u64)
            .map(|i| {
                (
                    [i as u8; 16],
                    5_000 + i,
                    1_700_000_000_000 + (i / 100) as i64,
                )
            })
            .collect();
        let encoded = IdArchive::encode(steady.iter().copied()).unwrap();
        assert_eq!(decode(&encoded.bytes).unwrap(), steady);
        assert!(
            encoded.bytes.len() < HEADER + 1000 * 18 + 20,
            "{}",
            encoded.bytes.len()
        );
        assert!(IdArchive::encode(std::iter::empty()).is_none());
    }

    #[test]
    fn a_write_that_fails_is_a_typed_error_and_adds_no_file() {
        let (_dir, a) = archive();
        // The archive directory's place is taken by a file: nothing can be created in it.
        fs::write(&a.dir, b"not a directory").unwrap();
        let encoded = IdArchive::encode([([1; 16], 1, 100)].into_iter()).unwrap();
        match IdArchive::write(&a.dir, &encoded) {
            Err(ChannelError::Metadata { detail, .. }) => {
                assert!(detail.starts_with("id archive: "), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!a.has_files());
    }

    #[test]
    fn a_stray_file_is_an_error() {
        let (_dir, mut a) = archive();
        a.put(&[([1; 16], 1, 100)]);
        fs::write(a.dir.join("notes.txt"), b"hello").unwrap();
        assert!(matches!(a.load(), Err(ChannelError::Metadata { .. })));
    }
}
