//! Client tests against the in-test fake broker: framing, pipelining, batching, acks, errors
//! and reconnects. End-to-end tests against the real broker live in the workspace's `tests/`.

mod dead_letters;
mod fake;

use std::time::Duration;

use futures::future::join_all;
use futures::StreamExt;
use sluice_protocol::request::opcode;
use sluice_protocol::types::partition_for_key;
use sluice_protocol::Request;

use crate::types::{ChannelKind, ChannelSettings};
use crate::{Client, ClientError, ErrorCode, Message};
use fake::Fake;

const WAIT: Duration = Duration::from_secs(10);

async fn client(fake: &Fake) -> Client {
    Client::connect(fake.addr.to_string()).await.unwrap()
}

/// Publishes `n` messages through `send_batch` in one call.
async fn publish(client: &Client, n: usize) {
    let producer = client.producer("q").build().await.unwrap();
    let messages = (0..n)
        .map(|i| Message::new(format!("m{i}")).into())
        .collect();
    producer.send_batch(messages).await.unwrap();
}

#[tokio::test]
async fn concurrent_sends_are_batched_pipelined_and_get_their_offsets() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    let producer = client.producer("q").build().await.unwrap();
    let sends = (0..1000).map(|i| producer.send(Message::new(format!("m{i}"))));
    let mut offsets: Vec<u64> = join_all(sends)
        .await
        .into_iter()
        .map(|o| o.unwrap().offset())
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..1000).collect::<Vec<_>>());
    let publishes = fake.requests(opcode::PUBLISH).len();
    assert!(publishes < 1000, "{publishes} publishes for 1000 messages");
}

#[tokio::test]
async fn keyed_messages_go_to_the_partition_of_their_key() {
    let fake = Fake::start(4).await;
    let client = client(&fake).await;
    let producer = client.producer("q").build().await.unwrap();
    assert_eq!(producer.partitions(), 4);
    for key in ["a", "order-17", "zzz"] {
        let outcome = producer.send(Message::new("x").key(key)).await.unwrap();
        assert_eq!(outcome.partition(), partition_for_key(key.as_bytes(), 4));
    }
}

#[tokio::test]
async fn send_batch_splits_by_partition_and_keeps_the_callers_order() {
    let fake = Fake::start(3).await;
    let client = client(&fake).await;
    let producer = client.producer("q").build().await.unwrap();
    let keys = ["a", "b", "c", "d", "e", "f"];
    let messages = keys
        .iter()
        .map(|k| Message::new("x").key(*k).into())
        .collect();
    let outcomes = producer.send_batch(messages).await.unwrap();
    for (key, outcome) in keys.iter().zip(&outcomes) {
        assert_eq!(outcome.partition(), partition_for_key(key.as_bytes(), 3));
    }
}

#[tokio::test]
async fn broker_errors_carry_their_code() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    let settings = ChannelSettings::default();
    let err = client
        .create_channel("exists", ChannelKind::Queue, settings.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ChannelExists));
    client
        .create_channel("new", ChannelKind::Topic, settings)
        .await
        .unwrap();
}

#[tokio::test]
async fn acks_coalesce_into_ranges_and_close_waits_for_them() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    publish(&client, 500).await;
    let mut consumer = client
        .consumer("q")
        .prefetch(100)
        .subscribe()
        .await
        .unwrap();
    for expected in 0..500u64 {
        let delivery = tokio::time::timeout(WAIT, consumer.next()).await.unwrap();
        let delivery = delivery.unwrap().unwrap();
        assert_eq!(delivery.offset(), expected);
        assert_eq!(delivery.payload(), &format!("m{expected}"));
        delivery.ack_nowait().unwrap();
    }
    consumer.close().await.unwrap();
    let acks = fake.requests(opcode::ACK);
    assert!(
        acks.len() < 500,
        "{} ack frames for 500 messages",
        acks.len()
    );
    assert_eq!(fake.state.lock().unwrap().acked.len(), 500);
    assert_eq!(fake.requests(opcode::DETACH).len(), 1);
}

#[tokio::test]
async fn credit_is_never_granted_ahead_of_the_acks_that_free_it() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    publish(&client, 2000).await;
    let window = 100;
    let mut consumer = client
        .consumer("q")
        .prefetch(window)
        .subscribe()
        .await
        .unwrap();
    for _ in 0..2000 {
        let delivery = tokio::time::timeout(WAIT, consumer.next()).await.unwrap();
        delivery.unwrap().unwrap().ack_nowait().unwrap();
    }
    consumer.close().await.unwrap();
    // On the wire, every credit grant must follow the acks of the deliveries it replaces:
    // otherwise the broker hands out more than the window while acks wait unsent.
    let (mut granted, mut acked) = (0u64, 0u64);
    for request in fake.state.lock().unwrap().requests.iter() {
        match request {
            Request::Subscribe(s) => granted += u64::from(s.credit),
            Request::Credit(c) => {
                granted += u64::from(c.credit);
                assert!(
                    granted <= u64::from(window) + acked,
                    "granted {granted} with only {acked} acked"
                );
            }
            Request::Ack(a) => acked += a.ranges.iter().map(|(f, t)| t - f).sum::<u64>(),
            _ => {}
        }
    }
    assert_eq!(acked, 2000);
}

