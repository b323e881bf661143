//! `/metrics` over real HTTP: after a scripted run of publishes, acks, a nack and an expired
//! lease, every counter moved by exactly the known amount and the gauges settled.
//!
//! The metrics recorder is process-global, so this is a test binary of its own: each test has
//! its own broker and endpoint, and every assertion filters by the channel the test created.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{eventually, next, TestBroker};
use prometheus_parse::{Scrape, Value};
use sluice_broker::clock::ManualClock;
use sluice_broker::exporter::MetricsEndpoint;
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The channel every assertion is about.
const CHANNEL: &str = "metered";
/// Messages published.
const PUBLISHED: u64 = 10;
/// Messages acked on their first delivery.
const ACKED_FIRST: u64 = 6;
/// Lease of the channel, on the broker's manual clock: nothing expires until the test moves
/// the clock past it.
const LEASE: Duration = Duration::from_secs(30);

/// GETs `path` from `addr` with a bare HTTP/1.1 request; returns the status line and body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// The endpoint's metrics as parsed text format, read for one channel.
struct Metrics {
    /// Every sample.
    scrape: Scrape,
    /// The `channel` label [`Metrics::sum`] and [`Metrics::count`] look at.
    channel: &'static str,
}

impl Metrics {
    /// Scrapes the endpoint, to read [`CHANNEL`]'s series.
    async fn scrape(addr: SocketAddr) -> Self {
        Self::scrape_for(addr, CHANNEL).await
    }

    /// Scrapes the endpoint, to read `channel`'s series.
    async fn scrape_for(addr: SocketAddr, channel: &'static str) -> Self {
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let lines = body.lines().map(|l| Ok(l.to_owned()));
        let scrape = Scrape::parse(lines).expect("valid Prometheus text format");
        Self { scrape, channel }
    }

    /// The sum of `name` over the channel's series whose labels include `filter`.
    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && s.labels.get("channel") == Some(self.channel))
            .filter(|s| filter.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{name} is not a scalar: {other:?}"),
            })
            .sum()
    }

    /// The channel's counter `name` as an integer.
    fn count(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        self.sum(name, filter) as u64
    }

    /// Observations of the histogram `name` (the `+Inf` bucket) over series matching `filter`.
    fn observations(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| filter.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match &s.value {
                Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(0.0, |b| b.count),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .sum()
    }
}

/// What the scripted run should leave in each counter of the test channel.
fn expected_counters(returned: u64) -> HashMap<&'static str, u64> {
    HashMap::from([
        ("sluice_messages_published_total", PUBLISHED),
        // Every message once, the nacked one again, the expired ones again.
        ("sluice_messages_delivered_total", PUBLISHED + 1 + returned),
        ("sluice_messages_redelivered_total", 1 + returned),
        ("sluice_messages_acked_total", PUBLISHED),
        ("sluice_messages_nacked_total", 1),
    ])
}

/// Waits until the test channel's gauge `name` reads `want` (gauges follow a partition's
/// burst, so they may trail the reply a client saw).
async fn settles(addr: SocketAddr, name: &str, want: u64) {
    settles_for(addr, CHANNEL, name, want).await;
}

/// Waits until `channel`'s gauge `name` reads `want`.
async fn settles_for(addr: SocketAddr, channel: &'static str, name: &str, want: u64) {
    eventually(&format!("{name} of {channel} to read {want}"), || async {
        Metrics::scrape_for(addr, channel).await.count(name, &[]) == want
    })
    .await;
}

async fn start_endpoint() -> (SocketAddr, CancellationToken) {
    let endpoint = MetricsEndpoint::bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("metrics endpoint binds");
    let addr = endpoint.local_addr();
    let stop = CancellationToken::new();
    endpoint.spawn(stop.clone());
    (addr, stop)
}

