//! The small files beside the segments, each replaced atomically (temp file, fsync, rename,
//! fsync of the directory):
//!
//! - `meta`: what Raft must not forget (vote, committed index), opaque to the log.
//! - `log-start`: the low-water mark and the id of the last purged entry, so `first_offset`
//!   and `last_entry` survive a reopen even when every segment has been purged.
//!
//! ```text
//! meta:      crc32c u32 | MessagePack of Meta
//! log-start: crc32c u32 | low_water u64 | has_prev u8 | prev_index u64 | prev_term u64
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use bytes::{Buf, BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::{EntryId, LogError};

/// File name of the Raft metadata.
pub(crate) const META_FILE: &str = "meta";
/// File name of the low-water mark checkpoint.
pub(crate) const LOG_START_FILE: &str = "log-start";

/// What Raft keeps beside its log: the vote it cast and the highest index it knows committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// `(term, node)` this node voted for, if any.
    pub vote: Option<(u64, u64)>,
    /// Highest entry index known to be committed.
    pub committed: Option<u64>,
}

/// Where the retained log starts: persisted by `purge_before`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LogStart {
    /// First readable offset (the low-water mark).
    pub low_water: u64,
    /// The entry just before the first retained batch, if any was purged.
    pub prev: Option<EntryId>,
}

/// Replaces `dir/name` with `contents` so that a crash leaves either the old or the new file.
///
/// # Errors
/// [`LogError::Io`] naming the file that failed.
pub(crate) fn atomic_write(dir: &Path, name: &str, contents: &[u8]) -> Result<(), LogError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let mut file = File::create(&tmp).map_err(|e| LogError::io(&tmp, e))?;
    file.write_all(contents)
        .map_err(|e| LogError::io(&tmp, e))?;
    file.sync_all().map_err(|e| LogError::io(&tmp, e))?;
    fs::rename(&tmp, &target).map_err(|e| LogError::io(&target, e))?;
    sync_dir(dir)
}

/// Makes renames, creations and deletions in `dir` durable.
///
/// # Errors
/// [`LogError::Io`] naming the directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, e))
}

/// Reads `dir/name` and checks its CRC; `Ok(None)` when the file does not exist.
fn read_checked(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, LogError> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(&path, e)),
    };
    if bytes.len() < 4 {
        return Err(LogError::corrupt(&path, 0, "shorter than its checksum"));
    }
    let (crc, body) = bytes.split_at(4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if stored != crc32c::crc32c(body) {
        return Err(LogError::corrupt(&path, 0, "checksum mismatch"));
    }
    Ok(Some(body.to_vec()))
}

fn with_crc(body: &[u8]) -> Vec<u8> {
    let mut out = crc32c::crc32c(body).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

impl Meta {
    /// Loads `meta` from `dir`; the default when it does not exist.
    ///
    /// # Errors
    /// [`LogError::Corrupt`] when the file is damaged (a lost vote is a safety bug, so it is
    /// never silently reset), [`LogError::Io`] when it cannot be read.
    pub(crate) fn load(dir: &Path) -> Result<Self, LogError> {
        let Some(body) = read_checked(dir, META_FILE)? else {
            return Ok(Self::default());
        };
        rmp_serde::from_slice(&body).map_err(|e| LogError::corrupt(dir.join(META_FILE), 4, e))
    }

    /// Writes `meta` to `dir` atomically.
    ///
    /// # Errors
    /// [`LogError::Io`] when the file cannot be written.
    pub(crate) fn store(&self, dir: &Path) -> Result<(), LogError> {
        let body =
            rmp_serde::to_vec(self).map_err(|e| LogError::io(dir, std::io::Error::other(e)))?;
        atomic_write(dir, META_FILE, &with_crc(&body))
    }
}

impl LogStart {
    /// Loads `log-start` from `dir`; the default (nothing purged) when it does not exist.
    ///
    /// # Errors
    /// [`LogError::Corrupt`] when the file is damaged, [`LogError::Io`] when unreadable.
    pub(crate) fn load(dir: &Path) -> Result<Self, LogError> {
        let Some(body) = read_checked(dir, LOG_START_FILE)? else {
            return Ok(Self::default());
        };
        if body.len() != 25 {
            return Err(LogError::corrupt(
                dir.join(LOG_START_FILE),
                4,
                "wrong length",
            ));
        }
        let mut b = &body[..];
        let low_water = b.get_u64_le();
        let has_prev = b.get_u8() != 0;
        let (index, term) = (b.get_u64_le(), b.get_u64_le());
        let prev = has_prev.then_some(EntryId { index, term });
        Ok(Self { low_water, prev })
    }

    /// Writes `log-start` to `dir` atomically.
    ///
    /// # Errors
    /// [`LogError::Io`] when the file cannot be written.
    pub(crate) fn store(&self, dir: &Path) -> Result<(), LogError> {
        let mut b = BytesMut::with_capacity(25);
        b.put_u64_le(self.low_water);
        b.put_u8(u8::from(self.prev.is_some()));
        let prev = self.prev.unwrap_or(EntryId { index: 0, term: 0 });
        b.put_u64_le(prev.index);
        b.put_u64_le(prev.term);
        atomic_write(dir, LOG_START_FILE, &with_crc(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_survives_a_store_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Meta::load(dir.path()).unwrap(), Meta::default());
        let meta = Meta {
            vote: Some((3, 2)),
            committed: Some(17),
        };
        meta.store(dir.path()).unwrap();
        assert_eq!(Meta::load(dir.path()).unwrap(), meta);
        assert!(!dir.path().join("meta.tmp").exists());
    }

    #[test]
    fn a_damaged_meta_file_is_reported_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        Meta {
            vote: Some((1, 1)),
            committed: None,
        }
        .store(dir.path())
        .unwrap();
        let path = dir.path().join(META_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            Meta::load(dir.path()),
            Err(LogError::Corrupt { .. })
        ));
    }

    #[test]
    fn log_start_round_trips_with_and_without_a_previous_entry() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LogStart::load(dir.path()).unwrap(), LogStart::default());
        for prev in [None, Some(EntryId { index: 9, term: 4 })] {
            let start = LogStart {
                low_water: 120,
                prev,
            };
            start.store(dir.path()).unwrap();
            assert_eq!(LogStart::load(dir.path()).unwrap(), start);
        }
    }
}
