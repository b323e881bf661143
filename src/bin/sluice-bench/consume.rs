//! A bench consumer: acks every message individually and records publish→deliver latency from
//! the scheduled send time carried in each payload.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use sluice_client::{Client, Consumer, Delivery};
use tokio::time::Instant;

use crate::stats::{histogram, ns_since, Counters};
use crate::stop::Stop;
use crate::Args;

/// Deliveries counted locally before the shared counter is updated.
const FLUSH_EVERY: u64 = 1024;

/// One consumer's state.
pub struct Task {
    /// Receives through its own connection.
    consumer: Consumer,
    /// Time base of payload timestamps.
    start: Instant,
    /// Progress.
    counters: Arc<Counters>,
    /// Deliveries not yet added to `counters`.
    unreported: u64,
}

impl Task {
    pub async fn start(
        args: &Args,
        channel: &str,
        start: Instant,
        counters: Arc<Counters>,
    ) -> anyhow::Result<Self> {
        let client = Client::connect(args.broker.clone()).await?;
        let window = (args.batch as u32).saturating_mul(4).max(256);
        let consumer = client
            .consumer(channel)
            .prefetch(args.prefetch.unwrap_or(window))
            .subscribe()
            .await?;
        Ok(Self {
            consumer,
            start,
            counters,
            unreported: 0,
        })
    }

    /// Consumes until stopped; returns the latency histogram.
    pub async fn run(mut self, stop: Stop) -> anyhow::Result<Histogram<u64>> {
        let mut hist = histogram();
        loop {
            let next = match self.consumer.next().now_or_never() {
                Some(next) => next,
                None => {
                    self.report();
                    tokio::select! {
                        biased;
                        _ = stop.stopped() => break,
                        next = self.consumer.next() => next,
                    }
                }
            };
            let Some(delivery) = next else { break };
            self.handle(&delivery?, &mut hist)?;
            if self.unreported >= FLUSH_EVERY {
                self.report();
                if stop.is_stopped() {
                    break;
                }
            }
        }
        self.report();
        self.consumer.close().await?;
        Ok(hist)
    }

    fn handle(&mut self, delivery: &Delivery, hist: &mut Histogram<u64>) -> anyhow::Result<()> {
        sluice_bench_common::record_since_stamp(hist, self.start, delivery.payload());
        delivery.ack_nowait()?;
        self.unreported += 1;
        Ok(())
    }

    fn report(&mut self) {
        if self.unreported > 0 {
            self.counters
                .consumed
                .fetch_add(self.unreported, Ordering::Relaxed);
            self.counters
                .last_consumed_ns
                .store(ns_since(self.start), Ordering::Relaxed);
            self.unreported = 0;
        }
    }
}
