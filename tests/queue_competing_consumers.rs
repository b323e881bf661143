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
