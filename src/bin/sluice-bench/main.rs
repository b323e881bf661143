//! `sluice-bench`: an open-loop load generator on the client crate.
//!
//! Producers publish batches on a fixed schedule (the target rate); a batch's latency is timed
//! from its *scheduled* send, so a broker that falls behind shows up as latency instead of
//! silently lowering the offered load. Each payload carries its scheduled time, so consumers
//! measure publish→deliver latency too. Every consumer acks every message individually.
//!
//! ```text
//! sluice-bench --producers 1 --consumers 1 --size 100 --batch 100 --in-flight 16 --duration 30s
//! sluice-bench --rate 200000 --count 5000000
//! ```

mod consume;
mod produce;
mod stats;
mod stop;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sluice_client::types::{ChannelKind, ChannelSettings, PayloadFormat};
use sluice_client::{Client, ErrorCode};
use stop::Stop;
use tokio::time::Instant;

use stats::{Counters, Report};

/// Load generator for a Sluice broker.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-bench", version)]
pub struct Args {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:7480")]
    pub broker: String,
    /// Channel to use; by default a fresh queue `bench-<time>` that is deleted afterwards.
    #[arg(long)]
    pub channel: Option<String>,
    /// Partitions of the created channel.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Producer tasks, each with its own connection.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer tasks, each with its own connection, competing on the queue.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Payload bytes per message (at least 8: the send time travels in the payload).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Messages per publish batch.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Batches in flight per producer.
    #[arg(long, default_value_t = 16)]
    pub in_flight: usize,
    /// Consumer prefetch window (default: 4 batches, at least 256).
    #[arg(long)]
    pub prefetch: Option<u32>,
    /// Target total publish rate in messages per second; 0 publishes as fast as the window
    /// allows (closed loop).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// How long to publish.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Publish this many messages in total instead of running for a duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// How long consumers may stay idle after publishing ends before the run stops.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub drain_timeout: Duration,
    /// Keep the created channel afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Give every message a random id, so the broker's message-id deduplication does its work.
    #[arg(long)]
    pub ids: bool,
    /// Send JSON payloads to a channel whose contract requires JSON (payload_format = json).
    #[arg(long)]
    pub json: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(mut args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.size >= 8, "--size must be at least 8 bytes");
    anyhow::ensure!(
        !args.json || args.size >= sluice_bench_common::JSON_STAMP_BYTES,
        "--json needs --size of at least {} bytes",
        sluice_bench_common::JSON_STAMP_BYTES
    );
    anyhow::ensure!(
        args.producers > 0 && args.batch > 0,
        "need producers and a batch size"
    );
    let admin = Client::connect(args.broker.clone()).await?;
    let created = args.channel.is_none();
    let channel = args.channel.clone().unwrap_or_else(fresh_name);
    args.channel = Some(channel.clone());
    if created {
        let settings = ChannelSettings {
            partitions: Some(args.partitions),
            payload_format: args.json.then_some(PayloadFormat::Json),
            ..ChannelSettings::default()
        };
        match admin
            .create_channel(&channel, ChannelKind::Queue, settings)
            .await
        {
            Err(e) if e.code() == Some(ErrorCode::ChannelExists) => {}
            other => other.context("creating the bench channel")?,
        }
    }
    let report = bench(Arc::new(args.clone()), &channel).await;
    if created && !args.keep {
        let _ = admin.delete_channel(&channel).await;
    }
    report?.print(&args);
    Ok(())
}

async fn bench(args: Arc<Args>, channel: &str) -> anyhow::Result<Report> {
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let stop_consumers = Stop::new();
    let mut consumers = Vec::new();
    for _ in 0..args.consumers {
        let task = consume::Task::start(&args, channel, start, counters.clone()).await?;
        consumers.push(tokio::spawn(task.run(stop_consumers.clone())));
    }
    let publishing = Stop::new();
    let progress = tokio::spawn(stats::progress(
        counters.clone(),
        start,
        publishing.clone(),
        args.consumers > 0,
    ));
    let mut producers = Vec::new();
    for index in 0..args.producers {
        let task = produce::Task::start(&args, channel, index, start, counters.clone()).await?;
        producers.push(tokio::spawn(task.run()));
    }
    let mut report = Report::new();
    for producer in producers {
        report.publish.add(&producer.await??)?;
    }
    report.publish_done = start.elapsed();
    publishing.stop();
    if args.consumers > 0 {
        stats::wait_drained(&counters, args.drain_timeout).await;
    }
    stop_consumers.stop();
    for consumer in consumers {
        report.deliver.add(&consumer.await??)?;
    }
    report.consume_done = counters.last_consumed_at();
    progress.abort();
    report.counters = counters;
    Ok(report)
}

fn fresh_name() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("bench-{millis}")
}
