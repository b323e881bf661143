//! Many requests in flight on one connection: every one is answered, matched by correlation id.

mod server_support;

use std::collections::HashSet;

use bytes::BytesMut;
use server_support::{encode, RawClient, TestBroker};
use sluice_protocol::frame::FLAG_RESPONSE;
use sluice_protocol::{opcode, Request};

const REQUESTS: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_pipelined_requests_are_all_answered_by_correlation_id() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::handshaken(broker.addr()).await;
    let mut bytes = BytesMut::new();
    for correlation_id in 100..100 + REQUESTS {
        bytes.extend_from_slice(&encode(correlation_id, &Request::ListChannels));
    }
    client.send_raw(&bytes).await;
    let mut pending: HashSet<u64> = (100..100 + REQUESTS).collect();
    while !pending.is_empty() {
        let frame = client.next_frame().await.expect("an answer");
        assert_ne!(frame.flags & FLAG_RESPONSE, 0, "{frame:?}");
        assert_eq!(frame.opcode, opcode::LIST_CHANNELS);
        assert!(
            pending.remove(&frame.correlation_id),
            "unexpected {frame:?}"
        );
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_connections_do_not_mix_their_answers() {
    let broker = TestBroker::start().await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(RawClient::handshaken(broker.addr()).await);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let base = i as u64 * 1_000;
        let mut bytes = BytesMut::new();
        (base..base + 500)
            .for_each(|c| bytes.extend_from_slice(&encode(c, &Request::ListChannels)));
        client.send_raw(&bytes).await;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let base = i as u64 * 1_000;
        for _ in 0..500 {
            let frame = client.next_frame().await.expect("an answer");
            assert!(
                (base..base + 500).contains(&frame.correlation_id),
                "{frame:?}"
            );
        }
    }
    broker.stop().await;
}
