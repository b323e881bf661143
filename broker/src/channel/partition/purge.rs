//! The Channel Purger and retention: moving cursors past stored messages, and deleting whole
//! segments below the partition's low-water mark.
//!
//! The low-water mark is the lowest `ack_floor` of the partition's subscriptions (the committed
//! offset when it has none), raised by the channel's `retention.max_age` / `retention.max_bytes`
//! (whole segments; retention may pass unconsumed messages, which the subscriptions then skip
//! through a logged [`Command::Purge`]). Deleting segments deletes the commands and the message
//! batches replay would read, so a [state snapshot](crate::channel::snapshot) is always saved
//! first, and the ids they hold that are still inside the dedupe window go to the
//! [id archive](crate::channel::id_archive).
//!
//! Consumed segments that hold ids still inside the window are kept until those ids leave it, so
//! ordinary consumption archives nothing: replay rebuilds the window from the log. Only a purge
//! and the retention limits (`max_age`, `max_bytes`), which must free the space now, archive ids.
//! Archiving as segments were consumed wrote every id a second time, with a sync of tens of MB at
//! each deletion that slowed the log's own syncs on the same disk (publish with ids +10% without
//! it); the price is disk: a partition keeps `dedupe_window` worth of consumed log.
//!
//! Retention writes an archive file in the background and deletes the segments at a later
//! check, once the file is durable, rather than stalling every publish to the partition while
//! tens of MB are written and synced. A purge, which answers its caller once the segments are
//! gone, waits.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::writes::Done;
use super::{joined, Partition};
use crate::channel::command::Command;
use crate::channel::error::ChannelError;
use crate::channel::id_archive::{ArchiveFile, IdArchive};
use crate::log::SegmentInfo;

/// How often a partition with sealed segments looks for ones it may delete.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// An id archive file being written in the background; the segments below `mark` go once it is.
#[derive(Debug)]
pub(super) struct Archiving {
    /// The segments wholly below it are deleted when the file is durable.
    mark: u64,
    /// The blocking write of the file.
    write: JoinHandle<Result<ArchiveFile, ChannelError>>,
}

impl Archiving {
    /// Waits for the write; the file, once it is durable.
    pub(super) async fn finish(self) -> Result<ArchiveFile, ChannelError> {
        joined("archiving ids", self.write.await)
    }
}

impl Partition {
    /// Purges one subscription's backlog, or every subscription's, up to the committed offset,
    /// then deletes the segments that fell below the low-water mark.
    pub(super) async fn purge(
        &mut self,
        subscription: Option<String>,
        done: oneshot::Sender<Result<(), ChannelError>>,
    ) {
        if let Some(name) = subscription
            .as_ref()
            .filter(|n| !self.subs.contains_key(*n))
        {
            let channel = self.config.channel.to_string();
            let name = name.clone();
            let _ = done.send(Err(ChannelError::UnknownSubscription { channel, name }));
            return;
        }
        let (to, whole) = (self.committed, subscription.is_none());
        let result = match self.skip_to(subscription, to).await {
            Ok(()) => self.delete_segments(whole).await,
            Err(e) => Err(e),
        };
        let _ = done.send(result);
    }

    /// Moves the cursor of `subscription` (or every cursor) past `to`, through the log; waits
    /// until it is applied.
    async fn skip_to(&mut self, subscription: Option<String>, to: u64) -> Result<(), ChannelError> {
        let backlogs: Vec<(String, u64)> = self
            .subs
            .iter()
            .filter(|(name, _)| subscription.as_ref().is_none_or(|s| s == *name))
            .map(|(name, sub)| (name.clone(), sub.cursor.backlog(to)))
            .collect();
        let dropped = backlogs.iter().map(|(_, n)| *n).max().unwrap_or(0);
        let (tx, rx) = oneshot::channel();
        self.change(Command::Purge { subscription, to }, Done::Call(tx));
        self.drain_writes().await;
        match rx.await {
            Ok(Ok(())) => {
                self.purged += dropped;
                self.count_purged(&backlogs);
                tracing::info!(channel = %self.config.channel, partition = self.config.id, to, dropped, "purged");
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ChannelError::ShuttingDown),
        }
    }

    /// Counts the messages each subscription lost to a purge or to retention.
    fn count_purged(&self, backlogs: &[(String, u64)]) {
        let (channel, partition) = (self.config.channel.to_string(), self.config.id.to_string());
        for (name, n) in backlogs.iter().filter(|(_, n)| *n > 0) {
            let labels = [
                ("channel", channel.clone()),
                ("partition", partition.clone()),
                ("subscription", name.clone()),
            ];
            metrics::counter!("sluice_messages_purged_total", &labels).increment(*n);
        }
    }

