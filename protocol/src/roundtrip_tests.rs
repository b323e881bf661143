//! Round-trip, truncation and layout tests for every request and response body.

use bytes::{BufMut, Bytes, BytesMut};

use crate::request::*;
use crate::response::*;
use crate::types::*;
use crate::{BatchBuilder, ErrorCode, ProtocolError, Request, Response};

fn batch() -> crate::RecordBatch {
    let mut b = BatchBuilder::messages();
    b.push_raw(b"one").push_raw(b"two");
    b.finish().unwrap()
}

fn every_request() -> Vec<Request> {
    let channel = || ChannelName {
        name: "orders".into(),
    };
    vec![
        Request::Handshake(Handshake {
            min_version: 1,
            max_version: 1,
            client: "t".into(),
            auth: Some(vec![1, 2]),
        }),
        Request::Metadata(Metadata {
            channels: vec!["a".into()],
        }),
        Request::CreateChannel(CreateChannel {
            name: "orders".into(),
            kind: ChannelKind::Topic,
            settings: ChannelSettings {
                partitions: Some(3),
                lease_ms: Some(5),
            },
        }),
        Request::DeleteChannel(channel()),
        Request::ListChannels,
        Request::DescribeChannel(channel()),
        Request::Purge(Purge {
            channel: "orders".into(),
            subscription: Some("s".into()),
        }),
        Request::CreateSubscription(CreateSubscription {
            channel: "orders".into(),
            name: "s".into(),
            durable: true,
            lease_ms: None,
        }),
        Request::DeleteSubscription(SubscriptionRef {
            channel: "orders".into(),
            name: "s".into(),
        }),
        Request::ListSubscriptions(channel()),
        Request::Publish(Publish {
            channel: "orders".into(),
            partition: 2,
            batch: batch(),
        }),
        Request::Subscribe(Subscribe {
            consumer_id: 7,
            channel: "orders".into(),
            subscription: None,
            credit: 100,
            lease_ms: Some(1000),
        }),
        Request::Detach(ConsumerRef { consumer_id: 7 }),
        Request::Credit(Credit {
            consumer_id: 7,
            credit: 50,
        }),
        Request::Ack(Ack {
            consumer_id: 7,
            partition: 1,
            ranges: vec![(0, 5), (9, 10)],
        }),
        Request::Nack(Nack {
            consumer_id: 7,
            partition: 1,
            offsets: vec![3],
            delay_ms: 10,
        }),
        Request::Extend(Extend {
            consumer_id: 7,
            partition: 1,
            offsets: vec![4],
            lease_ms: 99,
        }),
    ]
}

fn body(request: &Request) -> Bytes {
    let (head, tail) = request.encode_body();
    let mut all = BytesMut::from(&head[..]);
    all.put_slice(&tail);
    all.freeze()
}

#[test]
fn every_request_round_trips() {
    for request in every_request() {
        let decoded = Request::decode(request.opcode(), body(&request)).unwrap();
        assert_eq!(decoded, request);
    }
}

#[test]
fn every_truncated_request_body_fails_cleanly() {
    for request in every_request() {
        let full = body(&request);
        for cut in 0..full.len() {
            // A truncated body never panics; it either fails or (for MessagePack maps cut at a
            // field boundary) cannot decode into the same value.
            match Request::decode(request.opcode(), full.slice(..cut)) {
                Err(_) => {}
                Ok(other) => assert_ne!(other, request, "cut {cut} of {:?}", request.opcode()),
            }
        }
    }
}

#[test]
fn publish_head_layout_is_pinned() {
    let request = Request::Publish(Publish {
        channel: "ab".into(),
        partition: 3,
        batch: batch(),
    });
    let (head, tail) = request.encode_body();
    assert_eq!(&head[..], &[2, 0, b'a', b'b', 3, 0, 0, 0]);
    assert_eq!(tail, *batch().as_bytes());
}

#[test]
fn an_unknown_opcode_is_a_typed_error() {
    let err = Request::decode(999, Bytes::new()).unwrap_err();
    assert_eq!(err, ProtocolError::UnknownOpcode { opcode: 999 });
    assert_eq!(err.code(), ErrorCode::UnknownOpcode);
}

