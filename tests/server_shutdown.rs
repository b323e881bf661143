//! Orderly shutdown of an in-process server: connections are closed, the port is released.

mod server_support;

use server_support::{RawClient, TestBroker};
use sluice_protocol::Request;

#[tokio::test]
async fn shutdown_closes_connections_and_stops_accepting() {
    let broker = TestBroker::start().await;
    let addr = broker.addr();
    let mut client = RawClient::handshaken(addr).await;
    client.send(5, &Request::ListChannels).await;
    assert_eq!(client.next_frame().await.expect("answer").correlation_id, 5);
    broker.stop().await;
    client.expect_closed().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn a_connection_that_never_handshakes_does_not_delay_shutdown() {
    let broker = TestBroker::start().await;
    let mut silent = RawClient::connect(broker.addr()).await;
    broker.stop().await;
    silent.expect_closed().await;
}
