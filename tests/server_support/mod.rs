//! Shared by the `server_*` integration tests: an in-process broker on an ephemeral port and a
//! raw frame client that speaks the wire format directly (no client crate), so tests can send
//! exactly the bytes they mean, malformed ones included.

#![allow(dead_code)] // each test file uses part of this

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use sluice_broker::config::BrokerConfig;
use sluice_broker::server::{RunningServer, Server};
use sluice_protocol::frame::{FLAG_ERROR, FLAG_RESPONSE};
use sluice_protocol::request::Handshake;
use sluice_protocol::{opcode, ErrorBody, ErrorCode, Frame, FrameDecoder, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a test waits for any condition before failing (virtual time under
/// `start_paused`, so timeouts tested that way must be shorter).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test when it takes longer than [`PATIENCE`].
pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("condition not met in time")
}

/// A broker served in-process on 127.0.0.1:0 with a temporary data directory.
pub struct TestBroker {
    /// The running server.
    server: RunningServer,
    /// Removed when the broker is dropped.
    _data: tempfile::TempDir,
}

impl TestBroker {
    /// A broker with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A broker whose configuration `adjust` changes first.
    pub async fn start_with(adjust: impl FnOnce(&mut BrokerConfig)) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let mut config = BrokerConfig {
            data_dir: data.path().to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..BrokerConfig::default()
        };
        adjust(&mut config);
        let server = Server::bind(&config).await.expect("broker starts");
        Self {
            server: server.spawn(),
            _data: data,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Shuts the broker down and waits for it.
    pub async fn stop(self) {
        within(self.server.shutdown()).await;
    }
}

/// A client speaking raw frames.
pub struct RawClient {
    /// The connection.
    stream: TcpStream,
    /// Bytes read and not yet decoded.
    buffer: BytesMut,
}

impl RawClient {
    /// Connects without a handshake.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = within(TcpStream::connect(addr)).await.expect("connects");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            buffer: BytesMut::new(),
        }
    }

    /// Connects and completes the handshake.
    pub async fn handshaken(addr: SocketAddr) -> Self {
        let mut client = Self::connect(addr).await;
        client.send(1, &handshake(1, 1)).await;
        let answer = client.next_frame().await.expect("handshake answer");
        assert_eq!(answer.flags, FLAG_RESPONSE, "handshake refused: {answer:?}");
        client
    }

    /// Sends one request.
    pub async fn send(&mut self, correlation_id: u64, request: &Request) {
        self.send_raw(&encode(correlation_id, request)).await;
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        within(self.stream.write_all(bytes)).await.expect("write");
    }

    /// The next frame from the broker; `None` when it closed the connection.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        within(self.read_frame()).await
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        let decoder = FrameDecoder::new(usize::MAX);
        loop {
            if let Some(frame) = decoder.decode(&mut self.buffer).expect("broker frame") {
                return Some(frame);
            }
            match self.stream.read_buf(&mut self.buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads the broker's answer, which must be an error, and returns its body.
    pub async fn expect_error(&mut self) -> (Frame, ErrorBody) {
        let frame = self.next_frame().await.expect("an error frame");
        assert_eq!(frame.flags, FLAG_RESPONSE | FLAG_ERROR, "{frame:?}");
        let body = ErrorBody::decode(&frame.body).expect("error body");
        (frame, body)
    }

    /// Reads the broker's error with `code`, then expects the connection to close.
    pub async fn expect_error_and_close(&mut self, code: ErrorCode) -> Frame {
        let (frame, body) = self.expect_error().await;
        assert_eq!(body.code, code, "{body:?}");
        self.expect_closed().await;
        frame
    }

    /// Expects the broker to close the connection with nothing more to say.
    pub async fn expect_closed(&mut self) {
        assert_eq!(self.next_frame().await, None, "connection still open");
    }
}

/// A handshake offering versions `min..=max`.
pub fn handshake(min_version: u8, max_version: u8) -> Request {
    Request::Handshake(Handshake {
        min_version,
        max_version,
        client: "server tests".into(),
        auth: None,
    })
}

/// A request as frame bytes.
pub fn encode(correlation_id: u64, request: &Request) -> BytesMut {
    let (head, tail) = request.encode_body();
    let mut body = BytesMut::from(&head[..]);
    body.extend_from_slice(&tail);
    let frame = Frame::request(request.opcode(), correlation_id, body.freeze());
    let mut bytes = BytesMut::new();
    frame.encode(&mut bytes);
    bytes
}

/// A frame header whose length field says `length`, with nothing after it.
pub fn header_claiming(length: u32) -> BytesMut {
    let mut bytes = BytesMut::new();
    bytes.put_u32_le(length);
    bytes.put_u8(1);
    bytes.put_u8(0);
    bytes.put_u16_le(opcode::LIST_CHANNELS);
    bytes.put_u64_le(77);
    bytes
}
