//! The workloads, written once against [`Driver`]: the same publish loop, consumer loop and
//! timing code for every system.
//!
//! - *phased*: publish for a while with a window of in-flight messages and no consumer, then
//!   drain everything with one consumer (separate publish and drain rates).
//! - *live*: publisher and subscribers at the same time; closed loop (a window) or open loop (a
//!   fixed rate, latency timed from each message's scheduled send, so a broker that falls
//!   behind shows up as latency rather than a lower offered load); 1 subscription or fan-out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use sluice_bench_common::{histogram, ns_between, record_since_stamp, stamped};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::driver::{Driver, Publisher, Subscriber};

/// What one cell runs.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Short label for tables and the chart.
    pub label: String,
    /// Payload bytes.
    pub size: usize,
    /// Most unconfirmed publishes; also the consumers' prefetch (capped at 1024).
    pub window: usize,
    /// Messages per second, 0 for closed loop.
    pub rate: u64,
    /// Subscriptions that each receive every message.
    pub subscriptions: usize,
    /// Publish everything first, then drain (instead of publishing and consuming together).
    pub phased: bool,
    /// How long to publish.
    pub duration: Duration,
}

/// What one cell measured (client side; the caller adds the server's CPU and memory).
pub struct Measured {
    /// Messages confirmed by the broker.
    pub published: u64,
    /// Seconds from the first publish to the last confirmation.
    pub publish_secs: f64,
    /// Deliveries over all subscriptions.
    pub delivered: u64,
    /// Seconds from the start of draining (live workloads: of publishing, so the time taken to
    /// set up subscribers does not count) to the last delivery.
    pub deliver_secs: f64,
    /// Publish→confirm latency from the scheduled send.
    pub confirm: Histogram<u64>,
    /// Publish→deliver latency from the scheduled send (empty for phased runs).
    pub deliver: Histogram<u64>,
}

/// Consumers give up after this long without a delivery once publishing has ended.
const IDLE: Duration = Duration::from_secs(10);

/// Largest consumer prefetch.
const MAX_PREFETCH: u32 = 1024;

/// Runs `w` against destination `dest` (created here).
///
/// # Errors
/// Any driver error.
pub async fn run<D: Driver>(d: Arc<D>, dest: &str, w: &Workload) -> anyhow::Result<Measured> {
    d.create(dest, w.subscriptions).await?;
    let prefetch = (w.window as u32).clamp(1, MAX_PREFETCH).max(64);
    if w.phased {
        return phased(&*d, dest, w, prefetch).await;
    }
    let start = Instant::now();
    let (target, _) = watch::channel(u64::MAX);
    let delivered = Arc::new(AtomicU64::new(0));
    let mut consumers = Consumers(Vec::new());
    for i in 0..w.subscriptions {
        let sub = d.subscriber(dest, i, prefetch).await?;
        let (target, count) = (target.subscribe(), delivered.clone());
        consumers
            .0
            .push(tokio::spawn(consume(sub, start, target, count)));
    }
    let mut publisher = d.publisher(dest).await?;
    let publishing = Instant::now();
    let (published, confirm, publish_secs) = publish(&mut publisher, start, w).await?;
    target.send_replace(published);
    wait_idle(&delivered, published * w.subscriptions as u64).await;
    target.send_replace(0);
    let mut deliver = histogram();
    let mut last = publishing;
    for consumer in &mut consumers.0 {
        let (hist, at) = consumer.await??;
        deliver.add(&hist)?;
        last = last.max(at);
    }
    Ok(Measured {
        published,
        publish_secs,
        delivered: delivered.load(Ordering::Relaxed),
        deliver_secs: last.duration_since(publishing).as_secs_f64(),
        confirm,
        deliver,
    })
}

/// Consumer tasks, aborted when dropped: a cell that fails or times out leaves none running
/// into the next cell.
struct Consumers(Vec<tokio::task::JoinHandle<anyhow::Result<Consumed>>>);

/// What one consumer recorded: publish→deliver latencies and the time of its last delivery.
type Consumed = (Histogram<u64>, Instant);

