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
                ..ChannelSettings::default()
            },
        }),
        Request::CreateChannel(CreateChannel {
            name: "orders".into(),
            kind: ChannelKind::Queue,
            settings: full_settings(),
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
        Request::Reject(Reject {
            consumer_id: 7,
            partition: 1,
            offsets: vec![4, 6],
            reason: "bad total".into(),
            invalid: false,
        }),
        Request::Reject(Reject {
            consumer_id: 7,
            partition: 0,
            offsets: vec![1],
            reason: "not an order".into(),
            invalid: true,
        }),
        Request::InitProducer(InitProducer {
            channel: "orders".into(),
            producer_id: None,
        }),
        Request::InitProducer(InitProducer {
            channel: "orders".into(),
            producer_id: Some(42),
        }),
        Request::Redrive(Redrive {
            channel: "orders.dlq".into(),
            to: Some("orders-retry".into()),
            count: Some(10),
        }),
        Request::Redrive(Redrive {
            channel: "orders.dlq".into(),
            to: None,
            count: None,
        }),
    ]
}

fn full_settings() -> ChannelSettings {
    ChannelSettings {
        partitions: Some(2),
        lease_ms: Some(1000),
        max_deliveries: Some(5),
        dead_letter_channel: Some("orders.dlq".into()),
        expired_to_dead_letter: Some(true),
        max_age_ms: Some(60_000),
        invalid_channel: Some("orders.invalid".into()),
        payload_format: Some(PayloadFormat::Json),
        max_payload_bytes: Some(4096),
        content_types: vec!["application/json".into()],
        required_headers: vec!["tenant".into(), "trace".into()],
        dedupe_window_ms: Some(120_000),
        retention_max_age_ms: Some(86_400_000),
        retention_max_bytes: Some(1 << 30),
        fsync: Some(crate::types::FsyncPolicy::Interval),
        fsync_interval_ms: Some(50),
        segment_bytes: Some(1 << 20),
    }
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
    let publish = every_request()
        .into_iter()
        .find(|r| r.opcode() == opcode::PUBLISH)
        .unwrap();
    let mut bytes = body(&publish).to_vec();
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
                max_batch: 7,
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
                settings: Box::new(full_settings()),
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
                ..PublishAck::default()
            }),
        ),
        (
            opcode::PUBLISH,
            Response::Published(PublishAck {
                partition: 0,
                stored: vec![StoredRun {
                    index: 1,
                    count: 1,
                    offset: 7,
                }],
                duplicates: vec![DuplicateRun {
                    index: 0,
                    offset: 3,
                }],
                invalid: vec![
                    InvalidOutcome {
                        index: 2,
                        reason: "payload is not json".into(),
                        routed_to: Some("orders.invalid".into()),
                    },
                    InvalidOutcome {
                        index: 3,
                        reason: "missing header tenant".into(),
                        routed_to: None,
                    },
                ],
            }),
        ),
        (
            opcode::INIT_PRODUCER,
            Response::ProducerSession(ProducerSession {
                producer_id: 42,
                epoch: 3,
            }),
        ),
        (opcode::REDRIVE, Response::Redriven(Redriven { count: 17 })),
        (opcode::REJECT, Response::Ok),
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

/// What a broker from before the dead-letter issue sent: the same structs without new fields.
mod old_format {
    use serde::Serialize;

    #[derive(Serialize)]
    pub struct StoredRun {
        pub index: u32,
        pub count: u32,
        pub offset: u64,
    }

    #[derive(Serialize)]
    pub struct PublishAck {
        pub partition: u32,
        pub stored: Vec<StoredRun>,
    }

    #[derive(Serialize)]
    pub struct ChannelSettings {
        pub partitions: Option<u32>,
        pub lease_ms: Option<u64>,
    }
}

#[test]
fn an_old_format_publish_ack_still_decodes_with_no_duplicates_or_invalid() {
    let old = old_format::PublishAck {
        partition: 2,
        stored: vec![old_format::StoredRun {
            index: 0,
            count: 3,
            offset: 9,
        }],
    };
    let body = rmp_serde::to_vec_named(&old).unwrap();
    let decoded = Response::decode(opcode::PUBLISH, &body).unwrap();
    let expected = PublishAck {
        partition: 2,
        stored: vec![StoredRun {
            index: 0,
            count: 3,
            offset: 9,
        }],
        duplicates: vec![],
        invalid: vec![],
    };
    assert_eq!(decoded, Response::Published(expected));
}

#[test]
fn old_format_channel_settings_still_decode_with_every_new_field_unset() {
    let old = old_format::ChannelSettings {
        partitions: Some(3),
        lease_ms: None,
    };
    let body = rmp_serde::to_vec_named(&old).unwrap();
    let decoded: ChannelSettings = rmp_serde::from_slice(&body).unwrap();
    let expected = ChannelSettings {
        partitions: Some(3),
        ..ChannelSettings::default()
    };
    assert_eq!(decoded, expected);
}

#[test]
fn new_opcodes_are_pinned() {
    assert_eq!(opcode::REDRIVE, 15);
    assert_eq!(opcode::INIT_PRODUCER, 31);
    assert_eq!(opcode::REJECT, 47);
    assert!(Request::Redrive(Redrive {
        channel: "d".into(),
        to: None,
        count: None
    })
    .is_admin());
}

#[test]
fn payload_formats_parse_and_print_their_lowercase_names() {
    for f in [
        PayloadFormat::Json,
        PayloadFormat::Msgpack,
        PayloadFormat::Utf8,
        PayloadFormat::Bytes,
    ] {
        assert_eq!(f.to_string().parse::<PayloadFormat>(), Ok(f));
        let body = rmp_serde::to_vec_named(&f).unwrap();
        assert_eq!(rmp_serde::from_slice::<String>(&body).unwrap(), f.name());
    }
    assert!("xml".parse::<PayloadFormat>().is_err());
}