#[test]
fn a_publish_with_a_corrupt_batch_is_an_invalid_batch_error() {
    let mut bytes = body(&every_request()[10]).to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = Request::decode(opcode::PUBLISH, Bytes::from(bytes)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidBatch);
}

fn every_response() -> Vec<(u16, Response)> {
    let partition = PartitionMeta {
        id: 0,
        leader: "127.0.0.1:7480".into(),
    };
    let sub = SubscriptionInfo {
        name: "s".into(),
        durable: true,
        backlog: 3,
        in_flight: 1,
        ack_floor: 2,
        consumers: 1,
        oldest_unacked_ms: Some(5),
    };
    vec![
        (
            opcode::HANDSHAKE,
            Response::Handshake(HandshakeOk {
                version: 1,
                broker: "b".into(),
                max_frame: 9,
            }),
        ),
        (
            opcode::METADATA,
            Response::Metadata(vec![ChannelMeta {
                name: "c".into(),
                kind: ChannelKind::Queue,
                partitions: vec![partition.clone()],
            }]),
        ),
        (opcode::ACK, Response::Ok),
        (
            opcode::LIST_CHANNELS,
            Response::Channels(vec![ChannelSummary {
                name: "c".into(),
                kind: ChannelKind::Topic,
                partitions: 2,
                messages: 10,
            }]),
        ),
        (
            opcode::DESCRIBE_CHANNEL,
            Response::Description(ChannelDescription {
                name: "c".into(),
                kind: ChannelKind::Queue,
                lease_ms: 30_000,
                partitions: vec![PartitionInfo {
                    id: 0,
                    first_offset: 1,
                    next_offset: 9,
                    committed_offset: 9,
                    segments: 1,
                    bytes: 100,
                }],
                subscriptions: vec![sub.clone()],
            }),
        ),
        (
            opcode::LIST_SUBSCRIPTIONS,
            Response::Subscriptions(vec![sub]),
        ),
        (
            opcode::PUBLISH,
            Response::Published(PublishAck {
                partition: 1,
                stored: vec![StoredRun {
                    index: 0,
                    count: 2,
                    offset: 40,
                }],
            }),
        ),
        (
            opcode::SUBSCRIBE,
            Response::Subscribed(Subscribed {
                subscription: "s".into(),
                partitions: vec![partition],
            }),
        ),
    ]
}

#[test]
fn every_response_round_trips_and_every_truncation_fails() {
    for (op, response) in every_response() {
        let body = response.encode_body();
        assert_eq!(Response::decode(op, &body).unwrap(), response);
        for cut in 0..body.len() {
            if let Ok(other) = Response::decode(op, &body[..cut]) {
                assert_ne!(other, response, "cut {cut} of opcode {op}");
            }
        }
    }
}

#[test]
fn error_bodies_round_trip() {
    let e = ErrorBody {
        code: ErrorCode::NotLeader,
        message: "go".into(),
        leader: Some("x".into()),
    };
    assert_eq!(ErrorBody::decode(&e.encode()).unwrap(), e);
    assert!(ErrorBody::decode(&e.encode()[..3]).is_err());
}

fn delivery() -> Delivery {
    Delivery {
        consumer_id: 1,
        partition: 2,
        delivery_count: 3,
        first_offset: 4,
        timestamp: 5,
        record_count: 1,
        records: Bytes::from_static(&[1, 0, 0, 0, b'x']),
    }
}

#[test]
fn deliveries_round_trip_and_their_head_layout_is_pinned() {
    let d = delivery();
    let head = d.encode_head();
    let mut expected = Vec::new();
    for (v, n) in [(1u64, 8), (2, 4), (3, 4), (4, 8), (5, 8), (1, 4)] {
        expected.extend_from_slice(&v.to_le_bytes()[..n]);
    }
    assert_eq!(&head[..], &expected[..]);
    let mut wire = BytesMut::from(&head[..]);
    wire.put_slice(&d.records);
    let wire = wire.freeze();
    assert_eq!(Delivery::decode(wire.clone()).unwrap(), d);
    assert_eq!(
        d.records().collect::<Vec<_>>(),
        vec![Bytes::from_static(b"x")]
    );
    for cut in 0..DELIVERY_HEAD_LEN {
        assert!(Delivery::decode(wire.slice(..cut)).is_err(), "cut {cut}");
    }
}