/// Creates `name` as a one-partition queue with the [`LEASE`] these tests advance past.
async fn create_metered_queue(client: &Client, name: &str) {
    let settings = ChannelSettings {
        partitions: Some(1),
        lease_ms: Some(LEASE.as_millis() as u64),
        ..ChannelSettings::default()
    };
    client
        .create_channel(name, ChannelKind::Queue, settings)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_exactly_what_clients_did() {
    // The recorder must be installed before the broker opens partitions.
    let (metrics, stop_metrics) = start_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let broker = TestBroker::start_on(dir.path(), &clock).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    create_metered_queue(&client, CHANNEL).await;

    let producer = client.producer(CHANNEL).build().await.unwrap();
    for i in 0..PUBLISHED {
        producer.send(Message::new(format!("m{i}"))).await.unwrap();
    }
    let m = Metrics::scrape(metrics).await;
    assert_eq!(m.count("sluice_messages_published_total", &[]), PUBLISHED);
    assert!(m.count("sluice_published_bytes_total", &[]) > 0);
    settles(metrics, "sluice_subscription_backlog_messages", PUBLISHED).await;
    settles(metrics, "sluice_log_segments", 1).await;
    assert!(
        Metrics::scrape(metrics)
            .await
            .count("sluice_log_bytes", &[])
            > 0
    );

    // Consume everything; ack six, nack one (redelivered at once), hold three.
    let mut consumer = client
        .consumer(CHANNEL)
        .prefetch(PUBLISHED as u32)
        .subscribe()
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..PUBLISHED {
        held.push(next(&mut consumer).await);
    }
    for d in held.drain(..ACKED_FIRST as usize) {
        d.ack().await.unwrap();
    }
    held.remove(0).nack(Duration::ZERO).await.unwrap();
    let again = next(&mut consumer).await;
    assert_eq!(again.delivery_count(), 2);
    let m = Metrics::scrape(metrics).await;
    assert_eq!(
        m.count("sluice_messages_delivered_total", &[]),
        PUBLISHED + 1
    );
    assert_eq!(m.count("sluice_messages_redelivered_total", &[]), 1);
    assert_eq!(m.count("sluice_messages_acked_total", &[]), ACKED_FIRST);
    assert_eq!(m.count("sluice_messages_nacked_total", &[]), 1);
    settles(metrics, "sluice_subscription_in_flight_messages", 4).await;
    settles(metrics, "sluice_subscription_consumers", 1).await;
    again.ack().await.unwrap();

    // Let the three held leases run out: the broker takes them back and redelivers them.
    clock.advance(LEASE);
    let expired = held.len() as u64;
    let mut redelivered = Vec::new();
    for _ in 0..expired {
        let d = next(&mut consumer).await;
        assert_eq!(d.delivery_count(), 2);
        redelivered.push(d);
    }
    for d in redelivered {
        d.ack().await.unwrap();
    }
    let lease_expired = [("reason", "lease_expired")];
    let m = Metrics::scrape(metrics).await;
    assert_eq!(
        m.count("sluice_messages_returned_total", &lease_expired),
        expired
    );
    for (name, want) in expected_counters(expired) {
        assert_eq!(m.count(name, &[]), want, "{name}");
    }

    settles(metrics, "sluice_subscription_backlog_messages", 0).await;
    settles(metrics, "sluice_subscription_in_flight_messages", 0).await;
    consumer.close().await.unwrap();
    settles(metrics, "sluice_subscription_consumers", 0).await;

    // Histograms render as Prometheus histograms with observations.
    let m = Metrics::scrape(metrics).await;
    let published = [("channel", CHANNEL)];
    assert!(m.observations("sluice_append_duration_seconds", &published) >= 1.0);
    assert!(m.observations("sluice_log_fsync_duration_seconds", &[]) >= 1.0);
    let publish = [("opcode", "publish")];
    assert!(m.observations("sluice_request_duration_seconds", &publish) >= PUBLISHED as f64);
    assert!(m.sum_unlabelled("sluice_connections_accepted_total") >= 1.0);

    let (status, _) = get(metrics, "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    broker.stop().await;
    stop_metrics.cancel();
}

impl Metrics {
    /// The value of a metric with no labels.
    fn sum_unlabelled(&self, name: &str) -> f64 {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }
}

/// A channel that dead-letters on the second delivery and deduplicates by message id.
const DEAD: &str = "metered-dead";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_duplicates_are_counted_once_each() {
    let (metrics, stop_metrics) = start_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        partitions: Some(1),
        max_deliveries: Some(2),
        ..ChannelSettings::default()
    };
    client
        .create_channel(DEAD, ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client.producer(DEAD).build().await.unwrap();
    for _ in 0..2 {
        producer
            .send(Message::new("poison").id([7; 16]))
            .await
            .unwrap();
    }
    let m = Metrics::scrape_for(metrics, DEAD).await;
    assert_eq!(m.count("sluice_messages_published_total", &[]), 1);
    assert_eq!(m.count("sluice_messages_deduplicated_total", &[]), 1);

    let mut consumer = client.consumer(DEAD).subscribe().await.unwrap();
    for _ in 0..2 {
        next(&mut consumer)
            .await
            .nack(Duration::ZERO)
            .await
            .unwrap();
    }
    let max_deliveries = [("reason", "max_deliveries")];
    eventually("the dead letter to be counted", || async {
        let m = Metrics::scrape_for(metrics, DEAD).await;
        m.count("sluice_messages_dead_lettered_total", &max_deliveries) == 1
    })
    .await;
    let m = Metrics::scrape_for(metrics, DEAD).await;
    assert_eq!(m.count("sluice_messages_dead_lettered_total", &[]), 1);
    assert_eq!(m.count("sluice_messages_nacked_total", &[]), 2);
    assert_eq!(m.count("sluice_messages_delivered_total", &[]), 2);
    assert_eq!(m.count("sluice_messages_redelivered_total", &[]), 1);
    settles_for(metrics, DEAD, "sluice_subscription_backlog_messages", 0).await;
    eventually("the dead-letter queue to store it", || async {
        let dlq = Metrics::scrape_for(metrics, "metered-dead.dlq").await;
        dlq.count("sluice_messages_published_total", &[]) == 1
    })
    .await;
    consumer.close().await.unwrap();
    broker.stop().await;
    stop_metrics.cancel();
}

/// A channel whose messages expire while a consumer holds them.
const LATE: &str = "metered-late";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_ack_of_a_message_that_expired_meanwhile_is_not_counted_as_acked() {
    let (metrics, stop_metrics) = start_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let broker = TestBroker::start_on(dir.path(), &clock).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    create_metered_queue(&client, LATE).await;
    let producer = client.producer(LATE).build().await.unwrap();
    let ttl = Duration::from_secs(5);
    producer.send(Message::new("brief").ttl(ttl)).await.unwrap();
    let mut consumer = client.consumer(LATE).subscribe().await.unwrap();
    let held = next(&mut consumer).await;

    // The lease runs out after the message expired: the broker takes it back and drops it.
    clock.advance(LEASE);
    eventually("the expired message to be dropped", || async {
        let d = client.describe_channel(LATE).await.unwrap();
        d.subscriptions[0].backlog == 0
    })
    .await;
    held.ack().await.unwrap();
    let m = Metrics::scrape_for(metrics, LATE).await;
    assert_eq!(m.count("sluice_messages_expired_total", &[]), 1);
    assert_eq!(
        m.count("sluice_messages_acked_total", &[]),
        0,
        "settled once, as expired"
    );
    consumer.close().await.unwrap();
    broker.stop().await;
    stop_metrics.cancel();
}

/// A channel left with a backlog across a restart.
const RESTARTED: &str = "metered-restarted";

/// After a restart, a partition reports its backlog and oldest unacked age without any client
/// touching the channel (an alert on the age must fire when the consumers are gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_are_set_after_a_restart_without_any_request() {
    let (metrics, stop_metrics) = start_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    create_metered_queue(&client, RESTARTED).await;
    let producer = client.producer(RESTARTED).build().await.unwrap();
    for i in 0..3 {
        producer.send(Message::new(format!("m{i}"))).await.unwrap();
    }
    settles_for(
        metrics,
        RESTARTED,
        "sluice_subscription_backlog_messages",
        3,
    )
    .await;
    drop(producer);
    drop(client);
    let broker = broker.restart().await;
    eventually(
        "the restarted partition to report its backlog and age",
        || async {
            let m = Metrics::scrape_for(metrics, RESTARTED).await;
            m.count("sluice_subscription_backlog_messages", &[]) == 3
                && m.sum("sluice_oldest_unacked_age_seconds", &[]) > 0.0
        },
    )
    .await;
    broker.stop().await;
    stop_metrics.cancel();
}

/// Every request answered with an error counts in `sluice_request_errors_total` by code; only a
/// frame refused with its connection counts in `sluice_protocol_errors_total` (DESIGN §2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_answered_with_an_error_are_counted_by_code() {
    let (metrics, stop_metrics) = start_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    // Summed over every series of `metric` (with `code` when given): the recorder is
    // process-wide, so the assertions below compare before and after, and no other test of
    // this binary causes these errors.
    let errors = |metric: &'static str, code: Option<&'static str>| async move {
        let m = Metrics::scrape_for(metrics, CHANNEL).await;
        m.scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| code.is_none_or(|c| s.labels.get("code") == Some(c)))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Untyped(v) => v as u64,
                _ => panic!("not a counter"),
            })
            .sum::<u64>()
    };
    const REQUEST: &str = "sluice_request_errors_total";
    const PROTOCOL: &str = "sluice_protocol_errors_total";
    let protocol_before = errors(PROTOCOL, None).await;
    let before = errors(REQUEST, Some("ChannelExists")).await;
    create_metered_queue(&client, "metered-errors").await;
    for _ in 0..2 {
        let err = client
            .create_channel(
                "metered-errors",
                ChannelKind::Queue,
                ChannelSettings::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(sluice_client::ErrorCode::ChannelExists));
    }
    assert_eq!(errors(REQUEST, Some("ChannelExists")).await, before + 2);
    assert_eq!(
        errors(PROTOCOL, None).await,
        protocol_before,
        "no frame was refused"
    );
    // A frame that cannot be parsed: refused, its connection closed, counted in both.
    let requests_before = errors(REQUEST, None).await;
    let mut raw = TcpStream::connect(broker.addr.clone()).await.unwrap();
    raw.write_all(&[0xff; 64]).await.unwrap();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).await.unwrap();
    assert!(!answer.is_empty(), "an error answer before the close");
    eventually("the refused frame to be counted", || async {
        errors(PROTOCOL, None).await == protocol_before + 1
            && errors(REQUEST, None).await == requests_before + 1
    })
    .await;
    broker.stop().await;
    stop_metrics.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_check_that_fails_is_counted_and_tried_again() {
    const HELD: &str = "metered-retention";
    let (metrics, stop_metrics) = start_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let mut config = common::config_on(dir.path(), &clock);
    config.channel_defaults.segment_bytes = 4096;
    let broker = TestBroker::start_with(config).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        partitions: Some(1),
        retention_max_bytes: Some(8192),
        ..ChannelSettings::default()
    };
    client
        .create_channel(HELD, ChannelKind::Queue, settings)
        .await
        .unwrap();
    // The ids of the segments retention deletes must be archived first; a file where the
    // archive directory belongs makes that fail.
    let blocker = dir.path().join(format!("channels/{HELD}/0.ids"));
    std::fs::write(&blocker, b"in the way").unwrap();
    let producer = client.producer(HELD).build().await.unwrap();
    for i in 0..100u8 {
        let message = Message::new("x".repeat(100)).id([i; 16]);
        producer.send(message).await.unwrap();
    }
    let failures = || async {
        Metrics::scrape_for(metrics, HELD)
            .await
            .count("sluice_retention_failures_total", &[])
    };
    eventually("retention failures to be counted", || async {
        failures().await >= 2
    })
    .await;
    let d = client.describe_channel(HELD).await.unwrap();
    assert_eq!(d.partitions[0].first_offset, 0, "nothing was deleted");

    std::fs::remove_file(&blocker).unwrap();
    eventually("retention to delete segments once it can", || async {
        let d = client.describe_channel(HELD).await.unwrap();
        d.partitions[0].first_offset > 0
    })
    .await;
    broker.stop().await;
    stop_metrics.cancel();
}
