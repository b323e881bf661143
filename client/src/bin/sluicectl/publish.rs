//! `sluicectl publish`: one message from the command line, or one per line of standard input,
//! pipelined, with one output line per message in input order.

use anyhow::Context;
use bytes::Bytes;
use serde_json::json;
use sluice_client::{Client, Message, Outcome, PendingOutcome};
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
    /// The payload; without it, every line of standard input is one message.
    payload: Option<String>,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("header {s:?} is not NAME=VALUE"))
}

/// A 16-byte id: the hex digits given, or a hash of the text.
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
        for (name, value) in &self.headers {
            message = message.header(name.clone(), value.clone());
        }
        message
    }
}

pub async fn run(client: &Client, out: &Out, args: PublishArgs) -> anyhow::Result<()> {
    let producer = client.producer(args.channel.clone()).build().await?;
    if let Some(payload) = &args.payload {
        let message = args.message(Bytes::from(payload.clone()));
        return print(out, producer.send(message).await?);
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
        print(out, pending.await?)?;
    }
    reader.await?
}

fn print(out: &Out, outcome: Outcome) -> anyhow::Result<()> {
    let (partition, offset) = (outcome.partition(), outcome.offset());
    if out.json {
        return out.json_line(&json!({
            "outcome": "stored",
            "partition": partition,
            "offset": offset,
        }));
    }
    println!("stored {partition}:{offset}");
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
