//! The dead-letter channel: a message that passes `max_deliveries` or is rejected moves to the
//! dead-letter queue with its id, key, headers and payload plus the death headers, exactly once.

mod common;

use std::time::Duration;

use common::{next, text, TestBroker};
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Delivery, Message};

fn header(d: &Delivery, name: &str) -> String {
    d.header(name).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_past_max_deliveries_moves_to_the_default_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings { max_deliveries: Some(2), ..ChannelSettings::default() };
    client.create_channel("jobs", ChannelKind::Queue, settings).await.unwrap();
    let producer = client.producer("jobs").build().await.unwrap();
    let message = Message::new("poison").key("k1").header("app", "yes");
    let stored = producer.send(message).await.unwrap();

    let mut consumer = client.consumer("jobs").subscribe().await.unwrap();
    for count in 1..=2 {
        let d = next(&mut consumer).await;
        assert_eq!(d.delivery_count(), count);
        d.nack(Duration::ZERO).await.unwrap();
    }
    let mut dlq = subscribe_when_ready(&client, "jobs.dlq").await;
    let dead = next(&mut dlq).await;
    assert_eq!(text(&dead), "poison");
    assert_eq!(dead.key().map(|k| k.to_vec()), Some(b"k1".to_vec()));
    assert_eq!(header(&dead, "app"), "yes");
    assert_eq!(header(&dead, "sluice-death-reason"), "max-deliveries");
    assert_eq!(header(&dead, "sluice-death-channel"), "jobs");
    assert_eq!(header(&dead, "sluice-death-subscription"), "jobs");
    assert_eq!(header(&dead, "sluice-death-partition"), stored.partition().to_string());
    assert_eq!(header(&dead, "sluice-death-offset"), stored.offset().to_string());
    assert_eq!(header(&dead, "sluice-death-count"), "2");
    assert!(!header(&dead, "sluice-death-first-time").is_empty());
    assert_eq!(header(&dead, "sluice-death-first-time"), header(&dead, "sluice-death-last-time"));
    dead.ack().await.unwrap();

    common::eventually("the source settles", || async {
        client.describe_channel("jobs").await.unwrap().subscriptions[0].backlog == 0
    })
    .await;
    broker.stop().await;
}

/// Subscribes once the dead-letter queue exists (the first dead letter creates it).
async fn subscribe_when_ready(client: &Client, channel: &str) -> sluice_client::Consumer {
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    loop {
        match client.consumer(channel).subscribe().await {
            Ok(consumer) => return consumer,
            Err(e) if e.code() == Some(sluice_client::ErrorCode::UnknownChannel) => {
                assert!(tokio::time::Instant::now() < deadline, "{channel} never appeared");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("subscribe failed: {e}"),
        }
    }
}
