//! End to end: an idempotent producer against a broker running in this test process. Its
//! per-partition sequences must agree with the broker's producer state while many batches are
//! in flight, or the broker would answer `OutOfOrderSequence`.

mod common;

use common::Broker;
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_of_an_idempotent_producer_are_all_stored_in_sequence() {
    let broker = Broker::start().await;

    let client = Client::connect(broker.addr.as_str()).await.unwrap();
    let settings = ChannelSettings {
        partitions: Some(3),
        ..ChannelSettings::default()
    };
    client
        .create_channel("pay", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client
        .producer("pay")
        .idempotent()
        .max_batch_messages(7)
        .max_in_flight(8)
        .build()
        .await
        .unwrap();
    let (id, _) = producer.session().expect("a producer session");
    let mut pending = Vec::new();
    for i in 0..600 {
        let message = Message::new(format!("m{i}")).key(format!("k{}", i % 5));
        pending.push(producer.enqueue(message).await.unwrap());
    }
    let mut stored = std::collections::BTreeSet::new();
    for outcome in pending {
        let outcome = outcome.await.unwrap();
        assert!(outcome.is_stored(), "{outcome:?}");
        assert!(stored.insert((outcome.partition(), outcome.offset())));
    }
    assert_eq!(stored.len(), 600);

    let second = client.producer("pay").idempotent().build().await.unwrap();
    let (other, _) = second.session().unwrap();
    assert_ne!(other, id, "each producer gets its own id");

    broker.stop().await;
}
