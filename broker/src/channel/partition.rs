//! The partition task: the one owner of a partition's log and state (singular update queue).
//!
//! Requests arrive through a bounded queue and are taken in bursts. Publishes and logged
//! commands are appended to the log at once and answered or applied when the log says they are
//! durable, in log order; so whatever arrived together shares one fsync (group commit), and the
//! state seen by consumers is always the committed state. Settling a message is the one
//! exception: an ack or an expiry drop also takes effect in memory at once, so no other way of
//! settling it (a lease running out, the sweeper, a dead-letter move) can race it and count
//! it twice. After every burst the task hands out deliveries to consumers with free credit.
//!
//! It does not know frames or sockets: answers go to an [`Outbox`](super::outbox::Outbox).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use sluice_protocol::types::{ChannelKind, PartitionInfo, SubscriptionInfo};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::consumer::ConsumerHandle;
use super::cursor::ConsumerKey;
use super::dead_letter::MoveSink;
use super::dedupe::{IdWindow, Prepared, ProducerState};
use super::delivery::{ReadBehind, TailCache};
use super::error::ChannelError;
use super::expiry::Expiry;
use super::id_archive::IdArchive;
use super::snapshot::StateSnapshot;
use super::subscription::{Lifetime, Subscription};
use crate::clock::SharedClock;
use crate::log::{Log, LogConfig};

mod changes;
mod dispatch;
mod metrics;
mod moves;
mod publish;
mod purge;
mod replay;
mod requests;
mod sweep;
mod writes;

use self::metrics::{PartitionMetrics, ReturnReason};
pub use publish::Routed;
pub use requests::{PartitionRequest, PartitionSnapshot};
use writes::{Done, PendingWrites};

/// Requests a partition queue holds before senders wait.
const QUEUE_DEPTH: usize = 4096;
/// Requests taken per burst.
const BURST: usize = 512;
/// Deliveries one consumer gets per round-robin turn, so competing consumers share fairly.
const TURN: u64 = 256;
/// Bytes read from the log at a time when replaying or fetching evicted batches.
const READ_CHUNK: usize = 1 << 20;
/// Offsets past a subscription's ack floor the expiry sweeper looks at per pass.
const SWEEP_SPAN: u64 = 10_000;
/// Generation of this node's appends. A constant until replication brings elections.
const TERM: u64 = 1;
/// How often at most the gauges are set: computing them walks the cursors' ranges, too much
/// work to repeat after every burst, and a scrape every few seconds needs nothing fresher.
const REFRESH_EVERY: Duration = Duration::from_millis(50);

/// What a partition needs to know about its channel.
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    /// Channel name, for errors and logs.
    pub channel: Arc<str>,
    /// Which creation of the channel this is ([`ChannelSpec::incarnation`]).
    ///
    /// [`ChannelSpec::incarnation`]: crate::channel::registry::ChannelSpec::incarnation
    pub incarnation: u64,
    /// Partition number.
    pub id: u32,
    /// Queue or topic.
    pub kind: ChannelKind,
    /// Default lease of deliveries.
    pub lease: Duration,
    /// Largest batch a producer may send.
    pub max_batch_bytes: usize,
    /// Storage settings.
    pub log: LogConfig,
    /// Bytes of recent batches kept in memory for dispatch.
    pub cache_bytes: usize,
    /// When and where messages are given up on.
    pub dead_letters: DeadLetterPolicy,
    /// Messages older than this expire.
    pub max_age: Option<Duration>,
    /// A repeated message id within this window is a duplicate.
    pub dedupe_window: Duration,
    /// Segments whose messages are all older than this are deleted, consumed or not.
    pub retention_max_age: Option<Duration>,
    /// Oldest segments are deleted, consumed or not, while the log is larger than this.
    pub retention_max_bytes: Option<u64>,
    /// Where "now" comes from for append timestamps, expiry, the dedupe window, retention by
    /// age, leases and nack delays.
    pub clock: SharedClock,
}

/// When a partition gives up on a message, and where it sends it.
#[derive(Debug, Clone)]
pub struct DeadLetterPolicy {
    /// A delivery count above this dead-letters the message.
    pub max_deliveries: u32,
    /// The dead-letter channel (created as a queue on first use).
    pub channel: String,
    /// Whether expired messages are dead-lettered rather than dropped.
    pub on_expiry: bool,
    /// Where `reject_invalid` sends messages; `None` refuses it.
    pub invalid_channel: Option<String>,
    /// The broker's mover task.
    pub mover: MoveSink,
}

