//! The partition task: the one owner of a partition's log and state (singular update queue).
//!
//! Requests arrive through a bounded queue and are taken in bursts. Publishes and logged
//! commands are appended to the log at once and answered or applied when the log says they are
//! durable, in log order; so whatever arrived together shares one fsync (group commit), and the
//! state seen by consumers is always the committed state. After every burst the task hands out
//! deliveries to consumers with free credit.
//!
//! It does not know frames or sockets: answers go to an [`Outbox`](super::outbox::Outbox).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use sluice_protocol::types::{ChannelKind, PartitionInfo, SubscriptionInfo};
use sluice_protocol::{RecordBatch, Response};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::command::Command;
use super::consumer::ConsumerHandle;
use super::cursor::{ConsumerKey, Grant};
use super::dead_letter::{DeathReason, MoveSink};
use super::dedupe::{IdWindow, ProducerState};
use super::delivery::{self, TailCache};
use super::error::ChannelError;
use super::expiry::Expiry;
use super::outbox::Outgoing;
use super::snapshot::StateSnapshot;
use super::subscription::{Lifetime, Subscription};
use crate::log::{Log, LogConfig, LogError};

mod metrics;
mod moves;
mod publish;
mod purge;
mod replay;
mod requests;
mod writes;

use self::metrics::{PartitionMetrics, ReturnReason};
pub use publish::Routed;
pub use requests::{PartitionRequest, PartitionSnapshot};
use writes::{AfterWrite, Done, PendingWrites};

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

/// What a partition needs to know about its channel.
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    /// Channel name, for errors and logs.
    pub channel: Arc<str>,
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
    let log = Log::open(dir, config.log.clone()).await?;
    let mut partition = Partition::new(config, log, snapshot_path);
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
    /// When messages expire.
    expiry: Expiry,
    /// Producer sessions seen in this partition.
    producers: ProducerState,
    /// Recently stored message ids.
    ids: IdWindow,
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
}

