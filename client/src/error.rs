//! The client's error type: what went wrong on a call, with the broker's stable code when the
//! broker answered with an error.
//!
//! Errors are `Clone` so one failure (a lost connection, a failed batch) can be handed to every
//! caller that waits on it.

use std::sync::Arc;

use sluice_protocol::{ErrorBody, ErrorCode, ProtocolError};

/// Shorthand for results of client calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Why a client call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A message is larger than any batch the broker takes (the smaller of its batch limit and
    /// its frame limit less room for the request, as told at the handshake); it was not sent.
    #[error("message of {size} bytes exceeds the broker's limit of {max} bytes per message")]
    MessageTooLarge {
        /// The message's encoded size, as a batch of one.
        size: usize,
        /// The largest batch of one the broker takes.
        max: usize,
    },
    /// The broker answered with an error frame.
    #[error("{code}: {message}")]
    Broker {
        /// Stable error code.
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
        /// For [`ErrorCode::NotLeader`]: the node that leads the partition.
        leader: Option<String>,
    },
    /// No connection to the broker could be made.
    #[error("cannot connect to {addr}: {cause}")]
    Connect {
        /// The address tried.
        addr: String,
        /// The socket error.
        cause: Arc<std::io::Error>,
    },
    /// The connection broke while the call was in flight; its outcome is unknown.
    #[error("connection to the broker lost")]
    Disconnected,
    /// The broker sent bytes that do not decode.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The broker answered with a response of the wrong kind.
    #[error("unexpected answer to {request}")]
    UnexpectedResponse {
        /// The request that got the odd answer.
        request: &'static str,
    },
    /// A message cannot be encoded (a field too long for its length prefix).
    #[error("message cannot be encoded: {0}")]
    InvalidMessage(&'static str),
    /// The producer or consumer was closed.
    #[error("closed")]
    Closed,
    /// The delivery was already acked, nacked or came from a lost connection (the broker has
    /// returned it to the subscription already).
    #[error("delivery already settled or no longer held: {0}")]
    NotHeld(&'static str),
    /// The operation did not finish in time.
    #[error("timed out")]
    Timeout,
}

impl ClientError {
    /// The broker's error code, when the broker answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether a new connection may succeed where this call failed.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Disconnected)
    }

    pub(crate) fn connect(addr: &str, source: std::io::Error) -> Self {
        Self::Connect {
            addr: addr.to_owned(),
            cause: Arc::new(source),
        }
    }

    pub(crate) fn broker(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Broker {
            code,
            message: message.into(),
            leader: None,
        }
    }
}

impl From<ErrorBody> for ClientError {
    fn from(body: ErrorBody) -> Self {
        Self::Broker {
            code: body.code,
            message: body.message,
            leader: body.leader,
        }
    }
}

impl From<sluice_protocol::BatchError> for ClientError {
    fn from(e: sluice_protocol::BatchError) -> Self {
        Self::Protocol(e.into())
    }
}
