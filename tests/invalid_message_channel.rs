//! The invalid-message channel: messages that break a channel's contract are never delivered to
//! its consumers; they are stored in the invalid channel, or refused when there is none, while
//! valid messages of the same batch are stored normally.

mod common;

use common::{next, text, TestBroker};
use sluice_client::types::{ChannelKind, ChannelSettings, PayloadFormat};
use sluice_client::{Client, ErrorCode, Message, Outcome};

fn contract(invalid_channel: Option<&str>) -> ChannelSettings {
    ChannelSettings {
        payload_format: Some(PayloadFormat::Json),
        max_payload_bytes: Some(64),
        content_types: vec!["application/json".into()],
        required_headers: vec!["trace-id".into()],
        invalid_channel: invalid_channel.map(str::to_owned),
        ..ChannelSettings::default()
    }
}

fn good(body: &str) -> Message {
    Message::new(body.to_owned())
        .header("content-type", "application/json")
        .header("trace-id", "t1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_messages_go_to_the_invalid_channel_and_valid_ones_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel(
            "orders",
            ChannelKind::Queue,
            contract(Some("orders.invalid")),
        )
        .await
        .unwrap();
    let producer = client.producer("orders").build().await.unwrap();
    let batch = vec![
        good(r#"{"n":1}"#).into_inner(),
        good("not json").into_inner(),
        Message::new(r#"{"n":3}"#)
            .header("content-type", "application/json")
            .into_inner(),
        Message::new(r#"{"n":4}"#)
            .header("content-type", "text/plain")
            .header("trace-id", "t1")
            .into_inner(),
        good(&format!(r#"{{"pad":"{}"}}"#, "x".repeat(80))).into_inner(),
        good(r#"{"n":6}"#).into_inner(),
    ];
    let outcomes = producer.send_batch(batch).await.unwrap();
    let reasons: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Stored { .. } => "stored".to_string(),
            Outcome::Invalid {
                reason, routed_to, ..
            } => {
                assert_eq!(routed_to, "orders.invalid");
                reason.split(':').next().unwrap().to_string()
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "stored",
            "payload-format",
            "missing-header",
            "content-type",
            "payload-too-large",
            "stored"
        ]
    );

    let mut consumer = client.consumer("orders").subscribe().await.unwrap();
    assert_eq!(text(&next(&mut consumer).await), r#"{"n":1}"#);
    assert_eq!(text(&next(&mut consumer).await), r#"{"n":6}"#);
    let d = client.describe_channel("orders").await.unwrap();
    assert_eq!(
        d.partitions.iter().map(|p| p.next_offset).sum::<u64>(),
        2,
        "only valid ones stored"
    );

    let mut invalid = client
        .consumer("orders.invalid")
        .prefetch(10)
        .subscribe()
        .await
        .unwrap();
    let first = next(&mut invalid).await;
    assert_eq!(text(&first), "not json");
    assert!(first
        .header("sluice-invalid-reason")
        .unwrap()
        .starts_with(b"payload-format"));
    assert_eq!(
        first.header("sluice-invalid-channel").map(|v| v.to_vec()),
        Some(b"orders".to_vec())
    );
    for _ in 0..3 {
        next(&mut invalid).await;
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_invalid_channel_a_broken_message_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("strict", ChannelKind::Queue, contract(None))
        .await
        .unwrap();
    let producer = client.producer("strict").build().await.unwrap();
    let err = producer.send(good("nope")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidMessage));
    let ok = producer.send(good("{}")).await.unwrap();
    assert_eq!(
        ok,
        Outcome::Stored {
            partition: 0,
            offset: 0
        }
    );
    let d = client.describe_channel("strict").await.unwrap();
    assert_eq!(d.partitions[0].next_offset, 1);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_can_move_a_delivered_message_to_the_invalid_channel() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        invalid_channel: Some("bad".into()),
        ..ChannelSettings::default()
    };
    client
        .create_channel("in", ChannelKind::Queue, settings)
        .await
        .unwrap();
    client
        .producer("in")
        .build()
        .await
        .unwrap()
        .send(Message::new("weird"))
        .await
        .unwrap();
    let mut consumer = client.consumer("in").subscribe().await.unwrap();
    next(&mut consumer)
        .await
        .reject_invalid("schema v1 only")
        .await
        .unwrap();
    let mut bad = client.consumer("bad").subscribe().await.unwrap();
    let moved = next(&mut bad).await;
    assert_eq!(text(&moved), "weird");
    assert_eq!(
        moved.header("sluice-invalid-reason").map(|v| v.to_vec()),
        Some(b"schema v1 only".to_vec())
    );
    let d = client.describe_channel("in").await.unwrap();
    assert_eq!(d.subscriptions[0].backlog, 0);
    broker.stop().await;
}

/// Invalid copies keep their id but are deduplicated on where they came from: a message refused
/// at publish and a later one with the same id, moved by its consumer, are both kept in the
/// invalid channel (deduplicating copies on the id silently lost the second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_copies_sharing_an_id_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("in", ChannelKind::Queue, contract(Some("bad")))
        .await
        .unwrap();
    let id = [3u8; 16];
    let producer = client.producer("in").build().await.unwrap();
    let refused = producer.send(Message::new("{}").id(id)).await.unwrap();
    assert!(matches!(refused, Outcome::Invalid { .. }), "{refused:?}");
    let stored = producer.send(good("{\"v\":2}").id(id)).await.unwrap();
    assert!(matches!(stored, Outcome::Stored { .. }), "{stored:?}");
    let mut consumer = client.consumer("in").subscribe().await.unwrap();
    next(&mut consumer)
        .await
        .reject_invalid("schema v1 only")
        .await
        .unwrap();

    let mut bad = client.consumer("bad").subscribe().await.unwrap();
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let d = next(&mut bad).await;
        assert_eq!(d.id(), id);
        let reason = d.header("sluice-invalid-reason").unwrap();
        reasons.push((text(&d), String::from_utf8_lossy(reason).into_owned()));
    }
    reasons.sort();
    assert_eq!(reasons[0].0, "{\"v\":2}");
    assert_eq!(reasons[0].1, "schema v1 only");
    assert_eq!(reasons[1].0, "{}");
    assert!(reasons[1].1.starts_with("missing-header"), "{reasons:?}");
    broker.stop().await;
}
