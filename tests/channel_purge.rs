//! The Channel Purger: `purge` drops a channel's stored messages (or one subscription's
//! backlog) up to its tail; consumers stay attached and new messages flow at once; whole
//! segments below the new low-water mark leave the disk; cursors and dedupe state survive a
//! restart (graceful and kill -9) through the partition's state snapshot.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{next, text, ChildBroker, TestBroker, CHILD_SEGMENT_BYTES_ENV};
use sluice_broker::config::BrokerConfig;
use sluice_client::types::{ChannelDescription, ChannelKind, ChannelSettings};
use sluice_client::{Client, ErrorCode, Message, Outcome};

/// The smallest segment the broker accepts, so a few hundred messages fill many segments.
const SEGMENT_BYTES: u64 = 4096;

child_broker_entry!();

fn small_segments(dir: &Path) -> BrokerConfig {
    let mut config = common::config(dir);
    config.channel_defaults.segment_bytes = SEGMENT_BYTES;
    config
}

fn one_partition() -> ChannelSettings {
    ChannelSettings {
        partitions: Some(1),
        ..ChannelSettings::default()
    }
}

/// `count` messages of about 100 bytes, named `{prefix}{i}`, one batch each ten.
async fn publish(client: &Client, channel: &str, prefix: &str, count: usize) {
    let producer = client.producer(channel).build().await.unwrap();
    for chunk in (0..count).collect::<Vec<_>>().chunks(10) {
        let batch = chunk
            .iter()
            .map(|i| Message::new(format!("{prefix}{i}:{}", "x".repeat(90))).into_inner())
            .collect();
        producer.send_batch(batch).await.unwrap();
    }
}

fn disk(d: &ChannelDescription) -> (u32, u64) {
    let segments = d.partitions.iter().map(|p| p.segments).sum();
    let bytes = d.partitions.iter().map(|p| p.bytes).sum();
    (segments, bytes)
}

