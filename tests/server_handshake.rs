//! The first frame of a connection must be a handshake, answered within the handshake timeout
//! with the negotiated version; anything else is refused and the connection closed.

mod server_support;

use std::time::Duration;

use server_support::{handshake, RawClient, TestBroker};
use sluice_protocol::frame::FLAG_RESPONSE;
use sluice_protocol::{opcode, ErrorCode, Request, Response};
use tokio::time::Instant;

#[tokio::test]
async fn a_handshake_is_answered_with_the_negotiated_version() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    client.send(42, &handshake(1, 5)).await;
    let frame = client.next_frame().await.expect("an answer");
    assert_eq!((frame.flags, frame.correlation_id), (FLAG_RESPONSE, 42));
    let Response::Handshake(ok) = Response::decode(frame.opcode, &frame.body).unwrap() else {
        panic!("not a handshake answer: {frame:?}");
    };
    assert_eq!(ok.version, 1);
    assert!(ok.broker.starts_with("sluice "), "{}", ok.broker);
    assert_eq!(
        ok.max_frame as usize,
        sluice_protocol::frame::DEFAULT_MAX_FRAME
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_request_before_the_handshake_is_refused_and_the_connection_closed() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    client.send(7, &Request::ListChannels).await;
    let frame = client
        .expect_error_and_close(ErrorCode::HandshakeRequired)
        .await;
    assert_eq!(
        (frame.correlation_id, frame.opcode),
        (7, opcode::LIST_CHANNELS)
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_version_range_without_the_brokers_version_is_refused() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    client.send(3, &handshake(2, 9)).await;
    let frame = client
        .expect_error_and_close(ErrorCode::UnsupportedVersion)
        .await;
    assert_eq!(frame.correlation_id, 3);
    broker.stop().await;
}

#[tokio::test]
async fn a_second_handshake_is_an_error_that_keeps_the_connection() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::handshaken(broker.addr()).await;
    client.send(2, &handshake(1, 1)).await;
    let (frame, body) = client.expect_error().await;
    assert_eq!(
        (frame.correlation_id, body.code),
        (2, ErrorCode::InvalidArgument)
    );
    client.send(3, &Request::ListChannels).await;
    assert_eq!(client.next_frame().await.expect("answer").correlation_id, 3);
    broker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_a_handshake_is_closed_after_the_handshake_timeout() {
    let timeout = Duration::from_secs(5);
    let broker = TestBroker::start_with(|c| c.server.handshake_timeout = timeout).await;
    let started = Instant::now();
    let mut client = RawClient::connect(broker.addr()).await;
    client.expect_closed().await;
    assert!(started.elapsed() >= timeout, "closed before the timeout");
    broker.stop().await;
}

#[tokio::test]
async fn requests_pipelined_behind_the_handshake_are_all_answered() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let mut bytes = server_support::encode(1, &handshake(1, 1));
    for correlation_id in 2..=10 {
        bytes.extend_from_slice(&server_support::encode(
            correlation_id,
            &Request::ListChannels,
        ));
    }
    client.send_raw(&bytes).await;
    let mut seen = Vec::new();
    for _ in 1..=10 {
        seen.push(client.next_frame().await.expect("answer").correlation_id);
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    broker.stop().await;
}
