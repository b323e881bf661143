//! One TCP connection to a broker: the handshake, then a writer task and a reader task.
//!
//! ```text
//!  callers ──Outgoing──▶ writer task ──frames (vectored, coalesced)──▶ socket
//!                          │ registrations (reply slots, consumer routes), in frame order
//!                          ▼
//!  callers ◀──oneshot── reader task ◀──frames── socket
//!  consumers ◀──deliveries──┘
//! ```
//!
//! The writer assigns correlation ids and registers each reply slot with the reader *before* it
//! writes the frame, so an answer can never arrive ahead of its slot, and no lock is shared
//! between the two tasks. This module knows frames and correlation ids; it knows nothing about
//! producers, consumers or reconnecting.

mod reader;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sluice_protocol::frame::FLAG_RESPONSE;
use sluice_protocol::request::{opcode, Handshake};
use sluice_protocol::response::HandshakeOk;
use sluice_protocol::{
    Delivery as WireDelivery, ErrorBody, Frame, FrameDecoder, Request, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::{ClientError, Result};

pub(crate) use writer::encode_header;

/// What arrives in a consumer's inbox.
pub(crate) enum Inbound {
    /// A pushed delivery, with the tag its route was attached with.
    Delivery(u64, WireDelivery),
    /// The consumer has stopped, with the reason when it failed.
    Ended(Option<ClientError>),
}

/// Where the reader sends the deliveries of one consumer.
pub(crate) type DeliverySink = mpsc::UnboundedSender<Inbound>;

/// A change to the reader's routing of pushed deliveries.
pub(crate) enum Route {
    /// Send deliveries for `consumer_id` to `sink`, tagged with `tag`.
    Attach {
        /// The consumer id used in Subscribe.
        consumer_id: u64,
        /// Opaque tag passed along with each delivery (the consumer's generation).
        tag: u64,
        /// The consumer's inbox.
        sink: DeliverySink,
    },
    /// Stop routing deliveries for this consumer id.
    Detach(u64),
}

/// One request on its way to the writer task.
pub(crate) struct Outgoing {
    /// Opcode of the request.
    opcode: u16,
    /// Small encoded head of the body.
    head: Bytes,
    /// Large tail written as is (a record batch); empty for control requests.
    tail: Bytes,
    /// Where the answer goes; `None` when nobody waits for it.
    reply: Option<oneshot::Sender<Frame>>,
    /// Routing change that must take effect before this request's frame is written.
    route: Option<Route>,
}

/// Settings of one connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectSettings {
    /// Name sent in the handshake, for the broker's logs.
    pub client_name: String,
    /// Deadline for TCP connect plus handshake.
    pub connect_timeout: Duration,
    /// Largest frame accepted from the broker.
    pub max_frame: usize,
}

/// A live, handshaken connection. Dropping the last handle closes it.
pub(crate) struct Connection {
    /// Requests to the writer task.
    outgoing: mpsc::Sender<Outgoing>,
    /// Cancelled when either task stops: the connection is dead for good.
    closed: CancellationToken,
    /// What the broker said in the handshake.
    info: HandshakeOk,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl Connection {
    /// Connects, sets TCP_NODELAY, handshakes and starts the reader and writer tasks.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the socket cannot be opened, [`ClientError::Timeout`] when
    /// the handshake does not finish in time, a broker error when it refuses the handshake.
    pub(crate) async fn open(addr: &str, settings: &ConnectSettings) -> Result<Arc<Self>> {
        tokio::time::timeout(settings.connect_timeout, Self::open_now(addr, settings))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn open_now(addr: &str, settings: &ConnectSettings) -> Result<Arc<Self>> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::connect(addr, e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| ClientError::connect(addr, e))?;
        let decoder = FrameDecoder::new(settings.max_frame);
        let (info, leftover) = handshake(&mut stream, decoder, &settings.client_name).await?;
        let (read, write) = stream.into_split();
        let (out_tx, out_rx) = mpsc::channel(1024);
        let (reg_tx, reg_rx) = mpsc::unbounded_channel();
        let closed = CancellationToken::new();
        tokio::spawn(writer::run(write, out_rx, reg_tx, closed.clone()));
        tokio::spawn(reader::run(read, leftover, decoder, reg_rx, closed.clone()));
        Ok(Arc::new(Self {
            outgoing: out_tx,
            closed,
            info,
        }))
    }

    /// What the broker said about itself in the handshake.
    pub(crate) fn info(&self) -> &HandshakeOk {
        &self.info
    }

    /// Whether the connection is dead.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves when the connection dies.
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// Sends a request and waits for its answer.
    ///
    /// # Errors
    /// The broker's error, [`ClientError::Disconnected`] when the connection drops first.
    pub(crate) async fn call(&self, request: &Request) -> Result<Response> {
        self.call_routed(request, None).await
    }

    /// Like [`Connection::call`], with a routing change applied before the frame is written.
    ///
    /// # Errors
    /// As [`Connection::call`].
    pub(crate) async fn call_routed(
        &self,
        request: &Request,
        route: Option<Route>,
    ) -> Result<Response> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(request, Some(tx), route).await?;
        Answer {
            opcode: request.opcode(),
            frame: rx,
        }
        .await_response()
        .await
    }