impl Drop for Consumers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Publish phase, then a drain phase with one subscriber.
async fn phased<D: Driver>(
    d: &D,
    dest: &str,
    w: &Workload,
    prefetch: u32,
) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let mut publisher = d.publisher(dest).await?;
    let (published, confirm, publish_secs) = publish(&mut publisher, start, w).await?;
    drop(publisher);
    let mut sub = d.subscriber(dest, 0, prefetch).await?;
    let (drain_start, mut last) = (Instant::now(), Instant::now());
    let mut delivered = 0;
    while delivered < published {
        match tokio::time::timeout(IDLE, sub.next()).await {
            Ok(Ok(Some(_))) => delivered += 1,
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(e)) => return Err(e),
        }
        last = Instant::now();
    }
    Ok(Measured {
        published,
        publish_secs,
        delivered,
        deliver_secs: last.duration_since(drain_start).as_secs_f64(),
        confirm,
        deliver: histogram(),
    })
}

type Confirmed = (Instant, anyhow::Result<()>);

/// Publishes for `w.duration` (on schedule when `w.rate > 0`) with at most `w.window`
/// unconfirmed; returns messages confirmed, publish→confirm latencies and the seconds taken.
async fn publish<P: Publisher>(
    p: &mut P,
    start: Instant,
    w: &Workload,
) -> anyhow::Result<(u64, Histogram<u64>, f64)> {
    let mut hist = histogram();
    let mut in_flight = FuturesUnordered::new();
    let interval = (w.rate > 0).then(|| Duration::from_secs_f64(1.0 / w.rate as f64));
    let first = Instant::now();
    let end = first + w.duration;
    let mut published = 0u64;
    for k in 0u32.. {
        let due = interval.map_or_else(Instant::now, |iv| first + iv * k);
        if due >= end {
            break;
        }
        while in_flight.len() >= w.window {
            published += finish(in_flight.next().await, &mut hist)?;
        }
        while Instant::now() < due {
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    published += finish(Some(done), &mut hist)?;
                }
                _ = tokio::time::sleep_until(due) => break,
            }
        }
        let confirm = p.publish(stamped(w.size, ns_between(start, due))).await?;
        in_flight.push(async move { (due, confirm.await) });
    }
    while let Some(done) = in_flight.next().await {
        published += finish(Some(done), &mut hist)?;
    }
    Ok((published, hist, first.elapsed().as_secs_f64()))
}

/// Records one confirmation; returns 1 if there was one.
fn finish(done: Option<Confirmed>, hist: &mut Histogram<u64>) -> anyhow::Result<u64> {
    let Some((due, result)) = done else {
        return Ok(0);
    };
    result?;
    hist.saturating_record(ns_between(due, Instant::now()).max(1));
    Ok(1)
}

/// Receives until `target` messages arrived (the target is set when publishing ends; 0 means
/// stop now, which is the only thing that interrupts a receive); returns publish→deliver latencies and the time of the last delivery.
async fn consume<S: Subscriber>(
    mut sub: S,
    start: Instant,
    mut target: watch::Receiver<u64>,
    delivered: Arc<AtomicU64>,
) -> anyhow::Result<Consumed> {
    let mut hist = histogram();
    let (mut count, mut last) = (0u64, start);
    while count < *target.borrow() {
        tokio::select! {
            biased;
            next = sub.next() => {
                let Some(payload) = next? else { break };
                record_since_stamp(&mut hist, start, &payload);
                count += 1;
                last = Instant::now();
                delivered.fetch_add(1, Ordering::Relaxed);
            }
            _ = target.wait_for(|&t| t == 0) => break,
        }
    }
    Ok((hist, last))
}

/// Waits until `expected` deliveries arrived or none arrived for [`IDLE`].
async fn wait_idle(delivered: &AtomicU64, expected: u64) {
    let mut last = (delivered.load(Ordering::Relaxed), Instant::now());
    loop {
        let now = delivered.load(Ordering::Relaxed);
        if now >= expected {
            return;
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= IDLE {
            eprintln!(
                "  consumers idle for {IDLE:?}, {} of {expected} delivered",
                now
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
