//! kill -9 of the broker with unacked deliveries: after restart all of them are delivered again,
//! nothing acked is redelivered, nothing stored is lost.

mod common;

use std::collections::BTreeSet;

use common::{next, text, ChildBroker};
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Message};

child_broker_entry!();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_loses_nothing_stored_and_redelivers_only_unacked() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::spawn(ENTRY, dir.path());
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        partitions: Some(2),
        ..ChannelSettings::default()
    };
    client
        .create_channel("orders", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client.producer("orders").build().await.unwrap();
    let batch: Vec<_> = (0..300)
        .map(|i| Message::new(format!("o{i}")).into_inner())
        .collect();
    producer.send_batch(batch).await.unwrap();

    let mut consumer = client
        .consumer("orders")
        .prefetch(100)
        .subscribe()
        .await
        .unwrap();
    let mut acked = BTreeSet::new();
    let mut unacked = BTreeSet::new();
    for i in 0..100 {
        let d = next(&mut consumer).await;
        if i % 2 == 0 {
            d.ack().await.unwrap();
            acked.insert(text(&d));
        } else {
            unacked.insert(text(&d));
        }
    }
    broker.kill9();

    let broker = ChildBroker::spawn(ENTRY, dir.path());
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let mut consumer = client
        .consumer("orders")
        .prefetch(500)
        .subscribe()
        .await
        .unwrap();
    let mut after = BTreeSet::new();
    for _ in 0..(300 - acked.len()) {
        let d = next(&mut consumer).await;
        let t = text(&d);
        assert!(!acked.contains(&t), "acked {t} was redelivered");
        if unacked.contains(&t) {
            assert!(d.delivery_count() >= 1);
        }
        assert!(after.insert(t), "duplicate after restart");
        d.ack().await.unwrap();
    }
    assert!(
        unacked.is_subset(&after),
        "every unacked delivery came again"
    );
    let all: BTreeSet<String> = (0..300).map(|i| format!("o{i}")).collect();
    assert_eq!(acked.union(&after).cloned().collect::<BTreeSet<_>>(), all);
    let d = client.describe_channel("orders").await.unwrap();
    assert_eq!(d.subscriptions[0].backlog, 0);
    broker.kill9();
}
