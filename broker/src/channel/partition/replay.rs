//! Rebuilding a partition's committed state on open: the state snapshot if there is one, then
//! the log entries after it.
//!
//! Message batches still in the log are read from its first entry either way, because neither
//! the expiry index nor the message-id window is in the snapshot (the ids of deleted segments
//! come from the id archive, read first). Producer sessions are taken only from batches after
//! the snapshot, and commands are applied only after it.

use sluice_protocol::RecordBatch;
use tokio::time::Instant;

use super::{blocking, Partition, READ_CHUNK};
use crate::channel::command::Command;
use crate::channel::error::ChannelError;
use crate::channel::id_archive::{ArchivedId, IdArchive};
use crate::channel::snapshot::StateSnapshot;

impl Partition {
    /// Loads the snapshot, then rebuilds the rest of the committed state from the log.
    ///
    /// # Errors
    /// [`ChannelError::Metadata`] for an unreadable snapshot or one ahead of the log (entries it
    /// covers were lost: replaying would hand their indexes to new entries and skip those);
    /// [`ChannelError::Log`] or [`ChannelError::CorruptCommand`] for the log.
    pub(super) async fn replay(&mut self) -> Result<(), ChannelError> {
        let path = self.snapshot_path.clone();
        let loaded = blocking("loading snapshot", move || StateSnapshot::load(&path)).await?;
        let mut ids = self.load_archived_ids().await?;
        let after = match loaded {
            Some(snapshot) => self.restore(snapshot, &mut ids)?,
            None => 0,
        };
        self.ids.restore(&ids);
        let (now, now_ms) = (self.now(), self.now_ms());
        let mut next = self.log.first_entry();
        while next < self.log.next_entry() {
            let batches = self.log.read_entries(next, READ_CHUNK).await?;
            let Some(last) = batches.last() else { break };
            next = last.entry_index() + 1;
            for batch in &batches {
                self.replay_batch(batch, batch.entry_index() >= after, now, now_ms)?;
            }
        }
        self.committed = self.log.next_offset();
        let first = self.log.first_offset();
        for sub in self.subs.values_mut() {
            sub.cursor.apply_skip_to(first);
        }
        Ok(())
    }

    /// Reads the id archive (ids of deleted segments) and forgets its expired files.
    async fn load_archived_ids(&mut self) -> Result<Vec<ArchivedId>, ChannelError> {
        let dir = self.archive.dir().to_owned();
        let (archive, ids) = blocking("loading id archive", move || {
            let mut archive = IdArchive::new(dir);
            archive.load().map(|ids| (archive, ids))
        })
        .await?;
        self.archive = archive;
        self.forget_archived_ids();
        Ok(ids)
    }

    /// Takes the snapshot's state (its legacy ids go to `ids`); returns the entry replay
    /// resumes at.
    fn restore(
        &mut self,
        snapshot: StateSnapshot,
        ids: &mut Vec<ArchivedId>,
    ) -> Result<u64, ChannelError> {
        if snapshot.next_entry > self.log.next_entry()
            || snapshot.committed > self.log.next_offset()
        {
            return Err(ChannelError::Metadata {
                path: self.snapshot_path.clone(),
                detail: format!(
                    "snapshot covers entries below {} and offsets below {}, but the log ends at \
                     entry {} and offset {}",
                    snapshot.next_entry,
                    snapshot.committed,
                    self.log.next_entry(),
                    self.log.next_offset()
                ),
            });
        }
        self.subs.clear();
        for state in &snapshot.subscriptions {
            self.subs
                .insert(state.name.clone(), state.to_subscription());
        }
        self.producers.restore(&snapshot.producers);
        ids.extend_from_slice(&snapshot.ids);
        self.purged = snapshot.purged;
        Ok(snapshot.next_entry)
    }

    fn replay_batch(
        &mut self,
        batch: &RecordBatch,
        after_snapshot: bool,
        now: Instant,
        now_ms: i64,
    ) -> Result<(), ChannelError> {
        if batch.is_control() {
            if after_snapshot {
                for command in Command::from_batch(batch)? {
                    self.apply(command, now);
                }
            }
        } else {
            self.expiry.observe(batch);
            // Ids from every batch still in the log (the snapshot holds none); sessions only
            // from batches after it (it holds them as of its entry).
            self.observe_ids(batch, now_ms);
            if after_snapshot {
                self.observe_session(batch);
            }
        }
        Ok(())
    }

    /// Captures the committed state and stores it as the partition's snapshot. Pending writes
    /// are waited for and applied first, and the log synced whatever its fsync policy, so the
    /// snapshot never covers an entry that is not durable.
    ///
    /// # Errors
    /// [`ChannelError::Log`] when a pending write or the sync failed; [`ChannelError::Metadata`]
    /// when the file cannot be written.
    pub(super) async fn save_snapshot(&mut self) -> Result<(), ChannelError> {
        self.drain_writes().await;
        self.log.sync().await?;
        let mut snapshot = StateSnapshot::capture(
            self.log.next_entry(),
            self.log.next_offset(),
            self.subs.iter(),
            &self.producers,
        );
        snapshot.purged = self.purged;
        let path = self.snapshot_path.clone();
        blocking("storing snapshot", move || snapshot.store(&path)).await
    }

    /// Waits for every pending append and applies it, so memory matches the log.
    pub(super) async fn drain_writes(&mut self) {
        while let Some((result, after)) = self.writes.next().await {
            self.on_durable(result, after);
        }
    }
}