#[tokio::test]
async fn ack_resolves_once_the_broker_has_answered_and_only_once() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    publish(&client, 1).await;
    let mut consumer = client.consumer("q").subscribe().await.unwrap();
    let delivery = consumer.next().await.unwrap().unwrap();
    delivery.ack().await.unwrap();
    assert!(fake.state.lock().unwrap().acked.contains(&0));
    assert!(matches!(delivery.ack().await, Err(ClientError::NotHeld(_))));
}

#[tokio::test]
async fn a_limited_consumer_never_grants_more_than_its_limit() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    publish(&client, 20).await;
    let mut consumer = client
        .consumer("q")
        .prefetch(4)
        .limit(6)
        .subscribe()
        .await
        .unwrap();
    for _ in 0..6 {
        let delivery = tokio::time::timeout(WAIT, consumer.next()).await.unwrap();
        delivery.unwrap().unwrap().ack().await.unwrap();
    }
    consumer.close().await.unwrap();
    let granted: u32 = fake
        .requests(opcode::SUBSCRIBE)
        .iter()
        .chain(&fake.requests(opcode::CREDIT))
        .map(|r| match r {
            Request::Subscribe(s) => s.credit,
            Request::Credit(c) => c.credit,
            _ => 0,
        })
        .sum();
    assert_eq!(granted, 6);
}

#[tokio::test]
async fn a_dropped_connection_fails_in_flight_requests_and_the_next_one_reconnects() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    let producer = client.producer("q").build().await.unwrap();
    fake.state.lock().unwrap().drop_next_publish = true;
    let err = producer.send(Message::new("lost")).await.unwrap_err();
    assert!(matches!(err, ClientError::Disconnected), "{err:?}");
    let outcome = producer.send(Message::new("kept")).await.unwrap();
    assert_eq!(outcome.offset(), 0);
}

#[tokio::test]
async fn consumers_resubscribe_after_the_connection_drops() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    publish(&client, 1).await;
    let mut consumer = client.consumer("q").subscribe().await.unwrap();
    let first = consumer.next().await.unwrap().unwrap();
    fake.kill_connections();
    let again = tokio::time::timeout(WAIT, consumer.next()).await.unwrap();
    let again = again.unwrap().unwrap();
    assert_eq!(again.offset(), 0, "the unacked delivery comes again");
    assert!(matches!(first.ack().await, Err(ClientError::NotHeld(_))));
    again.ack().await.unwrap();
    assert_eq!(fake.requests(opcode::SUBSCRIBE).len(), 2);
}

#[tokio::test]
async fn connecting_to_nothing_fails_fast_with_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Client::connect(addr.to_string()).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn enqueued_messages_keep_their_order_across_many_batches_in_flight() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    let producer = client
        .producer("q")
        .max_batch_messages(7)
        .max_in_flight(8)
        .build()
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..2000 {
        pending.push(
            producer
                .enqueue(Message::new(format!("{i}")))
                .await
                .unwrap(),
        );
    }
    for (i, outcome) in pending.into_iter().enumerate() {
        assert_eq!(outcome.await.unwrap().offset(), i as u64);
    }
    assert!(fake.requests(opcode::PUBLISH).len() >= 2000 / 7);
}

#[tokio::test]
async fn a_message_too_large_for_any_batch_is_refused_by_the_told_limits() {
    // The broker's batch limit when it tells one; from an older broker that does not, the frame
    // limit less room for the request.
    for (no_batch_limit, max) in [
        (false, fake::FAKE_MAX_BATCH as usize),
        (true, fake::FAKE_MAX_FRAME as usize - 1024),
    ] {
        let fake = Fake::start(1).await;
        fake.state.lock().unwrap().no_batch_limit = no_batch_limit;
        let client = client(&fake).await;
        let producer = client.producer("q").build().await.unwrap();
        let huge = Message::new(vec![0u8; fake::FAKE_MAX_FRAME as usize]);
        match producer.send(huge).await {
            Err(ClientError::MessageTooLarge { max: told, .. }) => assert_eq!(told, max),
            other => panic!("{other:?}"),
        }
        let published = fake
            .state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| matches!(r, Request::Publish(_)))
            .count();
        assert_eq!(published, 0, "nothing was sent");
    }
}
