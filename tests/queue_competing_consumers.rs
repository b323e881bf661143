//! Competing consumers on a queue receive disjoint sets whose union is everything published.

mod common;

use std::collections::BTreeSet;

use common::{next, text, TestBroker};
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Consumer, Message};

async fn drain(
    mut consumer: Consumer,
    until: usize,
    total: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> BTreeSet<String> {
    use std::sync::atomic::Ordering;
    let mut got = BTreeSet::new();
    while total.load(Ordering::SeqCst) < until {
        let Ok(d) =
            tokio::time::timeout(std::time::Duration::from_millis(200), next(&mut consumer)).await
        else {
            continue;
        };
        assert!(got.insert(text(&d)), "same message twice to one consumer");
        d.ack().await.unwrap();
        total.fetch_add(1, Ordering::SeqCst);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_competing_consumers_split_the_queue_without_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        partitions: Some(3),
        ..ChannelSettings::default()
    };
    client
        .create_channel("work", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let a = client
        .consumer("work")
        .prefetch(4)
        .subscribe()
        .await
        .unwrap();
    let b = Client::connect(broker.addr.clone())
        .await
        .unwrap()
        .consumer("work")
        .prefetch(4)
        .subscribe()
        .await
        .unwrap();
    let producer = client.producer("work").build().await.unwrap();
    let messages: Vec<_> = (0..500)
        .map(|i| Message::new(format!("m{i}")).into_inner())
        .collect();
    producer.send_batch(messages).await.unwrap();

    let total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (a, b) = tokio::join!(drain(a, 500, total.clone()), drain(b, 500, total.clone()));
    assert!(
        a.is_disjoint(&b),
        "overlap: {:?}",
        a.intersection(&b).collect::<Vec<_>>()
    );
    let all: BTreeSet<String> = (0..500).map(|i| format!("m{i}")).collect();
    assert_eq!(a.union(&b).cloned().collect::<BTreeSet<_>>(), all);
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both consumers got work: {} / {}",
        a.len(),
        b.len()
    );
    broker.stop().await;
}

/// Messages published one at a time go to the consumers in turn: with N consumers on one
/// partition, 4N messages give each consumer exactly 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_take_turns_when_messages_come_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    for n in 2..=4 {
        let channel = format!("turns{n}");
        client
            .create_channel(&channel, ChannelKind::Queue, ChannelSettings::default())
            .await
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for c in 0..n {
            let mut consumer = client
                .consumer(&channel)
                .prefetch(64)
                .subscribe()
                .await
                .unwrap();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let d = next(&mut consumer).await;
                    if tx.send((c, text(&d))).is_err() {
                        break;
                    }
                }
            }));
        }
        let producer = client.producer(&channel).build().await.unwrap();
        let total = 4 * n;
        for i in 0..total {
            producer.send(Message::new(format!("m{i}"))).await.unwrap();
        }
        let mut per_consumer = vec![0; n];
        for _ in 0..total {
            let (c, _) = tokio::time::timeout(common::PATIENCE, rx.recv())
                .await
                .expect("a delivery in time")
                .unwrap();
            per_consumer[c] += 1;
        }
        assert_eq!(per_consumer, vec![4; n], "{n} consumers");
        drop(rx);
        tasks.into_iter().for_each(|t| t.abort());
    }
    broker.stop().await;
}
