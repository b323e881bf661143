//! A bench producer: publishes its share of batches on schedule, keeps up to `--in-flight`
//! batches outstanding, and records publish→ack latency from each batch's scheduled time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_bench_common::{ns_between, payload_at, stamped_batch};
use sluice_client::{Client, NewMessage, Outcome, Producer};
use tokio::time::Instant;

use crate::stats::{histogram, Counters};
use crate::Args;

/// One producer's state.
pub struct Task {
    /// Publishes through its own connection.
    producer: Producer,
    /// Run settings.
    args: Arc<Args>,
    /// Messages this producer publishes in count mode.
    share: Option<u64>,
    /// Time between batches when the rate is limited.
    interval: Option<Duration>,
    /// Time base for payload timestamps.
    start: Instant,
    /// Progress.
    counters: Arc<Counters>,
    /// Makes the message ids of `--ids`: a fast generator rather than the thread's CSPRNG, as
    /// how an application makes its ids is its own cost, not the broker's.
    ids: SmallRng,
}

type Sent = (Instant, usize, sluice_client::Result<Vec<Outcome>>);

impl Task {
    pub async fn start(
        args: &Arc<Args>,
        channel: &str,
        index: usize,
        start: Instant,
        counters: Arc<Counters>,
    ) -> anyhow::Result<Self> {
        let client = Client::connect(args.broker.clone()).await?;
        let producer = client
            .producer(channel)
            .max_in_flight(args.in_flight)
            .max_batch_messages(u32::try_from(args.batch).unwrap_or(u32::MAX))
            .max_batch_bytes(usize::MAX)
            .build()
            .await?;
        let n = args.producers as u64;
        let share = args
            .count
            .map(|c| c / n + u64::from((index as u64) < c % n));
        let per_producer = args.rate as f64 / args.producers as f64;
        let interval =
            (args.rate > 0).then(|| Duration::from_secs_f64(args.batch as f64 / per_producer));
        Ok(Self {
            producer,
            args: args.clone(),
            share,
            interval,
            start,
            counters,
            ids: SmallRng::from_os_rng(),
        })
    }

    /// Publishes until the count or duration is reached; returns the latency histogram.
    pub async fn run(mut self) -> anyhow::Result<Histogram<u64>> {
        let mut hist = histogram();
        let mut in_flight = FuturesUnordered::new();
        let end = self.start + self.args.duration;
        let first = Instant::now();
        let (mut sent, mut k) = (0u64, 0u32);
        loop {
            let n = match self.share {
                Some(share) => (share - sent).min(self.args.batch as u64) as usize,
                None => self.args.batch,
            };
            let scheduled = self.interval.map(|iv| first + iv * k);
            let now = Instant::now();
            if n == 0 || (self.share.is_none() && scheduled.unwrap_or(now) >= end) {
                break;
            }
            while in_flight.len() >= self.args.in_flight {
                self.finish(in_flight.next().await, &mut hist)?;
            }
            if let Some(due) = scheduled {
                loop {
                    tokio::select! {
                        biased;
                        Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                            self.finish(Some(done), &mut hist)?;
                        }
                        _ = tokio::time::sleep_until(due) => break,
                    }
                }
            }
            let due = scheduled.unwrap_or_else(Instant::now);
            let producer = self.producer.clone();
            let messages = self.batch(n, due);
            in_flight.push(async move { (due, n, producer.send_batch(messages).await) });
            sent += n as u64;
            k += 1;
        }
        while let Some(done) = in_flight.next().await {
            self.finish(Some(done), &mut hist)?;
        }
        Ok(hist)
    }

    fn finish(&self, done: Option<Sent>, hist: &mut Histogram<u64>) -> anyhow::Result<()> {
        let Some((due, n, result)) = done else {
            return Ok(());
        };
        result?;
        let latency = u64::try_from(due.elapsed().as_nanos()).unwrap_or(u64::MAX);
        hist.saturating_record_n(latency.max(1), n as u64);
        self.counters
            .published
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }

    /// `n` payloads carved out of one buffer, each starting with its scheduled send time.
    fn batch(&mut self, n: usize, due: Instant) -> Vec<NewMessage> {
        let size = self.args.size;
        let stamp = ns_between(self.start, due);
        let buf = if self.args.json {
            sluice_bench_common::stamped_json_batch(n, size, stamp)
        } else {
            stamped_batch(n, size, stamp)
        };
        let ids = &mut self.ids;
        (0..n)
            .map(|i| NewMessage {
                id: self.args.ids.then(|| ids.random::<[u8; 16]>()),
                ..NewMessage::new(payload_at(&buf, i, size))
            })
            .collect()
    }
}
