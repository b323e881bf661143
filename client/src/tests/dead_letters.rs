//! Issue-4 client features against the fake broker: producer sessions and resends, per-message
//! outcomes (duplicate, invalid), reject and redrive.

use futures::StreamExt;
use sluice_protocol::request::opcode;
use sluice_protocol::Request;

use super::fake::{Fake, BAD};
use super::{client, publish, WAIT};
use crate::{ClientError, ErrorCode, Message, Outcome};

#[tokio::test]
async fn an_idempotent_producer_resends_a_batch_whose_ack_was_lost_and_it_is_stored_once() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    let producer = client.producer("q").idempotent().build().await.unwrap();
    assert_eq!(producer.session(), Some((1, 0)));
    fake.state.lock().unwrap().lose_next_ack = true;
    let outcome = producer.send(Message::new("once")).await.unwrap();
    let original = Outcome::Duplicate {
        partition: 0,
        offset: 0,
    };
    assert_eq!(outcome, original, "the resend is answered as a duplicate");
    assert_eq!(fake.state.lock().unwrap().records.len(), 1);
    let publishes = fake.requests(opcode::PUBLISH);
    assert_eq!(publishes.len(), 2);
    assert_eq!(
        publishes[0], publishes[1],
        "the same batch bytes are resent"
    );
    let next = producer.send(Message::new("next")).await.unwrap();
    assert!(next.is_stored());
    assert_eq!(next.offset(), 1);
}

#[tokio::test]
async fn an_idempotent_producer_numbers_its_batches_per_partition() {
    let fake = Fake::start(2).await;
    let client = client(&fake).await;
    let producer = client.producer("q").idempotent().build().await.unwrap();
    let keyed = |key: &str, n: usize| {
        (0..n)
            .map(|i| Message::new(format!("{key}{i}")).key(key.to_owned()).into())
            .collect()
    };
    for _ in 0..2 {
        producer.send_batch(keyed("a", 3)).await.unwrap();
        producer.send_batch(keyed("b", 2)).await.unwrap();
    }
    let mut seen: Vec<(u32, u32, u32)> = fake
        .requests(opcode::PUBLISH)
        .into_iter()
        .map(|r| match r {
            Request::Publish(p) => (p.partition, p.batch.base_sequence(), p.batch.record_count()),
            other => panic!("{other:?}"),
        })
        .collect();
    seen.sort_unstable();
    let pa = sluice_protocol::types::partition_for_key(b"a", 2);
    let pb = sluice_protocol::types::partition_for_key(b"b", 2);
    if pa != pb {
        let mut expected = vec![(pa, 0, 3), (pa, 3, 3), (pb, 0, 2), (pb, 2, 2)];
        expected.sort_unstable();
        assert_eq!(seen, expected);
    }
}

#[tokio::test]
async fn a_plain_producer_does_not_open_a_session_or_resend() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    let producer = client.producer("q").build().await.unwrap();
    assert_eq!(producer.session(), None);
    fake.state.lock().unwrap().lose_next_ack = true;
    let err = producer.send(Message::new("x")).await.unwrap_err();
    assert!(matches!(err, ClientError::Disconnected), "{err:?}");
    assert!(fake.requests(opcode::INIT_PRODUCER).is_empty());
    assert_eq!(fake.requests(opcode::PUBLISH).len(), 1);
}

#[tokio::test]
async fn an_invalid_message_with_an_invalid_channel_is_an_outcome_naming_it() {
    let fake = Fake::start(1).await;
    fake.state.lock().unwrap().invalid_channel = Some("q.invalid".into());
    let client = client(&fake).await;
    let producer = client.producer("q").build().await.unwrap();
    let messages = vec![Message::new("ok").into(), Message::new(BAD).into()];
    let outcomes = producer.send_batch(messages).await.unwrap();
    assert!(outcomes[0].is_stored());
    let invalid = Outcome::Invalid {
        partition: 0,
        reason: "payload is not json".into(),
        routed_to: "q.invalid".into(),
    };
    assert_eq!(outcomes[1], invalid);
}

#[tokio::test]
async fn an_invalid_message_without_an_invalid_channel_fails_only_its_own_send() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    let producer = client
        .producer("q")
        .linger(std::time::Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let good = producer.enqueue(Message::new("ok")).await.unwrap();
    let bad = producer.enqueue(Message::new(BAD)).await.unwrap();
    assert!(good.await.unwrap().is_stored());
    let err = bad.await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidMessage), "{err:?}");
    assert_eq!(fake.requests(opcode::PUBLISH).len(), 1, "one batch");
}

#[tokio::test]
async fn reject_and_reject_invalid_send_reject_requests_with_their_reasons() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    publish(&client, 3).await;
    let mut consumer = client.consumer("q").subscribe().await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let delivery = tokio::time::timeout(WAIT, consumer.next()).await.unwrap();
        held.push(delivery.unwrap().unwrap());
    }
    let [a, b, c] = <[_; 3]>::try_from(held).unwrap();
    a.reject("bad total").await.unwrap();
    b.reject_invalid("not an order").await.unwrap();
    c.ack().await.unwrap();
    assert!(matches!(a.ack().await, Err(ClientError::NotHeld(_))));
    let mut rejects: Vec<(Vec<u64>, String, bool)> = fake
        .requests(opcode::REJECT)
        .into_iter()
        .map(|r| match r {
            Request::Reject(r) => (r.offsets, r.reason, r.invalid),
            other => panic!("{other:?}"),
        })
        .collect();
    rejects.sort();
    let expected = vec![
        (vec![0], "bad total".to_owned(), false),
        (vec![1], "not an order".to_owned(), true),
    ];
    assert_eq!(rejects, expected);
}

#[tokio::test]
async fn redrive_sends_the_dlq_target_and_count_and_returns_the_broker_count() {
    let fake = Fake::start(1).await;
    let client = client(&fake).await;
    assert_eq!(
        client.redrive("q.dlq", Some("q2"), Some(7)).await.unwrap(),
        7
    );
    assert_eq!(client.redrive("q.dlq", None, None).await.unwrap(), 3);
    let requests = fake.requests(opcode::REDRIVE);
    let Request::Redrive(first) = &requests[0] else {
        panic!("{requests:?}")
    };
    assert_eq!(
        (first.channel.as_str(), first.to.as_deref(), first.count),
        ("q.dlq", Some("q2"), Some(7))
    );
}
