//! Retention: whole segments leave the disk once every subscription is past them, and by the
//! channel's `retention.max_bytes` / `retention.max_age` even when nobody consumed them; the
//! state after a restart is the same.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, next, text, TestBroker};
use sluice_broker::clock::ManualClock;
use sluice_broker::config::BrokerConfig;
use sluice_client::types::{ChannelDescription, ChannelKind, ChannelSettings};
use sluice_client::{Client, Message};

/// The smallest segment the broker accepts, so a few hundred messages fill many segments.
const SEGMENT_BYTES: u64 = 4096;

fn small_segments(dir: &Path) -> BrokerConfig {
    let mut config = common::config(dir);
    config.channel_defaults.segment_bytes = SEGMENT_BYTES;
    config
}

/// `count` messages of about 100 bytes, named `m{i}`, ten per batch.
async fn publish(client: &Client, channel: &str, count: usize) {
    let producer = client.producer(channel).build().await.unwrap();
    for chunk in (0..count).collect::<Vec<_>>().chunks(10) {
        let batch = chunk
            .iter()
            .map(|i| Message::new(format!("m{i}:{}", "x".repeat(90))).into_inner())
            .collect();
        producer.send_batch(batch).await.unwrap();
    }
}

async fn describe(client: &Client, channel: &str) -> ChannelDescription {
    client.describe_channel(channel).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_max_bytes_deletes_the_oldest_segments_even_when_unconsumed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(small_segments(dir.path())).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let max_bytes = 3 * SEGMENT_BYTES;
    let settings = ChannelSettings {
        retention_max_bytes: Some(max_bytes),
        ..ChannelSettings::default()
    };
    client
        .create_channel("logs", ChannelKind::Queue, settings)
        .await
        .unwrap();
    publish(&client, "logs", 400).await;
    let full = describe(&client, "logs").await.partitions[0].bytes;
    assert!(full > 2 * max_bytes, "{full} bytes");

    eventually("the log to shrink under retention.max_bytes", || async {
        describe(&client, "logs").await.partitions[0].bytes <= max_bytes
    })
    .await;

    let d = describe(&client, "logs").await;
    let first = d.partitions[0].first_offset;
    assert!(first > 0);
    assert_eq!(
        d.subscriptions[0].backlog,
        400 - first,
        "retention passed them"
    );
    broker.stop().await;

    let broker = TestBroker::start_with(small_segments(dir.path())).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let after = describe(&client, "logs").await;
    assert_eq!(after.partitions, d.partitions);
    assert_eq!(after.subscriptions[0].backlog, d.subscriptions[0].backlog);
    let mut consumer = client.consumer("logs").subscribe().await.unwrap();
    let first_delivered = next(&mut consumer).await;
    assert_eq!(first_delivered.offset(), first);
    assert!(text(&first_delivered).starts_with(&format!("m{first}:")));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_max_age_deletes_segments_whose_messages_are_all_older() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let config = BrokerConfig {
        clock: clock.clone().into(),
        ..small_segments(dir.path())
    };
    let broker = TestBroker::start_with(config).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        retention_max_age_ms: Some(60_000),
        ..ChannelSettings::default()
    };
    client
        .create_channel("ticks", ChannelKind::Queue, settings)
        .await
        .unwrap();
    publish(&client, "ticks", 300).await;
    let segments = describe(&client, "ticks").await.partitions[0].segments;
    assert!(segments > 3, "{segments} segments");

    // The age is measured on the broker's clock; how often retention looks is real time.
    clock.advance(Duration::from_secs(60));
    eventually("old segments to be deleted", || async {
        describe(&client, "ticks").await.partitions[0].segments == 1
    })
    .await;
    let d = describe(&client, "ticks").await;
    assert!(d.subscriptions[0].backlog < 300);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_every_subscription_is_past_are_deleted_without_retention_settings() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(small_segments(dir.path())).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("work", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    publish(&client, "work", 400).await;
    let before = describe(&client, "work").await.partitions[0].clone();
    assert!(before.segments > 3);
    let mut consumer = client
        .consumer("work")
        .prefetch(100)
        .subscribe()
        .await
        .unwrap();
    for _ in 0..200 {
        next(&mut consumer).await.ack().await.unwrap();
    }

    eventually("consumed segments to be deleted", || async {
        let p = &describe(&client, "work").await.partitions[0];
        p.segments < before.segments && p.first_offset > 0
    })
    .await;
    let d = describe(&client, "work").await;
    assert!(
        d.partitions[0].first_offset <= 200,
        "nothing unconsumed went"
    );
    assert_eq!(d.subscriptions[0].backlog, 200);
    for i in 200..400 {
        let d = next(&mut consumer).await;
        assert!(text(&d).starts_with(&format!("m{i}:")));
        d.ack().await.unwrap();
    }
    broker.stop().await;
}
