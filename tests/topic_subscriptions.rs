//! A topic delivers every message to every subscription; a durable subscription catches up on
//! what it missed while detached; an ephemeral one starts at the tail.

mod common;

use common::{next, text, TestBroker};
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Consumer, Message};

async fn take(consumer: &mut Consumer, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..n {
        let d = next(consumer).await;
        d.ack().await.unwrap();
        got.push(text(&d));
    }
    got
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("e{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscription_gets_every_message_and_durable_ones_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("events", ChannelKind::Topic, ChannelSettings::default())
        .await
        .unwrap();
    for sub in ["audit", "billing", "search"] {
        client
            .create_subscription("events", sub, true, None)
            .await
            .unwrap();
    }
    let producer = client.producer("events").build().await.unwrap();
    let mut audit = client
        .consumer("events")
        .subscription("audit")
        .subscribe()
        .await
        .unwrap();
    let mut billing = client
        .consumer("events")
        .subscription("billing")
        .subscribe()
        .await
        .unwrap();
    let search = client
        .consumer("events")
        .subscription("search")
        .subscribe()
        .await
        .unwrap();

    for name in names(0..10) {
        producer.send(Message::new(name)).await.unwrap();
    }
    assert_eq!(take(&mut audit, 10).await, names(0..10));
    assert_eq!(take(&mut billing, 10).await, names(0..10));

    // `search` detaches without taking anything, misses 10..20 while away, and comes back.
    search.close().await.unwrap();
    let mut ephemeral = client.consumer("events").subscribe().await.unwrap();
    for name in names(10..20) {
        producer.send(Message::new(name)).await.unwrap();
    }
    let mut search = client
        .consumer("events")
        .subscription("search")
        .subscribe()
        .await
        .unwrap();
    assert_eq!(take(&mut search, 20).await, names(0..20));
    assert_eq!(take(&mut audit, 10).await, names(10..20));
    // The ephemeral subscription started at the tail when it attached: it sees 10..20 only.
    assert_eq!(take(&mut ephemeral, 10).await, names(10..20));

    // A new ephemeral consumer sees nothing of the past: its first message is the next one.
    let mut late = client.consumer("events").subscribe().await.unwrap();
    producer.send(Message::new("after")).await.unwrap();
    assert_eq!(take(&mut late, 1).await, vec!["after".to_string()]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_subscription_on_a_queue_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("q", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    let err = client
        .create_subscription("q", "other", true, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(sluice_client::ErrorCode::WrongKind));
    let err = client.consumer("nope").subscribe().await.unwrap_err();
    assert_eq!(err.code(), Some(sluice_client::ErrorCode::UnknownChannel));
    broker.stop().await;
}
