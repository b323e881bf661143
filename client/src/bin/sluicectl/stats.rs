//! `sluicectl stats`: a broker summary built from `ListChannels` and one `DescribeChannel` per
//! channel, totals first, then one row per channel.
//!
//! The figures are a snapshot per channel, not one consistent cut of the broker: a channel
//! created or deleted while the command runs may be missing (deleted ones are skipped).

use serde::Serialize;
use sluice_client::types::{ChannelDescription, ChannelKind};
use sluice_client::{Client, ClientError, ErrorCode};

use crate::output::{table, Out};

/// Totals over one channel or the whole broker.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Totals {
    /// Partitions.
    pub partitions: u64,
    /// Messages stored (next offset − first offset, summed over partitions).
    pub messages: u64,
    /// Bytes of log segments on disk.
    pub bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// Subscriptions.
    pub subscriptions: u64,
    /// Messages not yet acked, over all subscriptions.
    pub backlog: u64,
    /// Messages out with consumers.
    pub in_flight: u64,
    /// Attached consumers.
    pub consumers: u64,
    /// Age in milliseconds of the oldest unacked message, if any.
    pub oldest_unacked_ms: Option<u64>,
}

impl Totals {
    fn of(d: &ChannelDescription) -> Self {
        let mut t = Totals {
            partitions: d.partitions.len() as u64,
            subscriptions: d.subscriptions.len() as u64,
            ..Totals::default()
        };
        for p in &d.partitions {
            t.messages += p.next_offset.saturating_sub(p.first_offset);
            t.bytes += p.bytes;
            t.segments += u64::from(p.segments);
        }
        for s in &d.subscriptions {
            t.backlog += s.backlog;
            t.in_flight += s.in_flight;
            t.consumers += u64::from(s.consumers);
            t.oldest_unacked_ms = t.oldest_unacked_ms.max(s.oldest_unacked_ms);
        }
        t
    }

    fn add(&mut self, o: &Totals) {
        self.partitions += o.partitions;
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.segments += o.segments;
        self.subscriptions += o.subscriptions;
        self.backlog += o.backlog;
        self.in_flight += o.in_flight;
        self.consumers += o.consumers;
        self.oldest_unacked_ms = self.oldest_unacked_ms.max(o.oldest_unacked_ms);
    }
}

/// One channel's row.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelStats {
    /// Channel name.
    pub name: String,
    /// Queue or topic.
    pub kind: ChannelKind,
    /// Its totals.
    #[serde(flatten)]
    pub totals: Totals,
}

/// The whole summary, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerStats {
    /// Number of channels.
    pub channels: u64,
    /// Totals over every channel.
    #[serde(flatten)]
    pub totals: Totals,
    /// Per channel, in the broker's order.
    pub per_channel: Vec<ChannelStats>,
}

/// Collects the summary from the broker.
///
/// # Errors
/// Any failed request other than a channel that vanished between listing and describing.
pub async fn collect(client: &Client) -> anyhow::Result<BrokerStats> {
    let mut per_channel = Vec::new();
    for summary in client.list_channels().await? {
        let d = match client.describe_channel(&summary.name).await {
            Ok(d) => d,
            Err(ClientError::Broker {
                code: ErrorCode::UnknownChannel,
                ..
            }) => continue,
            Err(e) => return Err(e.into()),
        };
        per_channel.push(ChannelStats {
            name: d.name.clone(),
            kind: d.kind,
            totals: Totals::of(&d),
        });
    }
    let mut totals = Totals::default();
    for c in &per_channel {
        totals.add(&c.totals);
    }
    Ok(BrokerStats {
        channels: per_channel.len() as u64,
        totals,
        per_channel,
    })
}

/// Runs `sluicectl stats`.
///
/// # Errors
/// When the broker cannot be asked, or stdout cannot be written.
pub async fn run(client: &Client, out: &Out) -> anyhow::Result<()> {
    let stats = collect(client).await?;
    if out.json {
        return out.json_line(&stats);
    }
    print!("{}", render(&stats));
    Ok(())
}

/// The human form: a totals block, a blank line, a table per channel.
fn render(s: &BrokerStats) -> String {
    let t = &s.totals;
    let oldest = t.oldest_unacked_ms.map_or("-".to_owned(), age);
    let mut text = format!(
        "channels        {}\npartitions      {}\nmessages        {}\nbytes on disk   {}\n\
         segments        {}\nsubscriptions   {}\nbacklog         {}\nin flight       {}\n\
         consumers       {}\noldest unacked  {oldest}\n",
        s.channels,
        t.partitions,
        t.messages,
        t.bytes,
        t.segments,
        t.subscriptions,
        t.backlog,
        t.in_flight,
        t.consumers,
    );
    if s.per_channel.is_empty() {
        return text;
    }
    let rows = s.per_channel.iter().map(row).collect();
    let head = [
        "CHANNEL",
        "KIND",
        "PARTITIONS",
        "MESSAGES",
        "BYTES",
        "SUBSCRIPTIONS",
        "BACKLOG",
        "IN FLIGHT",
        "CONSUMERS",
    ];
    text.push('\n');
    text.push_str(&table(&head, rows));
    text
}

fn row(c: &ChannelStats) -> Vec<String> {
    let t = &c.totals;
    let numbers = [
        t.partitions,
        t.messages,
        t.bytes,
        t.subscriptions,
        t.backlog,
        t.in_flight,
        t.consumers,
    ];
    [c.name.clone(), c.kind.to_string()]
        .into_iter()
        .chain(numbers.iter().map(u64::to_string))
        .collect()
}

fn age(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}
