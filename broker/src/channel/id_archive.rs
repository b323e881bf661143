//! The message ids of deleted log segments that are still inside the dedupe window.
//!
//! The id window is rebuilt on open by replaying the log, but purge and retention delete log
//! segments while ids stored in them may still be inside `dedupe_window` (DESIGN §2: purge does
//! not reset deduplication). Before segments go, the partition writes their live ids here, once:
//! one immutable file per deletion, removed when its newest id has left the window. Each id is
//! written at most once, so the cost is a sequential write of 32 bytes per archived id, however
//! large the window; a full copy of the window per deletion would grow with the window.
//!
//! ```text
//! <data_dir>/channels/<channel>/
//!   0/                          the partition's log directory
//!   0.ids/
//!     00000000000001048576.ids  ids stored at offsets from 1048576 (20 digits, so names sort)
//! ```
//!
//! A file is `magic "SLIDARC1" | count u64 LE | crc32c u32 LE of the records | records`, each
//! record `id [16] | offset u64 LE | stored_at_ms i64 LE`, in offset order. Files are written to
//! a `.tmp` name, fsynced, renamed and the directory fsynced, so a file either exists whole or
//! not at all.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::ChannelError;

/// First bytes of every archive file.
const MAGIC: &[u8; 8] = b"SLIDARC1";
/// Magic, record count and checksum.
const HEADER: usize = 8 + 8 + 4;
/// One record: id, offset, stored time.
const RECORD: usize = 16 + 8 + 8;

/// One archived id: `(id, offset, stored_at_ms)`.
pub type ArchivedId = ([u8; 16], u64, i64);

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

    /// Writes `ids` (in offset order) as a new file in the archive directory `dir`, durably;
    /// [`IdArchive::add`] it afterwards. `None` for no ids. Blocking: the partition runs it on
    /// the blocking pool.
    ///
    /// # Errors
    /// [`ChannelError::Metadata`] naming the file that could not be written.
    pub fn write(dir: &Path, ids: &[ArchivedId]) -> Result<Option<ArchiveFile>, ChannelError> {
        let Some(&(_, first, _)) = ids.first() else {
            return Ok(None);
        };
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| error(dir, e))?;
            sync_dir(dir.parent().unwrap_or(Path::new(".")))?;
        }
        let path = dir.join(format!("{first:020}.ids"));
        let tmp = path.with_extension("tmp");
        let mut file = File::create(&tmp).map_err(|e| error(&tmp, e))?;
        file.write_all(&encode(ids)).map_err(|e| error(&tmp, e))?;
        file.sync_all().map_err(|e| error(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| error(&path, e))?;
        sync_dir(dir)?;
        let newest_at = ids.iter().map(|r| r.2).max().unwrap_or(i64::MIN);
        Ok(Some(ArchiveFile { path, newest_at }))
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

fn encode(ids: &[ArchivedId]) -> Vec<u8> {
    let mut records = Vec::with_capacity(ids.len() * RECORD);
    for (id, offset, at) in ids {
        records.extend_from_slice(id);
        records.extend_from_slice(&offset.to_le_bytes());
        records.extend_from_slice(&at.to_le_bytes());
    }
    let mut out = Vec::with_capacity(HEADER + records.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&records).to_le_bytes());
    out.extend_from_slice(&records);
    out
}

fn decode(bytes: &[u8]) -> Result<Vec<ArchivedId>, String> {
    let Some((header, records)) = bytes.split_at_checked(HEADER) else {
        return Err(format!("{} bytes, shorter than its header", bytes.len()));
    };
    if &header[..8] != MAGIC {
        return Err("not an id archive (bad magic)".into());
    }
    let count = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
    if Some(records.len() as u64) != count.checked_mul(RECORD as u64) {
        return Err(format!(
            "{count} records need {} bytes, found {}",
            count.saturating_mul(RECORD as u64),
            records.len()
        ));
    }
    if crc32c::crc32c(records) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(records
        .chunks_exact(RECORD)
        .map(|r| {
            let id: [u8; 16] = r[..16].try_into().expect("16 bytes");
            let offset = u64::from_le_bytes(r[16..24].try_into().expect("8 bytes"));
            let at = i64::from_le_bytes(r[24..32].try_into().expect("8 bytes"));
            (id, offset, at)
        })
        .collect())
}

fn sync_dir(dir: &Path) -> Result<(), ChannelError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| error(dir, e))
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
            if let Some(file) = IdArchive::write(&self.dir, ids).unwrap() {
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

    #[test]
    fn damaged_files_are_typed_errors_naming_the_file() {
        type Damage = fn(&mut Vec<u8>);
        let cases: [(&str, Damage); 4] = [
            ("checksum mismatch", |b| *b.last_mut().unwrap() ^= 1),
            ("shorter than its header", |b| b.truncate(5)),
            ("bad magic", |b| b[0] = b'X'),
            ("records need", |b| b.truncate(b.len() - 1)),
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
    fn a_stray_file_is_an_error() {
        let (_dir, mut a) = archive();
        a.put(&[([1; 16], 1, 100)]);
        fs::write(a.dir.join("notes.txt"), b"hello").unwrap();
        assert!(matches!(a.load(), Err(ChannelError::Metadata { .. })));
    }
}