/// The way to talk to a partition task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PartitionHandle {
    /// Partition number.
    pub id: u32,
    /// The task's queue.
    tx: mpsc::Sender<PartitionRequest>,
}

impl PartitionHandle {
    /// Queues a request, waiting while the queue is full (backpressure).
    ///
    /// # Errors
    /// [`ChannelError::ShuttingDown`] when the task has stopped.
    pub async fn send(&self, request: PartitionRequest) -> Result<(), ChannelError> {
        self.tx
            .send(request)
            .await
            .map_err(|_| ChannelError::ShuttingDown)
    }

    /// Sends a request carrying a reply slot and waits for the answer.
    ///
    /// # Errors
    /// [`ChannelError::ShuttingDown`] when the task stopped before answering.
    pub async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> PartitionRequest,
    ) -> Result<T, ChannelError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| ChannelError::ShuttingDown)
    }

    /// Asks the task to wake up and hand out deliveries (credit arrived). Never waits: a full
    /// queue means the task is busy and will dispatch after that burst anyway.
    pub fn wake(&self) {
        let _ = self.tx.try_send(PartitionRequest::Wake);
    }
}

/// Opens the log under `dir`, replays it, and starts the task.
///
/// # Errors
/// [`ChannelError::Log`] when the log cannot be opened, or a corrupt command in it.
pub async fn open(config: PartitionConfig, dir: PathBuf) -> Result<PartitionHandle, ChannelError> {
    let snapshot_path = StateSnapshot::path_for(&dir);
    let archive = IdArchive::new(IdArchive::dir_for(&dir));
    let log = Log::open(dir, config.log.clone()).await?;
    let mut partition = Partition::new(config, log, snapshot_path, archive);
    partition.replay().await?;
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let id = partition.config.id;
    tokio::spawn(partition.run(rx));
    Ok(PartitionHandle { id, tx })
}

/// A consumer attached to one of this partition's subscriptions.
#[derive(Debug)]
struct Attached {
    /// Where its deliveries go, its credit and lease.
    handle: ConsumerHandle,
    /// The subscription it reads.
    subscription: String,
}

/// The state the task owns.
struct Partition {
    /// Channel-level settings.
    config: PartitionConfig,
    /// The partition's storage.
    log: Log,
    /// Subscriptions by name.
    subs: BTreeMap<String, Subscription>,
    /// Attached consumers.
    consumers: HashMap<ConsumerKey, Attached>,
    /// Offsets below are committed and may be delivered.
    committed: u64,
    /// Recent committed message batches.
    cache: TailCache,
    /// Appends waiting to become durable, in log order.
    writes: PendingWrites,
    /// Set when a write failed: the partition stops accepting changes.
    failed: Option<String>,
    /// Messages being moved to a dead-letter or invalid channel.
    moves: FuturesUnordered<moves::Moving>,
    /// Offsets that passed `max_deliveries` in the current dispatch, to dead-letter.
    doomed: Vec<u64>,
    /// Offsets being moved out (dead letters, invalid messages) until their settle applies:
    /// neither in flight nor waiting, and not to be settled a second way (expiry sweep).
    moving: HashMap<String, std::collections::BTreeSet<u64>>,
    /// When messages expire.
    expiry: Expiry,
    /// Producer sessions seen in this partition.
    producers: ProducerState,
    /// Recently stored message ids.
    ids: IdWindow,
    /// The current publish batch's ids by record index, kept to reuse its allocation.
    batch_ids: Vec<(u32, Prepared)>,
    /// The last chunk read from the log for consumers behind the tail cache.
    read_behind: ReadBehind,
    /// Ids of deleted segments still inside the dedupe window.
    archive: IdArchive,
    /// Retention's archive file being written, before the segments it covers are deleted.
    archiving: Option<purge::Archiving>,
    /// Offsets found expired in the current dispatch, to drop or dead-letter.
    expired: Vec<u64>,
    /// Counters and gauges of this partition.
    metrics: PartitionMetrics,
    /// Where the state snapshot lives (beside the log directory).
    snapshot_path: PathBuf,
    /// Messages dropped by purge and retention.
    purged: u64,
    /// When retention next looks for segments to delete.
    next_check: Instant,
    /// When the gauges may be set again.
    next_refresh: Instant,
    /// Whether state changed since the gauges were last set (a timer then sets them).
    gauges_stale: bool,
    /// Whether expired messages may be waiting at a subscription's head with no timer due to
    /// sweep them (the expiry timer only looks ahead): after opening, and after messages that
    /// expired while held were returned.
    sweep_due: bool,
}