    /// Queues a request for writing and returns its answer to await later. Requests submitted
    /// one after another go on the wire in that order.
    ///
    /// # Errors
    /// [`ClientError::Disconnected`] when the connection is dead.
    pub(crate) async fn submit(&self, request: &Request) -> Result<Answer> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(request, Some(tx), None).await?;
        Ok(Answer {
            opcode: request.opcode(),
            frame: rx,
        })
    }

    /// Sends a request whose answer nobody waits for (credit grants).
    ///
    /// # Errors
    /// [`ClientError::Disconnected`] when the connection is dead.
    pub(crate) async fn notify(&self, request: &Request, route: Option<Route>) -> Result<()> {
        self.enqueue(request, None, route).await
    }

    async fn enqueue(
        &self,
        request: &Request,
        reply: Option<oneshot::Sender<Frame>>,
        route: Option<Route>,
    ) -> Result<()> {
        let (head, tail) = request.encode_body();
        let outgoing = Outgoing {
            opcode: request.opcode(),
            head,
            tail,
            reply,
            route,
        };
        self.outgoing
            .send(outgoing)
            .await
            .map_err(|_| ClientError::Disconnected)
    }
}

/// The answer to a submitted request, still to come.
pub(crate) struct Answer {
    /// Opcode of the request, to decode the answer.
    opcode: u16,
    /// Filled by the reader task; dropped if the connection dies.
    frame: oneshot::Receiver<Frame>,
}

impl Answer {
    /// Waits for the answer.
    ///
    /// # Errors
    /// The broker's error, or [`ClientError::Disconnected`].
    pub(crate) async fn await_response(self) -> Result<Response> {
        let frame = self.frame.await.map_err(|_| ClientError::Disconnected)?;
        decode_answer(self.opcode, &frame)
    }
}

/// Turns an answer frame into a response or the broker's error.
///
/// # Errors
/// The broker's error when the frame is an error frame; a protocol error when it does not decode.
pub(crate) fn decode_answer(op: u16, frame: &Frame) -> Result<Response> {
    if frame.is_error() {
        return Err(ErrorBody::decode(&frame.body)?.into());
    }
    Ok(Response::decode(op, &frame.body)?)
}

async fn handshake(
    stream: &mut TcpStream,
    decoder: FrameDecoder,
    client: &str,
) -> Result<(HandshakeOk, BytesMut)> {
    let request = Request::Handshake(Handshake {
        min_version: 1,
        max_version: 1,
        client: client.to_owned(),
        auth: None,
    });
    let (head, _) = request.encode_body();
    let mut out = BytesMut::new();
    encode_header(&mut out, opcode::HANDSHAKE, 0, head.len());
    out.extend_from_slice(&head);
    let io = |e| ClientError::connect("broker", e);
    stream.write_all(&out).await.map_err(io)?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let frame = loop {
        if let Some(frame) = decoder.decode(&mut buf)? {
            break frame;
        }
        if stream.read_buf(&mut buf).await.map_err(io)? == 0 {
            return Err(ClientError::Disconnected);
        }
    };
    if frame.flags & FLAG_RESPONSE == 0 || frame.opcode != opcode::HANDSHAKE {
        return Err(ClientError::UnexpectedResponse {
            request: "handshake",
        });
    }
    match decode_answer(opcode::HANDSHAKE, &frame)? {
        Response::Handshake(ok) => Ok((ok, buf)),
        _ => Err(ClientError::UnexpectedResponse {
            request: "handshake",
        }),
    }
}
