//! Messages published before a restart are consumed after it; acked ones never come back.

mod common;

use std::collections::BTreeSet;

use common::{next, text, TestBroker};
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Message};

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
