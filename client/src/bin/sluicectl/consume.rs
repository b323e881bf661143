//! `sluicectl consume`: prints each payload on its own line (or a JSON object per message).
//!
//! Each message is acked, or with `--nack`, `--reject [REASON]` or `--reject-invalid [REASON]`
//! returned, dead-lettered or moved to the invalid channel instead.
//!
//! With `--count N` the consumer's total credit is N, so it never takes more than N deliveries;
//! it exits after N messages, or when `--timeout` passes with none arriving. With `--no-ack`
//! every message shown stays held until the command exits, so the prefetch window is the count
//! (without one 256, at most 10 000): that many can be shown.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use sluice_client::{Client, Delivery};

use crate::output::{hex, Out};

/// Prefetch when no count limits it.
const DEFAULT_PREFETCH: u32 = 256;

/// Most messages `--no-ack` shows: each stays held (leased, in memory on both sides) until the
/// command exits, so its window is its count, and this bounds both.
const NO_ACK_MAX: u32 = 10_000;

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Channel name.
    channel: String,
    /// Subscription to attach to (default: the queue's own, or a new ephemeral one on a topic).
    #[arg(long)]
    subscription: Option<String>,
    /// Take at most this many messages, then exit.
    #[arg(long)]
    count: Option<u64>,
    /// Exit when no message arrives for this long, e.g. `5s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Do not acknowledge: the messages return to the subscription when this consumer detaches.
    /// Shows `--count` messages (default 256, at most 10000) and exits, as each stays held
    /// until then.
    #[arg(long, conflicts_with_all = ["nack", "reject", "reject_invalid"])]
    no_ack: bool,
    /// Return each message to the subscription for redelivery instead of acknowledging it.
    #[arg(long, conflicts_with_all = ["reject", "reject_invalid"])]
    nack: bool,
    /// Reject each message: it goes to the dead-letter channel with this reason.
    #[arg(
        long,
        value_name = "REASON",
        num_args = 0..=1,
        default_missing_value = DEFAULT_REASON,
        conflicts_with = "reject_invalid"
    )]
    reject: Option<String>,
    /// Reject each message as invalid: it goes to the channel's invalid channel with this reason.
    #[arg(long, value_name = "REASON", num_args = 0..=1, default_missing_value = DEFAULT_REASON)]
    reject_invalid: Option<String>,
}

/// Reason given by `--reject` and `--reject-invalid` without one.
const DEFAULT_REASON: &str = "rejected by sluicectl";

pub async fn run(client: &Client, out: &Out, args: ConsumeArgs) -> anyhow::Result<()> {
    // Held messages use up credit; with --no-ack nothing is ever given back, so the window
    // must cover every message to be shown, and the run ends there rather than wait for
    // credit that cannot come.
    let count = match (args.no_ack, args.count) {
        (true, Some(n)) if n > u64::from(NO_ACK_MAX) => {
            anyhow::bail!(
                "--no-ack shows at most {NO_ACK_MAX} messages (each stays held); got --count {n}"
            )
        }
        (true, count) => Some(count.unwrap_or(u64::from(DEFAULT_PREFETCH))),
        (false, count) => count,
    };
    if count == Some(0) {
        return Ok(());
    }
    let cap = if args.no_ack {
        NO_ACK_MAX
    } else {
        DEFAULT_PREFETCH
    };
    let prefetch = count.map_or(DEFAULT_PREFETCH, |c| c.min(u64::from(cap)) as u32);
    let mut builder = client.consumer(args.channel.clone()).prefetch(prefetch);
    if let Some(count) = count {
        builder = builder.limit(count);
    }
    if let Some(name) = &args.subscription {
        builder = builder.subscription(name.clone());
    }
    let mut consumer = builder.subscribe().await?;
    let mut handled = 0u64;
    while count.is_none_or(|c| handled < c) {
        let next = match args.timeout {
            Some(t) => match tokio::time::timeout(t, consumer.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => consumer.next().await,
        };
        let Some(delivery) = next else { break };
        let delivery = delivery?;
        print(out, &delivery)?;
        settle(&args, &delivery).await?;
        handled += 1;
    }
    consumer.close().await?;
    Ok(())
}

async fn settle(args: &ConsumeArgs, delivery: &Delivery) -> anyhow::Result<()> {
    if let Some(reason) = &args.reject {
        delivery.reject(reason.clone()).await?;
    } else if let Some(reason) = &args.reject_invalid {
        delivery.reject_invalid(reason.clone()).await?;
    } else if args.nack {
        delivery.nack(Duration::ZERO).await?;
    } else if !args.no_ack {
        delivery.ack_nowait()?;
    }
    Ok(())
}

fn print(out: &Out, d: &Delivery) -> anyhow::Result<()> {
    if !out.json {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(d.payload())?;
        stdout.write_all(b"\n")?;
        return Ok(());
    }
    let headers: BTreeMap<&str, String> = d
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let payload = match std::str::from_utf8(d.payload()) {
        Ok(text) => json!({ "payload": text }),
        Err(_) => json!({ "payload_hex": hex(d.payload()) }),
    };
    let mut object = json!({
        "partition": d.partition(),
        "offset": d.offset(),
        "id": hex(&d.id()),
        "key": d.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": headers,
        "delivery_count": d.delivery_count(),
        "timestamp": d.timestamp(),
    });
    if let (Some(object), Some(payload)) = (object.as_object_mut(), payload.as_object()) {
        object.extend(payload.clone());
    }
    out.json_line(&object)
}
