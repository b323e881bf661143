//! Thousands of pipelined publishes on one connection are all stored, each at its own offset.

mod common;

use std::collections::BTreeSet;

use common::TestBroker;
use futures::future::join_all;
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Message, ProducerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_pipelined_publishes_get_distinct_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("p", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    // One message per batch and many batches in flight: every send is its own pipelined request.
    let options = ProducerOptions {
        max_batch_messages: 1,
        max_in_flight: 4096,
        ..ProducerOptions::default()
    };
    let producer = client.producer("p").options(options).build().await.unwrap();
    let sends = (0..5000).map(|i| producer.send(Message::new(format!("{i}"))));
    let outcomes = join_all(sends).await;
    let offsets: BTreeSet<u64> = outcomes.into_iter().map(|o| o.unwrap().offset()).collect();
    assert_eq!(offsets, (0..5000).collect());
    let d = client.describe_channel("p").await.unwrap();
    assert_eq!(d.partitions[0].next_offset, 5000);
    broker.stop().await;
}
