//! The Sluice wire protocol: frames, requests, responses, error codes and the record-batch
//! layout. A pure codec: no I/O, no async runtime, no broker types.
//!
//! A connection is a sequence of length-prefixed [frames](frame). The client's first frame is a
//! [`Request::Handshake`]; after that, requests are pipelined and answered by correlation id,
//! and the broker pushes [`Delivery`] frames to attached consumers under credit.
//!
//! ```text
//! client                                      broker
//!   │ Handshake ─────────────────────────────▶ │
//!   │ ◀──────────────────────────── HandshakeOk │
//!   │ Publish(batch) #1, #2, #3 … ───────────▶ │  (pipelined)
//!   │ ◀─────────────── PublishAck #2, #1, #3 … │  (any order, by correlation id)
//!   │ Subscribe{credit} ─────────────────────▶ │
//!   │ ◀─────────────────── Delivery (pushed) … │
//!   │ Ack{ranges} / Credit ──────────────────▶ │
//! ```

pub mod batch;
pub mod error;
pub mod frame;
pub mod headers;
pub mod message;
pub mod request;
pub mod response;
pub mod types;

#[cfg(test)]
mod roundtrip_tests;

pub use batch::{BatchBuilder, BatchError, RecordBatch, Stamp};
pub use error::{ErrorCode, ProtocolError};
pub use frame::{Frame, FrameDecoder};
pub use message::{MessageView, NewMessage};
pub use request::{opcode, Request};
pub use response::{Delivery, ErrorBody, Response};
pub use types::PayloadFormat;
