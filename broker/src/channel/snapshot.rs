//! Partition state snapshots: everything replaying the log up to an entry would rebuild, saved
//! before segments are deleted (purge, retention), so deleting them loses no state.
//!
//! A snapshot holds the durable subscriptions with their cursors' logged state, the producer
//! sessions, and the log position it covers. Opening a partition loads it and replays only the
//! commands after it. The message-id window is not in it: replay rebuilds it from every message
//! batch still in the log, and the ids of deleted segments are in the partition's
//! [id archive](crate::channel::id_archive), written once per deletion (a copy of the whole
//! window in every snapshot would cost the window's size each time a segment goes).
//! It knows nothing of the log's files: the partition passes a path and the numbers.
//!
//! ```text
//! <data_dir>/channels/<channel>/
//!   channel.meta
//!   0/                  the partition's log directory (segments, meta, log-start)
//!   0.snapshot          crc32c u32 (LE) | MessagePack of StateSnapshot
//! ```
//!
//! The file is replaced atomically: written to `<partition>.snapshot.tmp`, fsynced, renamed over
//! the old one, and the directory fsynced.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cursor::{Cursor, LoggedState};
use super::dedupe::{ProducerSession, ProducerState};
use super::error::ChannelError;
use super::subscription::{Lifetime, Subscription};
use crate::log;

/// Format version written in every snapshot; a reader refuses others.
const VERSION: u32 = 1;

/// One durable subscription's logged state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionState {
    /// Subscription name.
    pub name: String,
    /// Default lease of its deliveries, in milliseconds.
    pub lease_ms: u64,
    /// Everything below is done.
    pub ack_floor: u64,
    /// Acked `[from, to)` ranges above the floor.
    pub acked: Vec<(u64, u64)>,
    /// Logged returns per offset (delivery count - 1).
    pub returns: Vec<(u64, u32)>,
}

impl SubscriptionState {
    /// The logged state of `sub`.
    pub fn of(name: &str, sub: &Subscription) -> Self {
        let logged = sub.cursor.logged();
        Self {
            name: name.to_owned(),
            lease_ms: sub.lease.as_millis() as u64,
            ack_floor: logged.ack_floor,
            acked: logged.acked,
            returns: logged.returns,
        }
    }

    /// A durable subscription with this state and no consumers.
    pub fn to_subscription(&self) -> Subscription {
        let lease = Duration::from_millis(self.lease_ms);
        let mut sub = Subscription::new(Lifetime::Durable, lease, self.ack_floor);
        sub.cursor = Cursor::from_logged(&LoggedState {
            ack_floor: self.ack_floor,
            acked: self.acked.clone(),
            returns: self.returns.clone(),
        });
        sub
    }
}

/// A partition's replayable state as of `next_entry`. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The snapshot covers log entries below this index; replay resumes here.
    pub next_entry: u64,
    /// The committed offset (the log's next offset) when it was taken.
    pub committed: u64,
    /// Durable subscriptions.
    pub subscriptions: Vec<SubscriptionState>,
    /// Producer sessions.
    pub producers: Vec<ProducerSession>,
    /// Message-id window `(id, offset, stored_at_ms)` as snapshots before the
    /// [id archive](crate::channel::id_archive) held it: read and restored, written empty.
    pub ids: Vec<([u8; 16], u64, i64)>,
    /// Messages dropped by purge and retention so far (for describe and metrics).
    #[serde(default)]
    pub purged: u64,
}

impl StateSnapshot {
    /// Captures the state: `subs` (only durable ones are kept), producer sessions and position.
    pub fn capture<'a>(
        next_entry: u64,
        committed: u64,
        subs: impl Iterator<Item = (&'a String, &'a Subscription)>,
        producers: &ProducerState,
    ) -> Self {
        let subscriptions = subs
            .filter(|(_, s)| s.is_logged())
            .map(|(name, s)| SubscriptionState::of(name, s))
            .collect();
        Self {
            version: VERSION,
            next_entry,
            committed,
            subscriptions,
            producers: producers.sessions(),
            ids: Vec::new(),
            purged: 0,
        }
    }

    /// The snapshot file of the partition whose log lives in `log_dir` (beside it, not in it).
    pub fn path_for(log_dir: &Path) -> PathBuf {
        let name = log_dir
            .file_name()
            .map_or_else(|| "partition".into(), |n| n.to_string_lossy().into_owned());
        log_dir.with_file_name(format!("{name}.snapshot"))
    }

    /// Loads the snapshot at `path`; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`ChannelError::Metadata`] when the file cannot be read, fails its checksum, does not
    /// decode, or has another format version. Never silently ignored: losing it would lose
    /// cursors and dedupe state.
    pub fn load(path: &Path) -> Result<Option<Self>, ChannelError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(error(path, e)),
        };
        let Some((crc, body)) = bytes.split_first_chunk::<4>() else {
            return Err(error(path, "shorter than its checksum"));
        };
        if u32::from_le_bytes(*crc) != crc32c::crc32c(body) {
            return Err(error(path, "checksum mismatch"));
        }
        let snapshot: Self = rmp_serde::from_slice(body).map_err(|e| error(path, e))?;
        if snapshot.version != VERSION {
            let v = snapshot.version;
            return Err(error(
                path,
                format!("format version {v}, expected {VERSION}"),
            ));
        }
        Ok(Some(snapshot))
    }

    /// Writes the snapshot to `path` atomically and durably.
    ///
    /// # Errors
    /// [`ChannelError::Metadata`] naming the file that could not be written.
    pub fn store(&self, path: &Path) -> Result<(), ChannelError> {
        let body = rmp_serde::to_vec(self).map_err(|e| error(path, e))?;
        let mut bytes = crc32c::crc32c(&body).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        log::atomic_write(dir, &name, &bytes)
            .map_err(|e| ChannelError::metadata("snapshot", path, e))
    }
}

fn error(path: &Path, detail: impl std::fmt::Display) -> ChannelError {
    ChannelError::Metadata {
        path: path.to_owned(),
        detail: format!("snapshot: {detail}"),
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