    /// The periodic retention check: cheap when nothing can go.
    pub(super) async fn check_retention(&mut self) {
        self.next_check = Instant::now() + CHECK_EVERY;
        self.forget_archived_ids();
        if self.failed.is_some() {
            return; // the log refuses changes; the failure was reported once already
        }
        let segments = self.log.segments();
        let Some(active) = segments.last() else {
            return;
        };
        let (max_age, max_bytes) = (
            self.config.retention_max_age,
            self.config.retention_max_bytes,
        );
        let retention =
            retention_mark(&segments, max_age, max_bytes, self.now_ms()).min(active.base_offset);
        if retention > self.lowest_floor() {
            if let Err(e) = self.skip_to(None, retention).await {
                self.metrics.retention_failed();
                tracing::error!(channel = %self.config.channel, partition = self.config.id, "retention: {e}");
                return;
            }
        }
        if let Err(e) = self.delete_segments_in_background(retention).await {
            self.metrics.retention_failed();
            tracing::error!(channel = %self.config.channel, partition = self.config.id, "deleting segments: {e}");
        }
    }

    /// Retention's deletion: finishes one whose archive file is written, or starts one, whose
    /// archive file is then written while the partition goes on. Segments holding live ids are
    /// kept, unless the retention limits' mark `forced` passes them.
    async fn delete_segments_in_background(&mut self, forced: u64) -> Result<(), ChannelError> {
        if let Some(archiving) = self.archiving.take_if(|a| a.write.is_finished()) {
            return self.finish_archiving(archiving).await;
        }
        if self.archiving.is_some() {
            return Ok(());
        }
        let now = self.now_ms();
        let hold = self
            .ids
            .oldest_live_offset(now)
            .map_or(u64::MAX, |oldest| oldest.max(forced));
        let Some(mark) = self.deletable_mark(false, hold) else {
            return Ok(());
        };
        match self.start_archiving(mark) {
            Some(archiving) => {
                self.archiving = Some(archiving);
                Ok(())
            }
            None => self.delete_segments_below(mark).await,
        }
    }

    /// Deletes the segments wholly below the low-water mark, after archiving their live ids and
    /// saving a snapshot. Only sealed segments, unless `all` (a purge): then the active one too
    /// when everything is below the mark.
    async fn delete_segments(&mut self, all: bool) -> Result<(), ChannelError> {
        // Two writes of one archive file at once would share its temporary file.
        if let Some(archiving) = self.archiving.take() {
            self.finish_archiving(archiving).await?;
        }
        let Some(mark) = self.deletable_mark(all, u64::MAX) else {
            return Ok(());
        };
        match self.start_archiving(mark) {
            Some(archiving) => self.finish_archiving(archiving).await,
            None => self.delete_segments_below(mark).await,
        }
    }

    /// Waits for a background archive file, then deletes the segments it covers.
    async fn finish_archiving(&mut self, archiving: Archiving) -> Result<(), ChannelError> {
        let mark = archiving.mark;
        self.archive.add(archiving.finish().await?);
        self.delete_segments_below(mark).await
    }

    /// The mark (at most `limit`) below which segments may be deleted, if any segment is wholly
    /// below it (with `all`, also the active one when everything is).
    fn deletable_mark(&self, all: bool, limit: u64) -> Option<u64> {
        let segments = self.log.segments();
        let active = segments.last()?;
        let mut mark = self.lowest_floor().min(limit);
        if !all {
            mark = mark.min(active.base_offset);
        }
        let whole = segments.windows(2).any(|w| w[1].base_offset <= mark);
        let everything = all && mark >= active.end_offset && active.bytes > 0;
        (whole || everything).then_some(mark)
    }

    /// Saves a snapshot, then deletes the segments wholly below `mark`; their ids are archived.
    async fn delete_segments_below(&mut self, mark: u64) -> Result<(), ChannelError> {
        self.save_snapshot().await?;
        self.log.purge_segments_before(mark).await?;
        self.cache.drop_below(self.log.first_offset());
        self.read_behind.clear();
        self.expiry.forget_below(self.log.first_offset());
        let stats = self.log.stats();
        tracing::debug!(channel = %self.config.channel, partition = self.config.id, mark, segments = stats.segments, bytes = stats.bytes, "segments deleted");
        Ok(())
    }

