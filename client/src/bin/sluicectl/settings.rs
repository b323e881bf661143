//! `sluicectl channel create` flags and `channel describe` lines for the channel settings:
//! partitions and lease, dead letters, expiry, the message contract and deduplication.

use std::time::Duration;

use sluice_client::types::{ChannelSettings, FsyncPolicy, PayloadFormat};

/// Settings flags of `channel create`; unset ones take the broker's defaults.
#[derive(Debug, Default, clap::Args)]
pub struct SettingsArgs {
    /// Number of partitions.
    #[arg(long)]
    partitions: Option<u32>,
    /// Default lease (ack deadline) of deliveries, e.g. `30s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    lease: Option<Duration>,
    /// Deliveries of one message before it is dead-lettered (broker default 20).
    #[arg(long, value_name = "N")]
    max_deliveries: Option<u32>,
    /// Dead-letter channel (broker default `<channel>.dlq`).
    #[arg(long = "dead-letter", value_name = "CHANNEL")]
    dead_letter: Option<String>,
    /// Dead-letter expired messages (reason `expired`) instead of dropping them.
    #[arg(long)]
    expired_to_dead_letter: bool,
    /// Age after which every message of the channel expires, e.g. `1h`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_age: Option<Duration>,
    /// Where messages that break the contract go; without it they are refused.
    #[arg(long, value_name = "CHANNEL")]
    invalid_channel: Option<String>,
    /// What payloads must parse as: json, msgpack, utf8 or bytes.
    #[arg(long, value_name = "FORMAT")]
    payload_format: Option<PayloadFormat>,
    /// Largest payload accepted, in bytes (suffixes KiB, MiB, GiB allowed).
    #[arg(long = "max-payload", value_name = "BYTES", value_parser = parse_bytes)]
    max_payload: Option<u64>,
    /// Allowed values of the `content-type` header; repeat or separate with commas.
    #[arg(long = "content-type", value_name = "TYPE", num_args = 1.., value_delimiter = ',')]
    content_types: Vec<String>,
    /// Headers every message must carry; repeat or separate with commas.
    #[arg(long = "required-header", value_name = "NAME", num_args = 1.., value_delimiter = ',')]
    required_headers: Vec<String>,
    /// Window within which a repeated message id is a duplicate, e.g. `2m`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    dedupe_window: Option<Duration>,
    /// Retention: delete stored messages older than this, consumed or not, e.g. `7days`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    retention_max_age: Option<Duration>,
    /// Retention: keep at most this many bytes per partition, consumed or not (suffixes KiB,
    /// MiB, GiB allowed).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    retention_max_bytes: Option<u64>,
    /// When a publish counts as durable: always (fdatasync before the answer; the default),
    /// interval or never (both can lose acknowledged messages in a machine crash).
    #[arg(long, value_name = "POLICY")]
    fsync: Option<FsyncPolicy>,
    /// Period of `--fsync interval`, e.g. `100ms`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    fsync_interval: Option<Duration>,
    /// Size at which a log segment rolls (suffixes KiB, MiB, GiB allowed).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    segment_bytes: Option<u64>,
}

impl SettingsArgs {
    /// The wire settings.
    pub fn settings(self) -> ChannelSettings {
        ChannelSettings {
            partitions: self.partitions,
            lease_ms: self.lease.map(millis),
            max_deliveries: self.max_deliveries,
            dead_letter_channel: self.dead_letter,
            expired_to_dead_letter: self.expired_to_dead_letter.then_some(true),
            max_age_ms: self.max_age.map(millis),
            invalid_channel: self.invalid_channel,
            payload_format: self.payload_format,
            max_payload_bytes: self.max_payload,
            content_types: self.content_types,
            required_headers: self.required_headers,
            dedupe_window_ms: self.dedupe_window.map(millis),
            retention_max_age_ms: self.retention_max_age.map(millis),
            retention_max_bytes: self.retention_max_bytes,
            fsync: self.fsync,
            fsync_interval_ms: self.fsync_interval.map(millis),
            segment_bytes: self.segment_bytes,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A byte count: digits, optionally followed by `KiB`, `MiB` or `GiB` (or `K`, `M`, `G`).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        other => return Err(format!("unknown byte unit {other:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `(label, value)` for each setting that is set, in flag order, for `channel describe`.
pub fn described(s: &ChannelSettings) -> Vec<(&'static str, String)> {
    let duration = |ms: u64| humantime::format_duration(Duration::from_millis(ms)).to_string();
    let mut lines = Vec::new();
    let mut add = |label, value: Option<String>| {
        if let Some(value) = value {
            lines.push((label, value));
        }
    };
    add("max deliveries", s.max_deliveries.map(|n| n.to_string()));
    add("dead letter", s.dead_letter_channel.clone());
    add(
        "expired to dead letter",
        s.expired_to_dead_letter
            .map(|b| if b { "yes" } else { "no" }.to_owned()),
    );
    add("max age", s.max_age_ms.map(duration));
    add("invalid channel", s.invalid_channel.clone());
    add("payload format", s.payload_format.map(|f| f.to_string()));
    add(
        "max payload",
        s.max_payload_bytes.map(|b| format!("{b} bytes")),
    );
    let list = |items: &[String]| (!items.is_empty()).then(|| items.join(", "));
    add("content types", list(&s.content_types));
    add("required headers", list(&s.required_headers));
    add("dedupe window", s.dedupe_window_ms.map(duration));
    add("retention max age", s.retention_max_age_ms.map(duration));
    add(
        "retention max bytes",
        s.retention_max_bytes.map(|b| format!("{b} bytes")),
    );
    add("fsync", s.fsync.map(|f| f.to_string()));
    add("fsync interval", s.fsync_interval_ms.map(duration));
    add(
        "segment bytes",
        s.segment_bytes.map(|b| format!("{b} bytes")),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert_eq!(parse_bytes("1M"), Ok(1 << 20));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("MiB").is_err());
    }

    #[test]
    fn only_the_settings_that_are_set_are_described() {
        let settings = ChannelSettings {
            max_deliveries: Some(5),
            content_types: vec!["application/json".into(), "text/plain".into()],
            dedupe_window_ms: Some(120_000),
            retention_max_bytes: Some(4096),
            ..ChannelSettings::default()
        };
        let lines = described(&settings);
        assert_eq!(
            lines,
            vec![
                ("max deliveries", "5".to_owned()),
                ("content types", "application/json, text/plain".to_owned()),
                ("dedupe window", "2m".to_owned()),
                ("retention max bytes", "4096 bytes".to_owned()),
            ]
        );
    }
}
