//! Appends waiting for durability, and what to do when each becomes durable.

use std::future::Future;
use std::pin::Pin;

use futures::stream::FuturesOrdered;
use sluice_protocol::{RecordBatch, Response};
use tokio::sync::oneshot;

use crate::channel::command::Command;
use crate::channel::error::ChannelError;
use crate::channel::outbox::Reply;
use crate::log::LogError;

type Pending = Pin<Box<dyn Future<Output = (Result<(), LogError>, AfterWrite)> + Send>>;

/// Appends in log order; the log makes them durable in that order too.
pub type PendingWrites = FuturesOrdered<Pending>;

/// Queues `after` to run once `durable` resolves.
pub fn push<D>(writes: &mut PendingWrites, durable: D, after: AfterWrite)
where
    D: Future<Output = Result<(), LogError>> + Send + 'static,
{
    writes.push_back(Box::pin(async move { (durable.await, after) }));
}

/// The continuation of an append.
pub enum AfterWrite {
    /// A producer's batch: commit it and answer the producer.
    Published {
        /// The stamped batch, kept for the tail cache.
        batch: RecordBatch,
        /// The answer, but for the offsets.
        pending: super::publish::PendingAck,
        /// The producer's reply slot.
        reply: Reply,
    },
    /// A command: apply it, then answer whoever asked.
    Apply {
        /// The command to apply.
        command: Command,
        /// Who waits for it.
        done: Done,
    },
}

impl AfterWrite {
    /// Whoever waits for this write.
    pub fn into_done(self) -> Done {
        match self {
            Self::Published { reply, .. } => Done::Reply(reply),
            Self::Apply { done, .. } => done,
        }
    }
}

/// Who waits for a change: a client request, an admin call inside the broker, or nobody.
#[derive(Debug)]
pub enum Done {
    /// A client request.
    Reply(Reply),
    /// A broker-internal caller.
    Call(oneshot::Sender<Result<(), ChannelError>>),
    /// Nobody (lease expiry, detach).
    Nothing,
}

impl Done {
    /// Reports success.
    pub fn ok(self, response: Response) {
        match self {
            Self::Reply(reply) => reply.send(Ok(response)),
            Self::Call(tx) => {
                let _ = tx.send(Ok(()));
            }
            Self::Nothing => {}
        }
    }

    /// Reports failure.
    pub fn err(self, error: ChannelError) {
        match self {
            Self::Reply(reply) => reply.send(Err(error.to_wire())),
            Self::Call(tx) => {
                let _ = tx.send(Err(error));
            }
            Self::Nothing => {}
        }
    }
}
