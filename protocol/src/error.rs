//! Decoding errors and the stable error codes that travel in error frames.

use serde::{Deserialize, Serialize};

use crate::batch::BatchError;
use crate::message::MessageError;

/// Why bytes from the wire could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The frame is longer than the receiver accepts.
    #[error("frame of {length} bytes exceeds the limit of {max}")]
    FrameTooLarge { length: usize, max: usize },
    /// The length field is shorter than a frame header.
    #[error("frame length {length} is shorter than a frame header")]
    BadLength { length: usize },
    /// The peer speaks a protocol version this side does not.
    #[error("unsupported protocol version {version}")]
    UnsupportedVersion { version: u8 },
    /// No request or response has this opcode.
    #[error("unknown opcode {opcode}")]
    UnknownOpcode { opcode: u16 },
    /// A binary body ended early.
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A string field is not UTF-8.
    #[error("{0} is not UTF-8")]
    Utf8(&'static str),
    /// A MessagePack body did not decode into the expected type.
    #[error("malformed {what} body: {detail}")]
    Body { what: &'static str, detail: String },
    /// A record batch failed validation.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A message record failed to parse.
    #[error(transparent)]
    Message(#[from] MessageError),
}

impl ProtocolError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::UnknownOpcode { .. } => ErrorCode::UnknownOpcode,
            Self::Batch(_) => ErrorCode::InvalidBatch,
            _ => ErrorCode::MalformedFrame,
        }
    }
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// Stable numeric error codes. A gap is a retired code, never free space.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(into = "u16", from = "u16")]
        #[repr(u16)]
        pub enum ErrorCode {
            $($(#[$doc])* $name = $code,)*
            /// A code this side does not know (sent by a newer peer).
            Unknown = u16::MAX,
        }

        impl From<u16> for ErrorCode {
            fn from(code: u16) -> Self {
                match code {
                    $($code => Self::$name,)*
                    _ => Self::Unknown,
                }
            }
        }

        impl ErrorCode {
            /// The snake_case name used in logs, metrics labels and `sluicectl` output.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$name => stringify!($name),)*
                    Self::Unknown => "Unknown",
                }
            }
        }
    };
}

error_codes! {
    /// The frame or its body could not be parsed.
    MalformedFrame = 1,
    /// The protocol version is not supported.
    UnsupportedVersion = 2,
    /// The frame exceeds the size limit.
    FrameTooLarge = 3,
    /// The opcode is not known.
    UnknownOpcode = 4,
    /// A request came before the handshake.
    HandshakeRequired = 5,
    /// The channel does not exist.
    UnknownChannel = 10,
    /// A channel with that name exists already.
    ChannelExists = 11,
    /// The subscription does not exist.
    UnknownSubscription = 12,
    /// A subscription with that name exists already.
    SubscriptionExists = 13,
    /// The partition does not exist.
    UnknownPartition = 14,
    /// An argument is out of range or inconsistent.
    InvalidArgument = 15,
    /// A record batch failed validation (CRC, framing).
    InvalidBatch = 16,
    /// A message or batch is larger than allowed.
    MessageTooLarge = 17,
    /// The consumer id is not attached on this connection.
    UnknownConsumer = 18,
    /// This node does not lead the partition.
    NotLeader = 19,
    /// The broker's storage failed.
    Storage = 20,
    /// The broker is shutting down.
    ShuttingDown = 21,
    /// The broker refuses more connections.
    TooManyConnections = 22,
    /// A message broke the channel's contract and no invalid channel is set.
    InvalidMessage = 23,
    /// The producer session was fenced by a newer epoch.
    ProducerFenced = 24,
    /// An internal broker error.
    Internal = 25,
    /// The operation timed out.
    Timeout = 26,
    /// The operation does not fit the channel's kind (e.g. a second subscription on a queue).
    WrongKind = 27,
    /// A producer batch's sequence skips ahead of the next one expected for its partition.
    OutOfOrderSequence = 28,
}

impl From<ErrorCode> for u16 {
    fn from(code: ErrorCode) -> u16 {
        code as u16
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_pinned() {
        assert_eq!(u16::from(ErrorCode::MalformedFrame), 1);
        assert_eq!(u16::from(ErrorCode::UnknownChannel), 10);
        assert_eq!(u16::from(ErrorCode::WrongKind), 27);
        assert_eq!(u16::from(ErrorCode::InvalidMessage), 23);
        assert_eq!(u16::from(ErrorCode::ProducerFenced), 24);
        assert_eq!(u16::from(ErrorCode::OutOfOrderSequence), 28);
        assert_eq!(ErrorCode::from(19), ErrorCode::NotLeader);
        assert_eq!(ErrorCode::from(6), ErrorCode::Unknown);
    }
}
