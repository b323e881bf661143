//! SIGTERM under load: a broker process shuts down gracefully while several publishers send as
//! fast as they can; it exits 0 within a bound, and after a restart every message it answered
//! `Stored` for is there.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, next, text, ChildBroker, PATIENCE};
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, ClientOptions, Message, Outcome};

/// Publishing tasks, each with its own connection.
const PUBLISHERS: usize = 4;
/// Messages per batch.
const BATCH: usize = 20;

child_broker_entry!();

/// Publishes batches until the broker stops answering; records every message it says it
/// stored.
async fn publish_until_refused(addr: String, task: usize, stored: Arc<Mutex<BTreeSet<String>>>) {
    // One reconnect attempt: once the broker is gone, fail instead of retrying with backoff.
    let options = ClientOptions {
        reconnect_attempts: 1,
        ..ClientOptions::default()
    };
    let Ok(client) = Client::connect_with(addr, options).await else {
        return;
    };
    let Ok(producer) = client.producer("load").build().await else {
        return;
    };
    for round in 0.. {
        let names: Vec<String> = (0..BATCH).map(|i| format!("t{task}-{round}-{i}")).collect();
        let batch = names
            .iter()
            .map(|n| Message::new(n.clone()).into_inner())
            .collect();
        let outcomes = match tokio::time::timeout(PATIENCE, producer.send_batch(batch)).await {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(_)) | Err(_) => return,
        };
        let mut stored = stored.lock().unwrap();
        for (name, outcome) in names.into_iter().zip(outcomes) {
            if matches!(outcome, Outcome::Stored { .. }) {
                stored.insert(name);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_message_stored_before_a_sigterm_under_load_is_there_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::spawn(ENTRY, dir.path());
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        partitions: Some(3),
        ..ChannelSettings::default()
    };
    client
        .create_channel("load", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let stored = Arc::new(Mutex::new(BTreeSet::new()));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|task| {
            let (addr, stored) = (broker.addr.clone(), Arc::clone(&stored));
            tokio::spawn(publish_until_refused(addr, task, stored))
        })
        .collect();
    eventually("publishers to be well under way", || async {
        stored.lock().unwrap().len() >= 2000
    })
    .await;

    let sent = std::time::Instant::now();
    broker.sigterm();
    let code = tokio::task::spawn_blocking(move || broker.wait_exit_code(PATIENCE))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "graceful shutdown exits 0");
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    for publisher in publishers {
        tokio::time::timeout(PATIENCE, publisher)
            .await
            .expect("publishers stop once the broker is gone")
            .unwrap();
    }
    let stored = std::mem::take(&mut *stored.lock().unwrap());

    let broker = ChildBroker::spawn(ENTRY, dir.path());
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let d = client.describe_channel("load").await.unwrap();
    let total = d.subscriptions[0].backlog;
    assert!(total >= stored.len() as u64, "{total} < {}", stored.len());
    let mut consumer = client
        .consumer("load")
        .prefetch(2000)
        .subscribe()
        .await
        .unwrap();
    let mut found = BTreeSet::new();
    for _ in 0..total {
        let d = next(&mut consumer).await;
        assert!(found.insert(text(&d)), "{} delivered twice", text(&d));
        d.ack_nowait().unwrap();
    }
    let lost: Vec<&String> = stored.difference(&found).take(5).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    broker.kill9();
}
