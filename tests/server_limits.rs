//! Connection limit and idle timeout.

mod server_support;

use std::time::Duration;

use server_support::{handshake, within, RawClient, TestBroker};
use sluice_protocol::frame::FLAG_RESPONSE;
use sluice_protocol::{opcode, ErrorCode, Request};
use tokio::time::Instant;

#[tokio::test]
async fn a_connection_beyond_the_limit_is_refused_at_its_handshake() {
    let broker = TestBroker::start_with(|c| c.server.max_connections = 2).await;
    let first = RawClient::handshaken(broker.addr()).await;
    let _second = RawClient::handshaken(broker.addr()).await;
    let mut third = RawClient::connect(broker.addr()).await;
    third.send(31, &handshake(1, 1)).await;
    let frame = third
        .expect_error_and_close(ErrorCode::TooManyConnections)
        .await;
    assert_eq!(
        (frame.correlation_id, frame.opcode),
        (31, opcode::HANDSHAKE)
    );
    drop(first);
    within(until_a_handshake_succeeds(broker.addr())).await;
    broker.stop().await;
}

/// Retries until a connection is admitted (a closed one frees its slot asynchronously).
async fn until_a_handshake_succeeds(addr: std::net::SocketAddr) {
    loop {
        let mut client = RawClient::connect(addr).await;
        client.send(1, &handshake(1, 1)).await;
        if client
            .next_frame()
            .await
            .is_some_and(|f| f.flags == FLAG_RESPONSE)
        {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_frames_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(5);
    let broker = TestBroker::start_with(|c| c.server.idle_timeout = idle).await;
    let mut client = RawClient::handshaken(broker.addr()).await;
    let quiet_since = Instant::now();
    client.expect_closed().await;
    assert!(
        quiet_since.elapsed() >= idle,
        "closed before the idle timeout"
    );
    broker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_keeps_talking_is_not_idle() {
    let idle = Duration::from_secs(4);
    let broker = TestBroker::start_with(|c| c.server.idle_timeout = idle).await;
    let mut client = RawClient::handshaken(broker.addr()).await;
    let started = Instant::now();
    let mut correlation_id = 10;
    while started.elapsed() < idle * 3 {
        client.send(correlation_id, &Request::ListChannels).await;
        let frame = client.next_frame().await.expect("still open");
        assert_eq!(frame.correlation_id, correlation_id);
        correlation_id += 1;
        tokio::time::sleep(idle / 4).await;
    }
    broker.stop().await;
}

/// Oversized messages get one typed error and leave the connection usable: the broker tells
/// its batch limit at the handshake, and the client refuses a message past it before sending
/// (past the frame limit it used to go out and cost the connection, as "connection lost").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_get_typed_errors_and_the_connection_stays() {
    use sluice_client::types::{ChannelKind, ChannelSettings};
    use sluice_client::{Client, ClientError, Message};

    let broker = TestBroker::start().await;
    let client = Client::connect(broker.addr().to_string()).await.unwrap();
    assert_eq!(client.broker_max_batch().await.unwrap(), Some(8 << 20));
    client
        .create_channel("big", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    let producer = client.producer("big").build().await.unwrap();

    for size in [9 << 20, 17 << 20] {
        let err = within(producer.send(Message::new(vec![b'x'; size])))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::MessageTooLarge { size: s, max } if s > size && max <= 8 << 20),
            "{err}"
        );
    }
    let err = within(producer.send_batch(vec![Message::new(vec![0; 17 << 20]).into_inner()]))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::MessageTooLarge { .. }), "{err}");

    let stored = within(producer.send(Message::new("small"))).await.unwrap();
    assert_eq!(stored.offset(), 0);
    broker.stop().await;
}

/// A broker whose batch limit is small still takes a batch of messages that each fit: the
/// client sizes its batches by the limit it learnt at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_sized_to_the_broker_s_batch_limit() {
    use sluice_client::types::{ChannelKind, ChannelSettings};
    use sluice_client::{Client, Message};

    let broker = TestBroker::start_with(|c| c.channel_defaults.max_batch_bytes = 4096).await;
    let client = Client::connect(broker.addr().to_string()).await.unwrap();
    client
        .create_channel("small", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    let producer = client.producer("small").build().await.unwrap();
    let messages = (0..10)
        .map(|i| Message::new(vec![b'0' + i; 1000]).into_inner())
        .collect();
    let outcomes = within(producer.send_batch(messages)).await.unwrap();
    let offsets: Vec<u64> = outcomes.iter().map(|o| o.offset()).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    broker.stop().await;
}
