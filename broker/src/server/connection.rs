//! One client connection: the handshake, then every request in order to the dispatcher, until
//! the peer leaves, a frame cannot be parsed, the connection idles out or the broker stops.
//!
//! The reader never waits for answers (pipelining): the dispatcher only admits a request, and
//! its answer reaches the connection's [`Writer`] through the session outbox. This module knows
//! frames, requests and timeouts; it knows nothing about channels, partitions or cursors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sluice_protocol::{opcode, ErrorBody, ErrorCode, Frame, ProtocolError, Request, Response};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use super::context::Context;
use super::dispatch::Session;
use super::frame_reader::{FrameReader, ReadError};
use super::handshake::negotiate;
use super::linger::linger_close;
use super::request_metrics;
use super::writer::{Writer, WriterSignals};
use crate::channel::outbox::Outgoing;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The peer closed the stream between frames.
    Eof,
    /// No frame within the idle timeout and no consumer attached.
    Idle,
    /// No handshake within the handshake timeout.
    HandshakeTimeout,
    /// The broker is stopping.
    Shutdown,
    /// The connection was refused with this code (malformed input, bad handshake).
    Refused(ErrorCode),
    /// The socket failed or the stream was cut inside a frame.
    Broken(String),
}

/// Serves one accepted connection to its end, then closes it in order: consumers detached,
/// replies still due written, the socket shut down.
pub async fn serve(stream: TcpStream, ctx: Context) {
    let peer = stream.peer_addr().ok();
    let (read, write) = stream.into_split();
    let (outbox, rx) = mpsc::unbounded_channel();
    let signals = WriterSignals {
        closing: CancellationToken::new(),
        abort: ctx.abort.clone(),
        expected: Arc::new(AtomicU64::new(0)),
        drain_timeout: ctx.config.shutdown_timeout,
    };
    let writer = ctx
        .tracker
        .spawn(write_until_done(write, rx, signals.clone()));
    let mut connection = Connection {
        reader: FrameReader::new(read, ctx.config.max_frame_bytes),
        session: ctx.dispatcher.new_session(outbox),
        expected: signals.expected.clone(),
        closing: signals.closing.clone(),
        ctx,
    };
    let end = connection.run().await;
    tracing::debug!(
        ?peer,
        session = connection.session.id,
        ?end,
        "connection ends"
    );
    connection.close(writer).await;
}

/// Runs the writer; a failed write closes the connection for the reader too.
async fn write_until_done(
    write: OwnedWriteHalf,
    rx: mpsc::UnboundedReceiver<Outgoing>,
    signals: WriterSignals,
) -> Option<OwnedWriteHalf> {
    let closing = signals.closing.clone();
    match Writer::new(write, rx).run(signals).await {
        Ok(write) => Some(write),
        Err(error) => {
            tracing::debug!(%error, "write failed");
            closing.cancel();
            None
        }
    }
}

/// The reading side of one connection.
struct Connection {
    /// Frames in.
    reader: FrameReader<OwnedReadHalf>,
    /// This connection as the dispatcher knows it; owns the outbox sender.
    session: Session,
    /// Replies owed to the peer, so the writer knows when closing is complete.
    expected: Arc<AtomicU64>,
    /// Cancelled when the connection closes: by the reader when done, by the writer on failure.
    closing: CancellationToken,
    /// What all connections share.
    ctx: Context,
}

impl Connection {
    async fn run(&mut self) -> End {
        match self.handshake().await {
            Ok(()) => self.serve_requests().await,
            Err(end) => end,
        }
    }

    /// Reads the first frame within the handshake timeout and answers it.
    async fn handshake(&mut self) -> Result<(), End> {
        let deadline = Instant::now() + self.ctx.config.handshake_timeout;
        let read = tokio::select! {
            biased;
            _ = self.ctx.shutdown.cancelled() => return Err(End::Shutdown),
            _ = self.closing.cancelled() => return Err(End::Broken("writer gone".into())),
            read = timeout_at(deadline, self.reader.read_frame()) => read,
        };
        let frame = match read {
            Err(_elapsed) => return Err(End::HandshakeTimeout),
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return Err(End::Eof),
            Ok(Err(error)) => return Err(self.read_failed(error)),
        };
        let request = self.decode(&frame)?;
        let answer = negotiate(
            &request,
            self.ctx.config.max_frame_bytes,
            self.ctx.max_batch_bytes,
        );
        match answer {
            Ok(ok) => {
                self.reply(&frame, Ok(Response::Handshake(ok)));
                Ok(())
            }
            Err(error) => Err(self.refuse(frame.correlation_id, frame.opcode, error)),
        }
    }

