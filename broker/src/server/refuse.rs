//! Turning a connection away at the connection limit: its handshake is answered with
//! [`ErrorCode::TooManyConnections`] and the connection is closed.
//!
//! Knows frames and the handshake timeout; knows nothing about sessions or the dispatcher,
//! which a refused connection never reaches.

use bytes::BytesMut;
use sluice_protocol::frame::{FLAG_ERROR, FLAG_RESPONSE, VERSION};
use sluice_protocol::{opcode, ErrorBody, ErrorCode, Frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::context::Context;
use super::frame_reader::FrameReader;
use super::linger::linger_close;

/// Reads the connection's first frame (within the handshake timeout), answers it with
/// `TooManyConnections` and closes.
pub async fn refuse_busy(stream: TcpStream, ctx: Context) {
    metrics::counter!("sluice_connections_refused_total").increment(1);
    let (read, mut write) = stream.into_split();
    let mut reader = FrameReader::new(read, ctx.config.max_frame_bytes);
    let first = tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => return,
        read = timeout(ctx.config.handshake_timeout, reader.read_frame()) => read,
    };
    let (correlation_id, op) = match first {
        Ok(Ok(Some(frame))) => (frame.correlation_id, frame.opcode),
        _ => (0, opcode::HANDSHAKE),
    };
    let message = format!(
        "the broker serves its limit of {} connections",
        ctx.config.max_connections
    );
    let error = ErrorBody::new(ErrorCode::TooManyConnections, message);
    let mut buf = BytesMut::new();
    error_frame(correlation_id, op, &error).encode(&mut buf);
    if write.write_all(&buf).await.is_ok() {
        linger_close(reader.into_inner(), write).await;
    }
}

/// An error answer to the request with this correlation id and opcode.
pub fn error_frame(correlation_id: u64, opcode: u16, error: &ErrorBody) -> Frame {
    Frame {
        version: VERSION,
        flags: FLAG_RESPONSE | FLAG_ERROR,
        opcode,
        correlation_id,
        body: error.encode(),
    }
}
