//! `sluicectl publish`: one message from the command line, or one per line of standard input,
//! pipelined, with one output line per message in input order:
//!
//! ```text
//! stored <partition>:<offset>
//! duplicate <partition>:<offset>        the broker had it already (the original's place)
//! invalid <reason> -> <channel>         broke the contract; stored in the invalid channel
//! refused <reason>                      broke the contract, no invalid channel: not stored,
//!                                       and the run exits with an error at the end
//! ```

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use serde_json::json;
use sluice_client::{Client, ClientError, ErrorCode, Message, Outcome, PendingOutcome};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::output::Out;

/// Messages read ahead of the printed outcomes.
const READ_AHEAD: usize = 4096;

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Channel name.
    channel: String,
    /// Partitioning key.
    #[arg(long)]
    key: Option<String>,
    /// A header, `NAME=VALUE`; may be repeated.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Message id for deduplication: 32 hex digits (dashes allowed), or any text, hashed.
    #[arg(long)]
    id: Option<String>,
    /// Deduplicate on this key instead of the message id (same forms as `--id`).
    #[arg(long)]
    dedupe_key: Option<String>,
    /// Time to live, counted from the broker's append time, e.g. `30s`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
    /// The payload; without it, every line of standard input is one message.
    payload: Option<String>,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("header {s:?} is not NAME=VALUE"))
}

/// A 16-byte id or dedupe key: the hex digits given, or a hash of the text.
fn parse_id(s: &str) -> [u8; 16] {
    let digits: String = s.chars().filter(|c| *c != '-').collect();
    let mut id = [0u8; 16];
    let is_hex = digits.len() == 32 && digits.chars().all(|c| c.is_ascii_hexdigit());
    if is_hex {
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).unwrap_or(0);
        }
        return id;
    }
    let halves = [
        fnv(s.as_bytes(), 0xcbf2_9ce4_8422_2325),
        fnv(s.as_bytes(), 0x8422_2325_cbf2_9ce4),
    ];
    id[..8].copy_from_slice(&halves[0].to_be_bytes());
    id[8..].copy_from_slice(&halves[1].to_be_bytes());
    id
}

fn fnv(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl PublishArgs {
    fn message(&self, payload: Bytes) -> Message {
        let mut message = Message::new(payload);
        if let Some(key) = &self.key {
            message = message.key(key.clone());
        }
        if let Some(id) = &self.id {
            message = message.id(parse_id(id));
        }
        if let Some(key) = &self.dedupe_key {
            message = message.dedupe_key(parse_id(key));
        }
        for (name, value) in &self.headers {
            message = message.header(name.clone(), value.clone());
        }
        if let Some(ttl) = self.ttl {
            message = message.ttl(ttl);
        }
        message
    }
}

pub async fn run(client: &Client, out: &Out, args: PublishArgs) -> anyhow::Result<()> {
    let producer = client.producer(args.channel.clone()).build().await?;
    let mut refused = Refused::default();
    if let Some(payload) = &args.payload {
        let message = args.message(Bytes::from(payload.clone()));
        refused.print(out, producer.send(message).await)?;
        return refused.into_result();
    }
    let (tx, mut rx) = mpsc::channel::<PendingOutcome>(READ_AHEAD);
    let reader = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).split(b'\n');
        while let Some(mut line) = lines
            .next_segment()
            .await
            .context("reading standard input")?
        {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let message = args.message(Bytes::from(line));
            let pending = producer.enqueue(message).await?;
            if tx.send(pending).await.is_err() {
                break;
            }
        }
        anyhow::Ok(())
    });
    while let Some(pending) = rx.recv().await {
        refused.print(out, pending.await)?;
    }
    reader.await??;
    refused.into_result()
}

/// Messages refused for breaking the channel's contract: each gets its output line, and the run
/// fails at the end with the first refusal.
#[derive(Default)]
struct Refused {
    /// How many.
    count: u64,
    /// The first one's error.
    first: Option<ClientError>,
}

impl Refused {
    /// Prints one message's outcome; a refusal is recorded, any other error ends the run.
    fn print(&mut self, out: &Out, result: sluice_client::Result<Outcome>) -> anyhow::Result<()> {
        let error = match result {
            Ok(outcome) => return print(out, &outcome),
            Err(e) if e.code() == Some(ErrorCode::InvalidMessage) => e,
            Err(e) => return Err(e.into()),
        };
        self.count += 1;
        let reason = match &error {
            ClientError::Broker { message, .. } => message.clone(),
            other => other.to_string(),
        };
        self.first.get_or_insert(error);
        if out.json {
            return out.json_line(&json!({ "outcome": "refused", "reason": reason }));
        }
        println!("refused {reason}");
        Ok(())
    }

    fn into_result(self) -> anyhow::Result<()> {
        match self.first {
            None => Ok(()),
            Some(first) => Err(anyhow::Error::new(first)
                .context(format!("{} message(s) refused by the broker", self.count))),
        }
    }
}

fn print(out: &Out, outcome: &Outcome) -> anyhow::Result<()> {
    let (kind, partition, offset) = match outcome {
        Outcome::Stored { partition, offset } => ("stored", partition, offset),
        Outcome::Duplicate { partition, offset } => ("duplicate", partition, offset),
        Outcome::Invalid {
            reason, routed_to, ..
        } => return print_invalid(out, reason, routed_to),
        _ => anyhow::bail!("unknown publish outcome {outcome:?}"),
    };
    if out.json {
        return out.json_line(&json!({
            "outcome": kind,
            "partition": partition,
            "offset": offset,
        }));
    }
    println!("{kind} {partition}:{offset}");
    Ok(())
}

fn print_invalid(out: &Out, reason: &str, routed_to: &str) -> anyhow::Result<()> {
    if out.json {
        return out.json_line(&json!({
            "outcome": "invalid",
            "reason": reason,
            "routed_to": routed_to,
        }));
    }
    println!("invalid {reason} -> {routed_to}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_taken_as_given_and_text_ids_are_hashed() {
        let id = parse_id("00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(id[0], 0x00);
        assert_eq!(id[15], 0xff);
        assert_eq!(parse_id("order-1"), parse_id("order-1"));
        assert_ne!(parse_id("order-1"), parse_id("order-2"));
    }

    #[test]
    fn headers_must_be_name_equals_value() {
        assert_eq!(parse_header("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_header("nope").is_err());
    }
}
