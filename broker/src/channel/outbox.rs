//! What a partition sends back to a connection: replies to requests and pushed deliveries.
//!
//! Partitions never see frames or sockets: they put [`Outgoing`] items into a connection's
//! [`Outbox`], and the connection's writer turns them into frames. The outbox is unbounded on
//! purpose: replies are bounded by the requests a connection may have in flight, and deliveries
//! by the credit its consumers granted, so a slow socket never blocks a partition task.

use sluice_protocol::{Delivery, ErrorBody, Response};
use tokio::sync::mpsc;

/// One item for a connection's writer.
#[derive(Debug)]
pub enum Outgoing {
    /// The answer to the request with this correlation id and opcode.
    Reply {
        /// Echo of the request's correlation id.
        correlation_id: u64,
        /// Echo of the request's opcode.
        opcode: u16,
        /// The answer or the error.
        result: Result<Response, ErrorBody>,
    },
    /// Records pushed to one of the connection's consumers.
    Delivery(Delivery),
}

/// The sending side of a connection's writer queue.
pub type Outbox = mpsc::UnboundedSender<Outgoing>;

/// Where the answer to one request goes: a client connection, or a broker-internal caller
/// (dead-lettering and redrive publish through the same partition path as clients).
#[derive(Debug, Clone)]
pub struct Reply(To);

#[derive(Debug, Clone)]
enum To {
    /// A client request.
    Connection {
        /// The requesting connection's writer queue.
        outbox: Outbox,
        /// The request's correlation id.
        correlation_id: u64,
        /// The request's opcode.
        opcode: u16,
    },
    /// A broker-internal request.
    Internal(mpsc::UnboundedSender<Result<Response, ErrorBody>>),
}

impl Reply {
    /// A reply slot for one client request.
    pub fn new(outbox: Outbox, correlation_id: u64, opcode: u16) -> Self {
        Self(To::Connection {
            outbox,
            correlation_id,
            opcode,
        })
    }

    /// A reply slot for a broker-internal request, and where its answer arrives.
    pub fn internal() -> (Self, mpsc::UnboundedReceiver<Result<Response, ErrorBody>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(To::Internal(tx)), rx)
    }

    /// Sends the answer. A requester that is gone no longer wants it, so that is not an error.
    pub fn send(self, result: Result<Response, ErrorBody>) {
        match self.0 {
            To::Connection {
                outbox,
                correlation_id,
                opcode,
            } => {
                let _ = outbox.send(Outgoing::Reply {
                    correlation_id,
                    opcode,
                    result,
                });
            }
            To::Internal(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}
