//! Counting and reporting: shared progress counters, latency histograms, the final report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use sluice_bench_common::micros;
pub use sluice_bench_common::{histogram, ns_since, thousands};

use crate::stop::Stop;
use crate::Args;

/// Progress shared by all tasks; updated per batch (producers) or per burst (consumers).
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages the broker has acknowledged as stored.
    pub published: AtomicU64,
    /// Messages delivered to consumers.
    pub consumed: AtomicU64,
    /// When the last delivery arrived, ns since the start.
    pub last_consumed_ns: AtomicU64,
}

impl Counters {
    /// Time from the start to the last delivery.
    pub fn last_consumed_at(&self) -> Duration {
        Duration::from_nanos(self.last_consumed_ns.load(Ordering::Relaxed))
    }
}

/// Waits until every published message is consumed, or consumers were idle for `idle`.
pub async fn wait_drained(counters: &Counters, idle: Duration) {
    let mut last = (counters.consumed.load(Ordering::Relaxed), Instant::now());
    loop {
        let consumed = counters.consumed.load(Ordering::Relaxed);
        if consumed >= counters.published.load(Ordering::Relaxed) {
            return;
        }
        if consumed != last.0 {
            last = (consumed, Instant::now());
        } else if last.1.elapsed() >= idle {
            eprintln!("consumers idle for {idle:?} with messages missing; stopping");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prints a progress line to stderr every second, from the third second on.
pub async fn progress(counters: Arc<Counters>, start: Instant, publishing: Stop, consuming: bool) {
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut before = (0, 0);
    loop {
        tick.tick().await;
        let now = (
            counters.published.load(Ordering::Relaxed),
            counters.consumed.load(Ordering::Relaxed),
        );
        let secs = start.elapsed().as_secs();
        if secs >= 3 {
            let phase = if publishing.is_stopped() {
                "draining"
            } else {
                "running"
            };
            let published = thousands(now.0 - before.0);
            if consuming {
                eprintln!(
                    "[{secs:>4}s] {phase}: published {published} msgs/s, consumed {} msgs/s, backlog {}",
                    thousands(now.1.saturating_sub(before.1)),
                    thousands(now.0.saturating_sub(now.1)),
                );
            } else {
                eprintln!("[{secs:>4}s] {phase}: published {published} msgs/s");
            }
        }
        before = now;
    }
}

/// The outcome of a run.
pub struct Report {
    /// Publish→ack latency per message.
    pub publish: Histogram<u64>,
    /// Publish→deliver latency per message.
    pub deliver: Histogram<u64>,
    /// When the last producer finished.
    pub publish_done: Duration,
    /// When the last delivery arrived.
    pub consume_done: Duration,
    /// Totals.
    pub counters: Arc<Counters>,
}

impl Report {
    pub fn new() -> Self {
        Self {
            publish: histogram(),
            deliver: histogram(),
            publish_done: Duration::ZERO,
            consume_done: Duration::ZERO,
            counters: Arc::default(),
        }
    }

    pub fn print(&self, args: &Args) {
        let rate = match args.rate {
            0 => "unlimited (closed loop)".to_owned(),
            r => format!("{} msgs/s", thousands(r)),
        };
        println!(
            "{} producer(s), {} consumer(s), {} B messages, batches of {}, {} in flight, rate {rate}",
            args.producers, args.consumers, args.size, args.batch, args.in_flight
        );
        let published = self.counters.published.load(Ordering::Relaxed);
        let consumed = self.counters.consumed.load(Ordering::Relaxed);
        throughput("published", published, self.publish_done, args.size);
        if args.consumers > 0 {
            throughput("consumed", consumed, self.consume_done, args.size);
        }
        println!(
            "{:<17}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "latency", "p50", "p90", "p99", "p99.9", "max"
        );
        latency("publish→ack", &self.publish);
        if args.consumers > 0 {
            latency("publish→deliver", &self.deliver);
        }
    }
}

fn throughput(what: &str, count: u64, elapsed: Duration, size: usize) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = count as f64 / secs;
    println!(
        "{what:<10} {} msgs in {secs:.2} s: {} msgs/s, {:.1} MB/s",
        thousands(count),
        thousands(rate as u64),
        rate * size as f64 / 1e6
    );
}

fn latency(what: &str, h: &Histogram<u64>) {
    if h.is_empty() {
        println!("{what:<17}{:>10}", "-");
        return;
    }
    let q = |q: f64| micros(h.value_at_quantile(q));
    println!(
        "{what:<17}{:>10}{:>10}{:>10}{:>10}{:>10}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        micros(h.max())
    );
}
