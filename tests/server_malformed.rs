//! A frame that cannot be parsed gets an error frame with its code and closes its own
//! connection only; other connections keep working.

mod server_support;

use bytes::{BufMut, BytesMut};
use server_support::{header_claiming, within, RawClient, TestBroker};
use sluice_protocol::frame::FLAG_RESPONSE;
use sluice_protocol::{opcode, ErrorCode, Frame, Request};

/// A frame with `opcode` and a body that is not what the opcode promises.
fn garbage_frame(opcode: u16, correlation_id: u64) -> BytesMut {
    let mut bytes = BytesMut::new();
    Frame::request(opcode, correlation_id, b"\xc1\xc1 not msgpack"[..].into()).encode(&mut bytes);
    bytes
}

/// Asserts that a handshaken connection is still answered.
async fn still_answers(client: &mut RawClient, correlation_id: u64) {
    client.send(correlation_id, &Request::ListChannels).await;
    let frame = client.next_frame().await.expect("an answer");
    assert_eq!(frame.correlation_id, correlation_id);
    assert_ne!(frame.flags & FLAG_RESPONSE, 0);
}

#[tokio::test]
async fn a_garbage_body_closes_only_its_own_connection() {
    let broker = TestBroker::start().await;
    let mut bystander = RawClient::handshaken(broker.addr()).await;
    let mut offender = RawClient::handshaken(broker.addr()).await;
    offender
        .send_raw(&garbage_frame(opcode::CREATE_CHANNEL, 9))
        .await;
    let frame = offender
        .expect_error_and_close(ErrorCode::MalformedFrame)
        .await;
    assert_eq!(
        (frame.correlation_id, frame.opcode),
        (9, opcode::CREATE_CHANNEL)
    );
    still_answers(&mut bystander, 10).await;
    broker.stop().await;
}

#[tokio::test]
async fn an_unknown_opcode_is_refused_with_its_code() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::handshaken(broker.addr()).await;
    client.send_raw(&garbage_frame(999, 4)).await;
    let frame = client
        .expect_error_and_close(ErrorCode::UnknownOpcode)
        .await;
    assert_eq!((frame.correlation_id, frame.opcode), (4, 999));
    broker.stop().await;
}

#[tokio::test]
async fn a_length_shorter_than_a_header_is_refused() {
    let broker = TestBroker::start().await;
    let mut bystander = RawClient::handshaken(broker.addr()).await;
    let mut client = RawClient::handshaken(broker.addr()).await;
    client.send_raw(&header_claiming(3)).await;
    client
        .expect_error_and_close(ErrorCode::MalformedFrame)
        .await;
    still_answers(&mut bystander, 2).await;
    broker.stop().await;
}

#[tokio::test]
async fn an_oversized_frame_is_refused_from_its_header_alone() {
    let broker = TestBroker::start_with(|c| {
        c.server.max_frame_bytes = 64 * 1024;
        c.channel_defaults.max_batch_bytes = 32 * 1024;
    })
    .await;
    let mut client = RawClient::handshaken(broker.addr()).await;
    // Only the header is sent: the broker answers without waiting for (or allocating) a body.
    client.send_raw(&header_claiming(u32::MAX)).await;
    client
        .expect_error_and_close(ErrorCode::FrameTooLarge)
        .await;
    broker.stop().await;
}

#[tokio::test]
async fn a_frame_of_another_protocol_version_is_refused() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::handshaken(broker.addr()).await;
    let mut bytes = header_claiming(12);
    bytes[4] = 9;
    client.send_raw(&bytes).await;
    client
        .expect_error_and_close(ErrorCode::UnsupportedVersion)
        .await;
    broker.stop().await;
}

#[tokio::test]
async fn bytes_after_a_malformed_frame_are_ignored_and_the_error_still_arrives() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::handshaken(broker.addr()).await;
    let mut bytes = garbage_frame(opcode::SUBSCRIBE, 5);
    bytes.put_bytes(0xAB, 256 * 1024);
    client.send_raw(&bytes).await;
    client
        .expect_error_and_close(ErrorCode::MalformedFrame)
        .await;
    broker.stop().await;
}

/// A record whose fields do not decode, in an otherwise well-formed batch, is an invalid message
/// like any other: on a channel with a contract and an invalid channel the publisher is told it
/// went there, and it is there, whole, as the copy's payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_decode_is_stored_in_the_invalid_channel() {
    use futures::StreamExt;
    use sluice_client::types::{ChannelKind, ChannelSettings, PayloadFormat};
    use sluice_protocol::request::Publish;
    use sluice_protocol::{BatchBuilder, Response};

    let broker = TestBroker::start().await;
    let client = sluice_client::Client::connect(broker.addr().to_string())
        .await
        .unwrap();
    let settings = ChannelSettings {
        payload_format: Some(PayloadFormat::Utf8),
        invalid_channel: Some("bad".into()),
        ..ChannelSettings::default()
    };
    client
        .create_channel("in", ChannelKind::Queue, settings)
        .await
        .unwrap();
    // Flags say "key present" and two headers follow; the record ends first.
    let garbage: &[u8] = &[0b001, 0, 2, 0, 9, 0, b'k'];
    let mut builder = BatchBuilder::messages();
    builder.push_raw(garbage);
    let publish = Request::Publish(Publish {
        channel: "in".into(),
        partition: 0,
        batch: builder.finish().unwrap(),
    });
    let mut raw = RawClient::handshaken(broker.addr()).await;
    raw.send(7, &publish).await;
    let frame = raw.next_frame().await.expect("an answer");
    assert_eq!(frame.flags, FLAG_RESPONSE, "{frame:?}");
    let Response::Published(ack) = Response::decode(frame.opcode, &frame.body).unwrap() else {
        panic!("not a publish answer");
    };
    assert!(ack.stored.is_empty(), "{ack:?}");
    assert_eq!(ack.invalid.len(), 1, "{ack:?}");
    assert!(ack.invalid[0].reason.starts_with("malformed"), "{ack:?}");
    assert_eq!(ack.invalid[0].routed_to.as_deref(), Some("bad"));

    let mut bad = client.consumer("bad").subscribe().await.unwrap();
    let copy = within(bad.next()).await.unwrap().unwrap();
    assert_eq!(copy.payload(), garbage);
    broker.stop().await;
}
