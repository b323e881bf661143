//! Expiration: a message past its TTL or its channel's max_age is never delivered; it is
//! dropped, or dead-lettered with reason `expired` where the channel says so.
//!
//! The brokers run on a manual clock: a message expires when the test moves time past it.

mod common;

use std::time::Duration;

use common::{eventually, next, text, TestBroker};
use sluice_broker::clock::{Clock, ManualClock};
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_past_its_ttl_is_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let broker = TestBroker::start_on(dir.path(), &clock).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("t", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    let producer = client.producer("t").build().await.unwrap();
    producer
        .send(Message::new("short").ttl(Duration::from_secs(10)))
        .await
        .unwrap();
    producer.send(Message::new("long")).await.unwrap();
    let backlog = client.describe_channel("t").await.unwrap().subscriptions[0].backlog;
    assert_eq!(backlog, 2, "nothing expires while the clock stands still");

    clock.advance(Duration::from_secs(10));
    // The sweeper settles the expired head with no consumer attached.
    eventually("the expired message to be swept", || async {
        client.describe_channel("t").await.unwrap().subscriptions[0].backlog == 1
    })
    .await;
    let mut consumer = client.consumer("t").subscribe().await.unwrap();
    assert_eq!(text(&next(&mut consumer).await), "long");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_expires_old_messages_to_the_dead_letter_queue_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let broker = TestBroker::start_on(dir.path(), &clock).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        max_age_ms: Some(60_000),
        expired_to_dead_letter: Some(true),
        ..ChannelSettings::default()
    };
    client
        .create_channel("aged", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client.producer("aged").build().await.unwrap();
    producer.send(Message::new("stale")).await.unwrap();
    clock.advance(Duration::from_secs(60));
    producer.send(Message::new("fresh")).await.unwrap();
    let mut consumer = client.consumer("aged").subscribe().await.unwrap();
    assert_eq!(text(&next(&mut consumer).await), "fresh");
    let mut dlq = common::subscribe_when_ready(&client, "aged.dlq").await;
    let dead = next(&mut dlq).await;
    assert_eq!(text(&dead), "stale");
    assert_eq!(
        dead.header("sluice-death-reason").map(|v| v.to_vec()),
        Some(b"expired".to_vec())
    );
    assert_eq!(
        dead.header("sluice-death-count").map(|v| v.to_vec()),
        Some(b"0".to_vec())
    );
    let died_at = clock.now_ms().to_string().into_bytes();
    assert_eq!(
        dead.header("sluice-death-last-time").map(|v| v.to_vec()),
        Some(died_at),
        "death headers carry the broker's clock"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_is_dead_lettered_as_expired_even_past_max_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let broker = TestBroker::start_on(dir.path(), &clock).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        max_deliveries: Some(1),
        expired_to_dead_letter: Some(true),
        ..ChannelSettings::default()
    };
    client
        .create_channel("once", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client.producer("once").build().await.unwrap();
    let ttl = Duration::from_secs(10);
    producer.send(Message::new("late").ttl(ttl)).await.unwrap();
    let mut consumer = client.consumer("once").subscribe().await.unwrap();
    let held = next(&mut consumer).await;
    // It expires while held, then comes back past max_deliveries: expiry decides, as the
    // sweeper would have.
    clock.advance(ttl);
    held.nack(Duration::ZERO).await.unwrap();
    let mut dlq = common::subscribe_when_ready(&client, "once.dlq").await;
    let dead = next(&mut dlq).await;
    assert_eq!(text(&dead), "late");
    assert_eq!(
        dead.header("sluice-death-reason").map(|v| v.to_vec()),
        Some(b"expired".to_vec())
    );
    broker.stop().await;
}