impl Partition {
    fn new(config: PartitionConfig, log: Log, snapshot_path: PathBuf, archive: IdArchive) -> Self {
        let mut subs = BTreeMap::new();
        if config.kind == ChannelKind::Queue {
            let own = Subscription::new(Lifetime::Durable, config.lease, 0);
            subs.insert(config.channel.to_string(), own);
        }
        let metrics = PartitionMetrics::new(&config.channel, config.id);
        Self {
            writes: PendingWrites::new(metrics.append_histogram()),
            metrics,
            expiry: Expiry::new(config.max_age),
            producers: ProducerState::new(),
            ids: IdWindow::new(config.dedupe_window),
            batch_ids: Vec::new(),
            archive,
            archiving: None,
            read_behind: ReadBehind::default(),
            cache: TailCache::new(config.cache_bytes),
            config,
            log,
            subs,
            consumers: HashMap::new(),
            committed: 0,
            failed: None,
            moves: FuturesUnordered::new(),
            doomed: Vec::new(),
            moving: HashMap::new(),
            expired: Vec::new(),
            snapshot_path,
            purged: 0,
            next_check: Instant::now() + purge::CHECK_EVERY,
            next_refresh: Instant::now(),
            gauges_stale: false,
            sweep_due: true,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<PartitionRequest>) {
        let mut burst = Vec::with_capacity(BURST);
        // Gauges from the replayed state at once: a partition nobody touches after a restart
        // must still report its backlog and the age of its oldest unacked message.
        self.refresh_metrics().await;
        let done = loop {
            let (deadline, wakeup) = (self.next_deadline(), self.next_wakeup());
            tokio::select! {
                biased;
                Some((result, after)) = self.writes.next(), if !self.writes.is_empty() => {
                    self.on_durable(result, after);
                    while let Some((result, after)) = self.writes.ready() {
                        self.on_durable(result, after);
                    }
                }
                Some(moved) = self.moves.next(), if !self.moves.is_empty() => self.on_moved(moved),
                n = rx.recv_many(&mut burst, BURST) => {
                    if n == 0 {
                        break None;
                    }
                    if let Some(done) = self.on_burst(&mut burst).await {
                        break Some(done);
                    }
                }
                () = sleep_on(&self.config.clock, deadline), if deadline.is_some() => {
                    self.on_timer();
                }
                () = sleep_until(wakeup), if wakeup.is_some() => self.on_timer(),
            }
            if std::mem::take(&mut self.sweep_due) {
                self.sweep_expired();
            }
            if self.housekeeping() && self.next_check <= Instant::now() {
                self.check_retention().await;
            }
            self.dispatch().await;
            self.refresh_metrics().await;
        };
        self.close(done).await;
    }

    /// Finishes pending writes, closes the log, and says so.
    async fn close(mut self, done: Option<oneshot::Sender<()>>) {
        while let Some((result, after)) = self.writes.next().await {
            self.on_durable(result, after);
        }
        // The file is kept; its segments stay until a later retention check deletes them.
        if let Some(archiving) = self.archiving.take() {
            match archiving.finish().await {
                Ok(file) => self.archive.add(file),
                Err(e) => {
                    tracing::error!(channel = %self.config.channel, partition = self.config.id, "archiving ids: {e}")
                }
            }
        }
        if let Err(e) = self.log.close().await {
            tracing::error!(channel = %self.config.channel, partition = self.config.id, "closing log: {e}");
        }
        self.metrics.clear();
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// The next lease deadline, nack delay or message expiry, on the partition's clock.
    fn next_deadline(&self) -> Option<Instant> {
        let (now, now_ms) = (self.now(), self.now_ms());
        let expiry = self
            .expiry
            .next_expiry(now_ms)
            .map(|at| now + Duration::from_millis((at - now_ms).max(0) as u64));
        self.subs
            .values()
            .filter_map(|s| s.cursor.next_wakeup())
            .chain(expiry)
            .min()
    }

    /// The next housekeeping moment, in real time: measuring ages, setting gauges, retention.
    fn next_wakeup(&self) -> Option<Instant> {
        self.metrics
            .ages_due()
            .into_iter()
            .chain(self.gauges_stale.then_some(self.next_refresh))
            .chain(self.housekeeping().then_some(self.next_check))
            .min()
    }

    /// Whether retention has anything to look at: sealed segments, archived ids or an archive
    /// file being written.
    fn housekeeping(&self) -> bool {
        self.log.segment_count() > 1 || self.archive.has_files() || self.archiving.is_some()
    }

    /// Now, on the partition's clock (leases and delays).
    fn now(&self) -> Instant {
        self.config.clock.now()
    }

    /// Now in milliseconds since the Unix epoch, on the partition's clock (timestamps, expiry,
    /// the dedupe window, retention by age).
    fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }

    /// Returns expired leases to their subscriptions, readies returns whose nack delay passed
    /// (or the timer would fire again at once while no consumer has credit for them), and
    /// sweeps expired messages.
    fn on_timer(&mut self) {
        let now = self.now();
        let expired: Vec<(String, Vec<u64>)> = self
            .subs
            .iter_mut()
            .map(|(name, sub)| {
                sub.cursor.promote_delayed(now);
                (name.clone(), sub.cursor.take_expired(now))
            })
            .filter(|(_, offsets)| !offsets.is_empty())
            .collect();
        for (name, offsets) in expired {
            self.metrics
                .returned(&name, ReturnReason::LeaseExpired, offsets.len());
            self.return_offsets(name, offsets, Duration::ZERO, Done::Nothing);
        }
        self.sweep_expired();
    }

    /// Sets the gauges after a burst, at most every [`REFRESH_EVERY`] (otherwise marks them
    /// stale, and the timer sets them); measures the oldest-unacked ages when they are due.
    async fn refresh_metrics(&mut self) {
        let now = Instant::now();
        self.gauges_stale = now < self.next_refresh;
        if !self.gauges_stale {
            self.next_refresh = now + REFRESH_EVERY;
            let stats = self.log.stats();
            self.metrics.refresh(&self.subs, self.committed, stats);
        }
        if self.metrics.ages_due().is_some_and(|due| due <= now) {
            let ages = self.oldest_unacked().await;
            self.metrics.set_ages(&ages, now);
        }
    }

    fn snapshot(&self, oldest: &HashMap<String, u64>) -> PartitionSnapshot {
        let stats = self.log.stats();
        let info = PartitionInfo {
            id: self.config.id,
            first_offset: self.log.first_offset(),
            next_offset: self.log.next_offset(),
            committed_offset: self.committed,
            segments: stats.segments,
            bytes: stats.bytes,
        };
        let subscriptions: Vec<SubscriptionInfo> = self
            .subs
            .iter()
            .map(|(name, sub)| sub.info(name, self.committed, oldest.get(name).copied()))
            .collect();
        PartitionSnapshot {
            info,
            subscriptions,
        }
    }
}

/// Waits in real time until `at` (forever when `None`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits until `clock` reaches `at` (forever when `None`).
async fn sleep_on(clock: &SharedClock, at: Option<Instant>) {
    match at {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs blocking file work `what` (a snapshot, the id archive) on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, ChannelError> + Send + 'static,
) -> Result<T, ChannelError> {
    joined(what, tokio::task::spawn_blocking(work).await)
}

/// The outcome of blocking work `what`, once its task is joined: a panic there is an
/// [`ChannelError::Internal`] error, as no request can cause one.
fn joined<T>(
    what: &str,
    outcome: Result<Result<T, ChannelError>, tokio::task::JoinError>,
) -> Result<T, ChannelError> {
    outcome.map_err(|e| ChannelError::Internal(format!("{what}: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocking_work_that_panics_is_an_internal_error_and_its_own_errors_pass() {
        let panicked = blocking("snapshot", || -> Result<(), ChannelError> {
            panic!("disk on fire")
        })
        .await
        .unwrap_err();
        assert_eq!(panicked.code(), sluice_protocol::ErrorCode::Internal);
        assert!(panicked.to_string().contains("snapshot"), "{panicked}");
        let failed = blocking("id archive", || -> Result<(), ChannelError> {
            Err(ChannelError::PartitionFailed("full".into()))
        })
        .await
        .unwrap_err();
        assert!(
            matches!(failed, ChannelError::PartitionFailed(_)),
            "{failed}"
        );
        assert_eq!(blocking("x", || Ok(7)).await.unwrap(), 7);
    }
}
