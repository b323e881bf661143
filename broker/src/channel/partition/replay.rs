//! Rebuilding a partition's committed state on open: the state snapshot if there is one, then
//! the log entries after it.
//!
//! Message batches still in the log are read from its first entry either way, because the
//! expiry index is not in the snapshot; their dedupe effect is only taken for entries after the
//! snapshot (the snapshot holds the rest, including what purged segments held). Commands are
//! applied only after the snapshot.

use sluice_protocol::RecordBatch;
use tokio::time::Instant;

use super::{Partition, READ_CHUNK};
use crate::channel::command::Command;
use crate::channel::error::ChannelError;
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
        let loaded = tokio::task::spawn_blocking(move || StateSnapshot::load(&path))
            .await
            .map_err(|e| ChannelError::InvalidArgument(format!("loading snapshot: {e}")))??;
        let after = match loaded {
            Some(snapshot) => self.restore(snapshot)?,
            None => 0,
        };
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

    /// Takes the snapshot's state; returns the entry replay resumes at.
    fn restore(&mut self, snapshot: StateSnapshot) -> Result<u64, ChannelError> {
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
        self.ids.restore(&snapshot.ids);
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
            if after_snapshot {
                self.observe_for_dedupe(batch, now_ms);
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
            &self.ids,
        );
        snapshot.purged = self.purged;
        let path = self.snapshot_path.clone();
        tokio::task::spawn_blocking(move || snapshot.store(&path))
            .await
            .map_err(|e| ChannelError::InvalidArgument(format!("storing snapshot: {e}")))?
    }

    /// Waits for every pending append and applies it, so memory matches the log.
    pub(super) async fn drain_writes(&mut self) {
        while let Some((result, after)) = self.writes.next().await {
            self.on_durable(result, after);
        }
    }
}