impl Partition {
    fn new(config: PartitionConfig, log: Log, snapshot_path: PathBuf) -> Self {
        let mut subs = BTreeMap::new();
        if config.kind == ChannelKind::Queue {
            let own = Subscription::new(Lifetime::Durable, config.lease, 0);
            subs.insert(config.channel.to_string(), own);
        }
        Self {
            expiry: Expiry::new(config.max_age),
            producers: ProducerState::new(),
            ids: IdWindow::new(config.dedupe_window),
            metrics: PartitionMetrics::new(&config.channel, config.id),
            cache: TailCache::new(config.cache_bytes),
            config,
            log,
            subs,
            consumers: HashMap::new(),
            committed: 0,
            writes: FuturesOrdered::new(),
            failed: None,
            moves: FuturesUnordered::new(),
            doomed: Vec::new(),
            expired: Vec::new(),
            snapshot_path,
            purged: 0,
            next_check: Instant::now() + purge::CHECK_EVERY,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<PartitionRequest>) {
        let mut burst = Vec::with_capacity(BURST);
        let done = loop {
            let wakeup = self.next_wakeup();
            tokio::select! {
                biased;
                Some((result, after)) = self.writes.next(), if !self.writes.is_empty() => {
                    self.on_durable(result, after);
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
                () = sleep_until(wakeup), if wakeup.is_some() => self.on_timer(),
            }
            if self.log.stats().segments > 1 && self.next_check <= Instant::now() {
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
        if let Err(e) = self.log.close().await {
            tracing::error!(channel = %self.config.channel, partition = self.config.id, "closing log: {e}");
        }
        self.metrics.clear();
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let now = now_ms();
        let expiry = self
            .expiry
            .next_expiry(now)
            .map(|at| Instant::now() + Duration::from_millis((at - now).max(0) as u64));
        self.subs
            .values()
            .filter_map(|s| s.cursor.next_wakeup())
            .chain(self.metrics.ages_due())
            .chain(expiry)
            .chain((self.log.stats().segments > 1).then_some(self.next_check))
            .min()
    }

    /// Returns expired leases to their subscriptions.
    fn on_timer(&mut self) {
        let now = Instant::now();
        let expired: Vec<(String, Vec<u64>)> = self
            .subs
            .iter_mut()
            .map(|(name, sub)| (name.clone(), sub.cursor.take_expired(now)))
            .filter(|(_, offsets)| !offsets.is_empty())
            .collect();
        for (name, offsets) in expired {
            self.metrics
                .returned(&name, ReturnReason::LeaseExpired, offsets.len());
            self.return_offsets(name, offsets, Duration::ZERO, Done::Nothing);
        }
        self.sweep_expired();
    }

    /// Drops expired messages at the heads of subscriptions, delivered or not (the eager half
    /// of expiry; dispatch skipping expired messages is the lazy half). Channels that
    /// dead-letter expired messages do that when dispatch reaches them.
    fn sweep_expired(&mut self) {
        if !self.expiry.is_active() || self.config.dead_letters.on_expiry {
            return;
        }
        let now = now_ms();
        let mut swept = Vec::new();
        for (name, sub) in &mut self.subs {
            let floor = sub.cursor.ack_floor();
            let end = self.committed.min(floor + SWEEP_SPAN);
            let offsets: Vec<u64> = self
                .expiry
                .expired_in(floor, end, now)
                .into_iter()
                .filter(|&o| !sub.cursor.is_acked(o) && !sub.cursor.is_held(o))
                .collect();
            if !offsets.is_empty() {
                swept.push((name.clone(), offsets));
            }
        }
        for (name, offsets) in swept {
            self.drop_expired(name, offsets);
        }
    }

    /// Settles expired offsets: dead-letters them where the channel says so, drops them
    /// otherwise.
    async fn settle_expired(&mut self, subscription: String, offsets: Vec<u64>) {
        if self.config.dead_letters.on_expiry {
            self.metrics.expired(&subscription, offsets.len());
            let kind = moves::MoveKind::Dead {
                reason: DeathReason::Expired,
                error: None,
            };
            self.start_move(subscription, offsets, kind, Done::Nothing)
                .await;
        } else {
            self.drop_expired(subscription, offsets);
        }
    }

    /// Drops expired offsets: done at once in memory (expiry is decided again the same way
    /// after a restart, so applying before the log commits loses nothing), and logged.
    fn drop_expired(&mut self, subscription: String, offsets: Vec<u64>) {
        self.metrics.expired(&subscription, offsets.len());
        if let Some(sub) = self.subs.get_mut(&subscription) {
            for &o in &offsets {
                sub.cursor.apply_ack(o, o + 1);
            }
        }
        tracing::debug!(channel = %self.config.channel, count = offsets.len(), "expired");
        let command = Command::Settle {
            subscription,
            offsets,
            outcome: "expired".into(),
        };
        self.change(command, Done::Nothing);
    }

    /// Applies a committed command to the in-memory state.
    fn apply(&mut self, command: Command, now: Instant) {
        match command {
            Command::CreateSubscription {
                name,
                start,
                lease_ms,
            } => {
                let lease = Duration::from_millis(lease_ms);
                let sub = Subscription::new(Lifetime::Durable, lease, start);
                self.subs.entry(name).or_insert(sub);
            }
            Command::DeleteSubscription { name } => {
                self.subs.remove(&name);
                self.consumers.retain(|_, c| c.subscription != name);
            }
            Command::Ack {
                subscription,
                ranges,
            } => {
                if let Some(sub) = self.subs.get_mut(&subscription) {
                    for (from, to) in ranges {
                        sub.cursor.apply_ack(from, to);
                    }
                }
            }
            Command::Settle {
                subscription,
                offsets,
                outcome: _,
            } => {
                if let Some(sub) = self.subs.get_mut(&subscription) {
                    for offset in offsets {
                        sub.cursor.apply_ack(offset, offset + 1);
                    }
                }
            }
            Command::Return {
                subscription,
                offsets,
                delay_ms,
            } => {
                if let Some(sub) = self.subs.get_mut(&subscription) {
                    let ready_at = now + Duration::from_millis(delay_ms);
                    sub.cursor.apply_return(&offsets, ready_at, now);
                }
            }
            Command::Purge { subscription, to } => {
                for (name, sub) in &mut self.subs {
                    if subscription.as_ref().is_none_or(|s| s == name) {
                        sub.cursor.apply_skip_to(to);
                    }
                }
            }
        }
    }

    /// Gives offsets back: through the log for durable subscriptions, at once otherwise.
    fn return_offsets(&mut self, sub: String, offsets: Vec<u64>, delay: Duration, done: Done) {
        if offsets.is_empty() {
            return done.ok(Response::Ok);
        }
        let command = Command::Return {
            subscription: sub,
            offsets,
            delay_ms: delay.as_millis() as u64,
        };
        self.change(command, done);
    }

    /// Makes a cursor change: logged and applied when durable, or applied now if not logged.
    fn change(&mut self, command: Command, done: Done) {
        let logged = command
            .subscription()
            .is_none_or(|name| self.subs.get(name).is_none_or(Subscription::is_logged));
        if !logged {
            self.apply(command, Instant::now());
            return done.ok(Response::Ok);
        }
        if let Some(reason) = &self.failed {
            return done.err(ChannelError::InvalidArgument(format!(
                "partition failed: {reason}"
            )));
        }
        match self.log.append(command.to_batch(), TERM, now_ms()) {
            Ok((_, durable)) => writes::push(
                &mut self.writes,
                durable,
                AfterWrite::Apply { command, done },
            ),
            Err(e) => self.fail(e, done),
        }
    }

    fn fail(&mut self, e: LogError, done: Done) {
        tracing::error!(channel = %self.config.channel, partition = self.config.id, "log write failed: {e}");
        self.failed = Some(e.to_string());
        done.err(ChannelError::Log(e));
    }

    fn on_durable(&mut self, result: Result<(), LogError>, after: AfterWrite) {
        if let Err(e) = result {
            return self.fail(e, after.into_done());
        }
        match after {
            AfterWrite::Published {
                batch,
                pending,
                reply,
            } => {
                self.committed = self.committed.max(batch.next_offset());
                self.expiry.observe(&batch);
                self.metrics.published(&batch);
                let ack = pending.into_ack(self.config.id, batch.base_offset());
                self.cache.push(batch);
                reply.send(Ok(Response::Published(ack)));
            }
            AfterWrite::Apply { command, done } => {
                self.apply(command, Instant::now());
                done.ok(Response::Ok);
            }
        }
    }

    /// Hands out deliveries to every subscription's consumers while credit and messages last.
    async fn dispatch(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| {
                !s.consumers.is_empty() && s.cursor.deliverable(self.committed, now) > 0
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            while let Some(out) = self.grant_round(&name, now) {
                for (handle, grants) in out {
                    self.metrics.delivered(&name, &grants);
                    self.send_grants(&handle, &grants).await;
                }
            }
            if !self.expired.is_empty() {
                let offsets = std::mem::take(&mut self.expired);
                self.settle_expired(name.clone(), offsets).await;
            }
            if !self.doomed.is_empty() {
                let offsets = std::mem::take(&mut self.doomed);
                let kind = moves::MoveKind::Dead {
                    reason: DeathReason::MaxDeliveries,
                    error: None,
                };
                self.start_move(name, offsets, kind, Done::Nothing).await;
            }
        }
    }

    /// One round robin pass over a subscription's consumers; `None` when nobody got anything.
    fn grant_round(
        &mut self,
        name: &str,
        now: Instant,
    ) -> Option<Vec<(ConsumerHandle, Vec<Grant>)>> {
        let sub = self.subs.get_mut(name)?;
        let n = sub.consumers.len();
        let mut out = Vec::new();
        for i in 0..n {
            let available = sub.cursor.deliverable(self.committed, now);
            if available == 0 {
                break;
            }
            let key = sub.consumers[(sub.turn + i) % n];
            let Some(attached) = self.consumers.get(&key) else {
                continue;
            };
            let handle = &attached.handle;
            let got = handle.credit.reserve(available.min(TURN));
            if got == 0 {
                continue;
            }
            let deadline = now + handle.lease.unwrap_or(sub.lease);
            let mut grants = sub.cursor.grant(key, got, self.committed, now, deadline);
            let max = self.config.dead_letters.max_deliveries;
            for g in grants.iter().filter(|g| g.count > max) {
                let offsets: Vec<u64> = (g.start..g.end).collect();
                self.doomed.extend(sub.cursor.take_held(key, &offsets));
            }
            grants.retain(|g| g.count <= max);
            if self.expiry.is_active() {
                let now_ms = now_ms();
                let expired: Vec<u64> = grants
                    .iter()
                    .flat_map(|g| self.expiry.expired_in(g.start, g.end, now_ms))
                    .collect();
                if !expired.is_empty() {
                    self.expired.extend(sub.cursor.take_held(key, &expired));
                    grants = without(grants, &expired);
                }
            }
            let used: u64 = grants.iter().map(|g| g.end - g.start).sum();
            handle.credit.refund(got - used);
            if used > 0 {
                out.push((handle.clone(), grants));
            }
        }
        sub.turn = sub.turn.wrapping_add(1);
        (!out.is_empty()).then_some(out)
    }

    async fn send_grants(&mut self, handle: &ConsumerHandle, grants: &[Grant]) {
        for grant in grants {
            let mut offset = grant.start;
            while offset < grant.end {
                let Some(batch) = self.batch_at(offset).await else {
                    tracing::warn!(offset, "granted offset is no longer stored");
                    break;
                };
                let d = delivery::slice(
                    &batch,
                    offset,
                    grant.end,
                    handle.client_id,
                    self.config.id,
                    grant.count,
                );
                offset = d.first_offset + u64::from(d.record_count);
                let _ = handle.outbox.send(Outgoing::Delivery(d));
            }
        }
    }

    /// The committed message batch holding `offset`, from the cache or the log.
    async fn batch_at(&mut self, offset: u64) -> Option<RecordBatch> {
        if let Some(batch) = self.cache.find(offset) {
            return Some(batch.clone());
        }
        let batches = match self.log.read(offset, READ_CHUNK).await {
            Ok(batches) => batches,
            Err(e) => {
                tracing::error!(offset, "reading the log for delivery: {e}");
                return None;
            }
        };
        batches
            .into_iter()
            .find(|b| !b.is_control() && b.base_offset() <= offset && offset < b.next_offset())
    }

    /// Sets the gauges after a burst; measures the oldest-unacked ages when they are due.
    async fn refresh_metrics(&mut self) {
        let stats = self.log.stats();
        self.metrics.refresh(&self.subs, self.committed, stats);
        let now = Instant::now();
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

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Wall-clock milliseconds since the Unix epoch: the append timestamp of batches.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `grants` without the offsets in `removed`, split around them.
fn without(grants: Vec<Grant>, removed: &[u64]) -> Vec<Grant> {
    let removed: std::collections::BTreeSet<u64> = removed.iter().copied().collect();
    let mut out = Vec::with_capacity(grants.len());
    for g in grants {
        let mut start = g.start;
        for &o in removed.range(g.start..g.end) {
            if o > start {
                out.push(Grant {
                    start,
                    end: o,
                    count: g.count,
                });
            }
            start = o + 1;
        }
        if start < g.end {
            out.push(Grant {
                start,
                end: g.end,
                count: g.count,
            });
        }
    }
    out
}
