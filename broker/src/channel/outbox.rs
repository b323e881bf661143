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

/// Where the answer to one request goes.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The requesting connection's writer queue.
    outbox: Outbox,
    /// The request's correlation id.
    correlation_id: u64,
    /// The request's opcode.
    opcode: u16,
}

impl Reply {
    /// A reply slot for one request.
    pub fn new(outbox: Outbox, correlation_id: u64, opcode: u16) -> Self {
        Self {
            outbox,
            correlation_id,
            opcode,
        }
    }

    /// Sends the answer. A connection that is gone no longer wants it, so that is not an error.
    pub fn send(self, result: Result<Response, ErrorBody>) {
        let _ = self.outbox.send(Outgoing::Reply {
            correlation_id: self.correlation_id,
            opcode: self.opcode,
            result,
        });
    }
}
