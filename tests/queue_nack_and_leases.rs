//! nack requeues (now or after a delay), an expired lease redelivers, and extend prevents that.
//!
//! Delays and leases run on a manual clock the tests advance.

mod common;

use std::time::Duration;

use common::{next, text, TestBroker};
use sluice_broker::clock::ManualClock;
use sluice_client::types::{ChannelKind, ChannelSettings, SubscriptionInfo};
use sluice_client::{Client, Message};

async fn queue_with(addr: &str, name: &str, lease: Duration) -> Client {
    let client = Client::connect(addr.to_owned()).await.unwrap();
    let settings = ChannelSettings {
        lease_ms: Some(lease.as_millis() as u64),
        ..ChannelSettings::default()
    };
    client
        .create_channel(name, ChannelKind::Queue, settings)
        .await
        .unwrap();
    client
}

/// The queue's subscription as the partition sees it once it has handled every request sent
/// before and dispatched after them: the second describe is answered after the dispatch that
/// followed the first.
async fn settled(client: &Client, queue: &str) -> SubscriptionInfo {
    client.describe_channel(queue).await.unwrap();
    let d = client.describe_channel(queue).await.unwrap();
    d.subscriptions[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_message_is_redelivered_with_a_higher_count() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let broker = TestBroker::start_on(dir.path(), &clock).await;
    let client = queue_with(&broker.addr, "n", Duration::from_secs(60)).await;
    client
        .producer("n")
        .build()
        .await
        .unwrap()
        .send(Message::new("x"))
        .await
        .unwrap();
    let mut consumer = client.consumer("n").subscribe().await.unwrap();
    let first = next(&mut consumer).await;
    assert_eq!(first.delivery_count(), 1);
    first.nack(Duration::ZERO).await.unwrap();
    let again = next(&mut consumer).await;
    assert_eq!(
        (text(&again), again.offset(), again.delivery_count()),
        ("x".into(), first.offset(), 2)
    );

    let delay = Duration::from_secs(30);
    again.nack(delay).await.unwrap();
    clock.advance(delay - Duration::from_millis(1));
    let waiting = settled(&client, "n").await;
    assert_eq!(
        (waiting.backlog, waiting.in_flight),
        (1, 0),
        "redelivered before the nack delay passed"
    );
    clock.advance(Duration::from_millis(1));
    let third = next(&mut consumer).await;
    assert_eq!(third.delivery_count(), 3);
    third.ack().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_redelivers_and_extend_prevents_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let broker = TestBroker::start_on(dir.path(), &clock).await;
    let lease = Duration::from_secs(10);
    let client = queue_with(&broker.addr, "l", lease).await;
    let producer = client.producer("l").build().await.unwrap();
    producer.send(Message::new("kept")).await.unwrap();
    producer.send(Message::new("dropped")).await.unwrap();
    let mut consumer = client.consumer("l").prefetch(10).subscribe().await.unwrap();
    let kept = next(&mut consumer).await;
    let dropped = next(&mut consumer).await;
    assert_eq!(
        (text(&kept), text(&dropped)),
        ("kept".into(), "dropped".into())
    );

    // Extend `kept` past its original lease while `dropped`'s lease runs out.
    clock.advance(lease - Duration::from_secs(1));
    let held = settled(&client, "l").await;
    assert_eq!(held.in_flight, 2, "a lease ran out early");
    kept.extend(lease).await.unwrap();
    clock.advance(Duration::from_secs(1));
    // Had `kept` been returned too, it would come first (redeliveries go lowest offset first).
    let redelivered = next(&mut consumer).await;
    assert_eq!(text(&redelivered), "dropped");
    assert_eq!(redelivered.delivery_count(), 2);
    kept.ack().await.unwrap();
    redelivered.ack().await.unwrap();
    let d = client.describe_channel("l").await.unwrap();
    assert_eq!(
        (d.subscriptions[0].backlog, d.subscriptions[0].in_flight),
        (0, 0)
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_consumer_returns_its_deliveries_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = queue_with(&broker.addr, "d", Duration::from_secs(600)).await;
    client
        .producer("d")
        .build()
        .await
        .unwrap()
        .send(Message::new("held"))
        .await
        .unwrap();
    let other = Client::connect(broker.addr.clone()).await.unwrap();
    let mut first = other.consumer("d").subscribe().await.unwrap();
    assert_eq!(text(&next(&mut first).await), "held");
    let mut second = client.consumer("d").subscribe().await.unwrap();
    drop(first);
    drop(other); // the connection goes away; the lease is ten minutes, so only detach can return it
    let d = next(&mut second).await;
    assert_eq!((text(&d), d.delivery_count()), ("held".into(), 2));
    broker.stop().await;
}
