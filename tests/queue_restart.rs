//! Messages published before a restart are consumed after it; acked ones never come back.

mod common;

use std::collections::BTreeSet;

use common::{next, text, TestBroker};
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Message};
use sluice_protocol::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_survive_a_restart_and_acked_ones_never_return() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        partitions: Some(2),
        ..ChannelSettings::default()
    };
    client
        .create_channel("jobs", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client.producer("jobs").build().await.unwrap();
    for i in 0..20 {
        producer
            .send(Message::new(format!("job-{i}")).key(format!("k{i}")))
            .await
            .unwrap();
    }
    let mut consumer = client
        .consumer("jobs")
        .prefetch(8)
        .subscribe()
        .await
        .unwrap();
    let mut acked = BTreeSet::new();
    for _ in 0..8 {
        let d = next(&mut consumer).await;
        d.ack().await.unwrap();
        acked.insert(text(&d));
    }
    drop(consumer);
    drop(producer);
    drop(client);
    broker.stop().await;

    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let mut consumer = client
        .consumer("jobs")
        .prefetch(64)
        .subscribe()
        .await
        .unwrap();
    let mut after = BTreeSet::new();
    while after.len() < 12 {
        let d = next(&mut consumer).await;
        assert!(!acked.contains(&text(&d)), "acked {} came back", text(&d));
        d.ack().await.unwrap();
        after.insert(text(&d));
    }
    let all: BTreeSet<String> = (0..20).map(|i| format!("job-{i}")).collect();
    let seen: BTreeSet<String> = acked.union(&after).cloned().collect();
    assert_eq!(seen, all);
    let described = client.describe_channel("jobs").await.unwrap();
    assert_eq!(described.subscriptions[0].backlog, 0);
    broker.stop().await;
}

/// After a restart the tail cache is empty, so every delivery is read back from the log, a chunk
/// (1 MiB) at a time; a backlog of several chunks comes out complete and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_several_log_reads_is_delivered_in_order_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("big", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    let producer = client.producer("big").build().await.unwrap();
    let filler = "x".repeat(1000);
    let mut sent = 0;
    for batch_size in (1..=60).cycle().take(120) {
        let batch = (sent..sent + batch_size)
            .map(|i| Message::new(format!("{i:05} {filler}")).into_inner())
            .collect();
        producer.send_batch(batch).await.unwrap();
        sent += batch_size;
    }
    assert!(sent * 1000 > 3 << 20, "more than three log reads: {sent}");
    broker.stop().await;

    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let mut consumer = client
        .consumer("big")
        .prefetch(500)
        .subscribe()
        .await
        .unwrap();
    for expected in 0..sent {
        let d = next(&mut consumer).await;
        let body = text(&d);
        assert_eq!(
            &body[..5],
            format!("{expected:05}"),
            "offset {}",
            d.offset()
        );
        assert_eq!(d.delivery_count(), 1);
        d.ack().await.unwrap();
    }
    broker.stop().await;
}

/// A write that fails (here: the partition's directory is moved away, so the next segment cannot
/// be created) fails the partition. That publish and every later one get a storage error naming
/// the failure, not a misleading "invalid argument"; nothing acknowledged before is lost, and with
/// the directory back a restart serves every acknowledged message again, once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_fails_the_partition_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.channel_defaults.segment_bytes = 4096;
    let broker = TestBroker::start_with(config.clone()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("jobs", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    let producer = client.producer("jobs").build().await.unwrap();
    let batch = |from: usize| -> Vec<_> {
        (from..from + 10)
            .map(|i| Message::new(format!("job-{i:04}:{}", "x".repeat(90))).into_inner())
            .collect()
    };
    producer.send_batch(batch(0)).await.unwrap();
    let partition_dir = dir.path().join("channels").join("jobs").join("0");
    let moved = dir.path().join("moved-away");
    std::fs::rename(&partition_dir, &moved).unwrap();

    let mut acked = 10;
    let failure = loop {
        match producer.send_batch(batch(acked)).await {
            Ok(_) => acked += 10,
            Err(e) => break e,
        }
        assert!(
            acked < 1000,
            "4 KiB segments must roll within 1000 messages"
        );
    };
    assert_eq!(failure.code(), Some(ErrorCode::Storage), "{failure}");
    let later = producer.send_batch(batch(5000)).await.unwrap_err();
    assert_eq!(later.code(), Some(ErrorCode::Storage), "{later}");
    assert!(later.to_string().contains("partition failed"), "{later}");

    drop(producer);
    drop(client);
    broker.stop().await;
    std::fs::rename(&moved, &partition_dir).unwrap();
    let broker = TestBroker::start_with(config).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let mut consumer = client
        .consumer("jobs")
        .prefetch(64)
        .subscribe()
        .await
        .unwrap();
    for i in 0..acked {
        let d = next(&mut consumer).await;
        assert!(
            text(&d).starts_with(&format!("job-{i:04}:")),
            "{}",
            text(&d)
        );
        d.ack().await.unwrap();
    }
    broker.stop().await;
}

/// One data directory, one broker: a second broker on the same directory is refused at start
/// (two would append to the same logs and overwrite each other's acknowledged messages), the
/// first goes on serving, and once it stops the directory can be opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_the_same_data_directory_is_refused() {
    use sluice_broker::server::{Server, ServerError};

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let refused = Server::bind(&common::config(dir.path())).await.unwrap_err();
    assert!(
        matches!(&refused, ServerError::DataDirInUse { dir: d, .. } if d == dir.path()),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("in use by another broker"),
        "{refused}"
    );

    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("jobs", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    drop(client);
    broker.stop().await;
    let again = TestBroker::start(dir.path()).await;
    let client = Client::connect(again.addr.clone()).await.unwrap();
    assert_eq!(client.list_channels().await.unwrap().len(), 1);
    again.stop().await;
}

/// A data directory that cannot be created (a file is in its place) stops the broker at start
/// with an error naming it, before anything is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_that_cannot_be_created_is_named_in_the_error() {
    use sluice_broker::server::{Server, ServerError};

    let dir = tempfile::tempdir().unwrap();
    let in_the_way = dir.path().join("data");
    std::fs::write(&in_the_way, b"a file").unwrap();
    let err = Server::bind(&common::config(&in_the_way))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServerError::DataDir { dir: d, .. } if *d == in_the_way),
        "{err}"
    );
    assert!(
        err.to_string().contains("cannot lock data directory"),
        "{err}"
    );
}