    /// Starts writing, on the blocking pool, the archive file for the live ids stored below
    /// `mark` that are still in the log, before the segments holding them go (replay rebuilds the
    /// rest from the log); `None` when there are none.
    fn start_archiving(&self, mark: u64) -> Option<Archiving> {
        if self.ids.window_is_off() {
            return None;
        }
        let ids = self
            .ids
            .entries_in(self.log.first_offset()..mark, self.now_ms());
        let encoded = IdArchive::encode(ids)?;
        let dir = self.archive.dir().to_owned();
        let write = tokio::task::spawn_blocking(move || IdArchive::write(&dir, &encoded));
        Some(Archiving { mark, write })
    }

    /// Deletes the archive files whose ids have all left the dedupe window.
    pub(super) fn forget_archived_ids(&mut self) {
        let (ids, now) = (&self.ids, self.now_ms());
        if let Err(e) = self.archive.forget_expired(|at| ids.covers(at, now)) {
            tracing::error!(channel = %self.config.channel, partition = self.config.id, "{e}");
        }
    }

    /// The lowest ack floor of the subscriptions; the committed offset when there are none
    /// (nobody can read those messages any more: new subscriptions start at the tail).
    fn lowest_floor(&self) -> u64 {
        self.subs
            .values()
            .map(|s| s.cursor.ack_floor())
            .min()
            .unwrap_or(self.committed)
            .min(self.committed)
    }
}

/// The first offset retention keeps: segments go, oldest first, while newer ones are past
/// `max_age` or the log is over `max_bytes`. Always a segment's base offset (or 0): retention
/// deletes whole segments.
fn retention_mark(
    segments: &[SegmentInfo],
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
    now_ms: i64,
) -> u64 {
    let mut mark = 0;
    if let Some(max_age) = max_age {
        let cutoff = now_ms.saturating_sub(max_age.as_millis() as i64);
        // A segment is old when the next one began before the cutoff (timestamps never
        // decrease along the log).
        for w in segments.windows(2) {
            if w[1].first_timestamp.is_none_or(|t| t > cutoff) {
                break;
            }
            mark = w[1].base_offset;
        }
    }
    if let Some(max_bytes) = max_bytes {
        let mut total: u64 = segments.iter().map(|s| s.bytes).sum();
        for w in segments.windows(2) {
            if total <= max_bytes {
                break;
            }
            total -= w[0].bytes;
            mark = mark.max(w[1].base_offset);
        }
    }
    mark
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(base_offset: u64, bytes: u64, first_timestamp: Option<i64>) -> SegmentInfo {
        SegmentInfo {
            base_offset,
            end_offset: base_offset + 10,
            bytes,
            first_timestamp,
        }
    }

    fn log() -> Vec<SegmentInfo> {
        vec![
            segment(0, 100, Some(1_000)),
            segment(10, 100, Some(2_000)),
            segment(20, 100, Some(3_000)),
            segment(30, 50, Some(4_000)),
        ]
    }

    #[test]
    fn without_settings_retention_keeps_everything() {
        assert_eq!(retention_mark(&log(), None, None, 1 << 40), 0);
    }

    #[test]
    fn max_bytes_drops_the_oldest_whole_segments_until_the_rest_fits() {
        assert_eq!(retention_mark(&log(), None, Some(350), 0), 0);
        assert_eq!(retention_mark(&log(), None, Some(349), 0), 10);
        assert_eq!(retention_mark(&log(), None, Some(150), 0), 20);
        assert_eq!(
            retention_mark(&log(), None, Some(1), 0),
            30,
            "never the active one"
        );
    }

    #[test]
    fn max_age_drops_segments_whose_successor_began_before_the_cutoff() {
        let age = Some(Duration::from_millis(1_000));
        assert_eq!(retention_mark(&log(), age, None, 2_999), 0);
        assert_eq!(retention_mark(&log(), age, None, 3_000), 10);
        assert_eq!(retention_mark(&log(), age, None, 4_000), 20);
        assert_eq!(retention_mark(&log(), age, None, 1 << 40), 30);
        let empty_active = [segment(0, 100, Some(1_000)), segment(10, 0, None)];
        assert_eq!(retention_mark(&empty_active, age, None, 1 << 40), 0);
    }

    #[test]
    fn the_stricter_setting_wins() {
        let age = Some(Duration::from_millis(1_000));
        assert_eq!(retention_mark(&log(), age, Some(1), 2_500), 30);
        assert_eq!(retention_mark(&log(), age, Some(1_000), 4_500), 20);
    }
}