    /// Dispatches requests until the stream ends, idles out or the broker stops.
    async fn serve_requests(&mut self) -> End {
        let idle_timeout = self.ctx.config.idle_timeout;
        let idle = sleep(idle_timeout);
        tokio::pin!(idle);
        loop {
            if let Err(end) = self.dispatch_buffered().await {
                return end;
            }
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => return End::Shutdown,
                _ = self.closing.cancelled() => return End::Broken("writer gone".into()),
                _ = &mut idle => {
                    if !self.ctx.dispatcher.has_consumers(&self.session) {
                        return End::Idle;
                    }
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                }
                read = self.reader.fill() => match read {
                    Ok(true) => idle.as_mut().reset(Instant::now() + idle_timeout),
                    Ok(false) => return End::Eof,
                    Err(error) => return self.read_failed(error),
                },
            }
        }
    }

    /// Dispatches every complete frame already read, in order.
    async fn dispatch_buffered(&mut self) -> Result<(), End> {
        loop {
            let frame = match self.reader.buffered_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(error) => return Err(self.read_failed(error)),
            };
            let request = self.decode(&frame)?;
            self.dispatch(frame.correlation_id, request).await;
        }
    }

    /// Hands one request to the dispatcher, which only awaits admission.
    async fn dispatch(&mut self, correlation_id: u64, request: Request) {
        if let Request::Handshake(_) = request {
            let error = ErrorBody::new(ErrorCode::InvalidArgument, "handshake already done");
            return self.send(correlation_id, opcode::HANDSHAKE, Err(error));
        }
        self.expected.fetch_add(1, Ordering::AcqRel);
        let (op, started) = (request.opcode(), Instant::now());
        let session = &self.session;
        self.ctx
            .dispatcher
            .handle(session, correlation_id, request)
            .await;
        request_metrics::observe(op, started.elapsed());
    }

    fn decode(&mut self, frame: &Frame) -> Result<Request, End> {
        Request::decode(frame.opcode, frame.body.clone())
            .map_err(|error| self.malformed(&error, frame.correlation_id, frame.opcode))
    }

    /// Ends the connection for a read failure, answering with an error frame when the peer
    /// sent bytes that are not a frame.
    fn read_failed(&mut self, error: ReadError) -> End {
        match error {
            ReadError::Protocol(error) => self.malformed(&error, 0, 0),
            other => End::Broken(other.to_string()),
        }
    }

    fn malformed(&mut self, error: &ProtocolError, correlation_id: u64, opcode: u16) -> End {
        let body = ErrorBody::new(error.code(), error.to_string());
        self.refuse(correlation_id, opcode, body)
    }

    /// Sends an error that ends the connection and counts it as a protocol error (DESIGN §2:
    /// a frame that cannot be parsed); the writer counts it among the error answers too.
    fn refuse(&mut self, correlation_id: u64, opcode: u16, error: ErrorBody) -> End {
        let code = error.code;
        metrics::counter!("sluice_protocol_errors_total", "code" => code.name()).increment(1);
        tracing::debug!(session = self.session.id, %code, message = %error.message, "refused");
        self.send(correlation_id, opcode, Err(error));
        End::Refused(code)
    }

    fn reply(&mut self, frame: &Frame, result: Result<Response, ErrorBody>) {
        self.send(frame.correlation_id, frame.opcode, result);
    }

    /// Queues an answer the connection gives itself (not through the dispatcher).
    fn send(&mut self, correlation_id: u64, opcode: u16, result: Result<Response, ErrorBody>) {
        self.expected.fetch_add(1, Ordering::AcqRel);
        let reply = Outgoing::Reply {
            correlation_id,
            opcode,
            result,
        };
        let _ = self.session.outbox.send(reply);
    }

    /// Detaches consumers, lets the writer finish, then closes the socket.
    async fn close(self, writer: tokio::task::JoinHandle<Option<OwnedWriteHalf>>) {
        self.ctx.dispatcher.close_session(&self.session).await;
        self.closing.cancel();
        let Ok(Some(write)) = writer.await else {
            return;
        };
        let abort = self.ctx.abort.clone();
        tokio::select! {
            biased;
            _ = abort.cancelled() => {}
            _ = linger_close(self.reader.into_inner(), write) => {}
        }
    }
}