fn backlogs(d: &ChannelDescription) -> BTreeMap<String, (u64, u64)> {
    d.subscriptions
        .iter()
        .map(|s| (s.name.clone(), (s.backlog, s.ack_floor)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_queue_drops_its_backlog_and_later_messages_reach_the_attached_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(small_segments(dir.path())).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("jobs", ChannelKind::Queue, one_partition())
        .await
        .unwrap();
    let mut consumer = client
        .consumer("jobs")
        .prefetch(1)
        .subscribe()
        .await
        .unwrap();
    publish(&client, "jobs", "old", 400).await;
    let held = next(&mut consumer).await;
    assert!(text(&held).starts_with("old0:"));
    let before = client.describe_channel("jobs").await.unwrap();
    assert_eq!(before.subscriptions[0].backlog, 400);
    let (segments, bytes) = disk(&before);
    assert!(segments > 3, "{segments} segments");

    client.purge("jobs", None).await.unwrap();

    let after = client.describe_channel("jobs").await.unwrap();
    assert_eq!(after.subscriptions[0].backlog, 0);
    assert_eq!(after.subscriptions[0].in_flight, 0);
    assert_eq!(after.partitions[0].first_offset, 400);
    let (segments_after, bytes_after) = disk(&after);
    assert!(segments_after < segments, "{segments_after} of {segments}");
    assert!(bytes_after < bytes / 4, "{bytes_after} of {bytes}");
    // The purged delivery's ack is harmless and frees the consumer's window.
    held.ack().await.unwrap();
    publish(&client, "jobs", "new", 3).await;
    for i in 0..3 {
        let d = next(&mut consumer).await;
        assert!(text(&d).starts_with(&format!("new{i}:")), "{}", text(&d));
        d.ack().await.unwrap();
    }
    let d = client.describe_channel("jobs").await.unwrap();
    assert_eq!(d.subscriptions[0].backlog, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_one_topic_subscription_leaves_the_others_backlog_intact() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(small_segments(dir.path())).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("news", ChannelKind::Topic, one_partition())
        .await
        .unwrap();
    for name in ["a", "b"] {
        client
            .create_subscription("news", name, true, None)
            .await
            .unwrap();
    }
    publish(&client, "news", "n", 200).await;
    let (segments, _) = disk(&client.describe_channel("news").await.unwrap());

    client.purge("news", Some("a")).await.unwrap();

    let d = client.describe_channel("news").await.unwrap();
    assert_eq!(backlogs(&d)["a"], (0, 200));
    assert_eq!(backlogs(&d)["b"], (200, 0));
    assert_eq!(disk(&d).0, segments, "b still needs every segment");
    let err = client.purge("news", Some("nobody")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownSubscription));
    let mut b = client
        .consumer("news")
        .subscription("b")
        .prefetch(300)
        .subscribe()
        .await
        .unwrap();
    for i in 0..200 {
        let d = next(&mut b).await;
        assert!(text(&d).starts_with(&format!("n{i}:")));
        d.ack().await.unwrap();
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_state_is_the_same_after_purge_and_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(small_segments(dir.path())).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("feed", ChannelKind::Topic, one_partition())
        .await
        .unwrap();
    for name in ["keep", "drop"] {
        client
            .create_subscription("feed", name, true, None)
            .await
            .unwrap();
    }
    // Acks interleaved with messages, so some commands sit in segments that get deleted.
    let mut keep = client
        .consumer("feed")
        .subscription("keep")
        .prefetch(1000)
        .subscribe()
        .await
        .unwrap();
    for round in 0..4 {
        publish(&client, "feed", &format!("r{round}-"), 60).await;
        for i in 0..60 {
            let d = next(&mut keep).await;
            if round < 3 || i % 3 != 0 {
                d.ack().await.unwrap();
            } // else left unacked: gaps above the floor
        }
    }
    // Closing returns what it holds: one logged return each, so they come back as count 2.
    keep.close().await.unwrap();
    let (segments, _) = disk(&client.describe_channel("feed").await.unwrap());

    client.purge("feed", Some("drop")).await.unwrap();

    let before = client.describe_channel("feed").await.unwrap();
    assert!(
        disk(&before).0 < segments,
        "segments below keep's floor went"
    );
    assert!(before.partitions[0].first_offset > 0);
    broker.stop().await;

    let broker = TestBroker::start_with(small_segments(dir.path())).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let after = client.describe_channel("feed").await.unwrap();
    assert_eq!(backlogs(&after), backlogs(&before));
    assert_eq!(after.partitions, before.partitions);
    let mut keep = client
        .consumer("feed")
        .subscription("keep")
        .prefetch(1000)
        .subscribe()
        .await
        .unwrap();
    let expected = before.subscriptions.iter().find(|s| s.name == "keep");
    for _ in 0..expected.unwrap().backlog {
        let d = next(&mut keep).await;
        let round3 = text(&d).starts_with("r3-");
        assert!(round3, "only round 3 had unacked messages: {}", text(&d));
        assert_eq!(d.delivery_count(), 2, "offset {}", d.offset());
        d.ack().await.unwrap();
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_survives_kill_nine_and_sigterm_and_dedupe_still_answers_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(CHILD_SEGMENT_BYTES_ENV, "4096")];
    let broker = ChildBroker::spawn_with_env(ENTRY, dir.path(), &env);
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("pay", ChannelKind::Queue, one_partition())
        .await
        .unwrap();
    let producer = client.producer("pay").build().await.unwrap();
    let first = producer
        .send(Message::new("charge").id([7; 16]))
        .await
        .unwrap();
    let Outcome::Stored { offset, .. } = first else {
        panic!("{first:?}")
    };
    publish(&client, "pay", "p", 300).await;
    client.purge("pay", None).await.unwrap();
    let purged = client.describe_channel("pay").await.unwrap();
    assert_eq!(purged.subscriptions[0].backlog, 0);
    assert_eq!(purged.partitions[0].first_offset, 301);
    broker.kill9();

    for restart in ["kill -9", "SIGTERM"] {
        let broker = ChildBroker::spawn_with_env(ENTRY, dir.path(), &env);
        let client = Client::connect(broker.addr.clone()).await.unwrap();
        let d = client.describe_channel("pay").await.unwrap();
        assert_eq!(backlogs(&d), backlogs(&purged), "after {restart}");
        assert_eq!(d.partitions, purged.partitions, "after {restart}");
        let producer = client.producer("pay").build().await.unwrap();
        let again = producer
            .send(Message::new("charge").id([7; 16]))
            .await
            .unwrap();
        assert_eq!(
            again,
            Outcome::Duplicate {
                partition: 0,
                offset
            }
        );
        match restart {
            "kill -9" => broker.kill9(),
            _ => {
                broker.sigterm();
                let code = broker.wait_exit_code(common::PATIENCE);
                assert_eq!(code, Some(0));
            }
        }
    }
    let broker = ChildBroker::spawn_with_env(ENTRY, dir.path(), &env);
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let mut consumer = client.consumer("pay").subscribe().await.unwrap();
    publish(&client, "pay", "fresh", 1).await;
    assert!(text(&next(&mut consumer).await).starts_with("fresh0:"));
    broker.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_published_after_a_purge_under_load_are_all_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(small_segments(dir.path())).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        partitions: Some(2),
        ..ChannelSettings::default()
    };
    client
        .create_channel("busy", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let purged = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (client, purged) = (client.clone(), Arc::clone(&purged));
        tokio::spawn(async move {
            let producer = client.producer("busy").build().await.unwrap();
            let mut after = BTreeSet::new();
            for i in 0.. {
                let late = purged.load(Ordering::SeqCst);
                let name = format!("b{i}");
                producer.send(Message::new(name.clone())).await.unwrap();
                if late {
                    after.insert(name);
                }
                if after.len() >= 200 {
                    break;
                }
            }
            after
        })
    };
    common::eventually("a backlog", || async {
        let d = client.describe_channel("busy").await.unwrap();
        d.subscriptions[0].backlog >= 500
    })
    .await;
    client.purge("busy", None).await.unwrap();
    purged.store(true, Ordering::SeqCst);
    let after = publisher.await.unwrap();

    let mut consumer = client
        .consumer("busy")
        .prefetch(500)
        .subscribe()
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    while !after.is_subset(&seen) {
        let d = next(&mut consumer).await;
        seen.insert(text(&d));
        d.ack().await.unwrap();
    }
    let d = client.describe_channel("busy").await.unwrap();
    assert_eq!(d.subscriptions[0].backlog, 0);
    broker.stop().await;
}
