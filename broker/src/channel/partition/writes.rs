//! Appends waiting for durability, and what to do when each becomes durable.

use std::collections::VecDeque;
use std::time::Instant;

use sluice_protocol::{RecordBatch, Response};
use tokio::sync::oneshot;

use crate::channel::command::Command;
use crate::channel::error::ChannelError;
use crate::channel::outbox::Reply;
use crate::log::{Durable, LogError};

/// Appends in log order; the log makes them durable in that order too.
///
/// A queue rather than one boxed future per append: only the oldest append is waited for, and
/// once the writer's progress passes it the ones behind it are usually durable too, so they
/// are taken without waiting (see [`PendingWrites::ready`]).
pub struct PendingWrites {
    /// Each append's durability, when it was queued, and its continuation.
    queue: VecDeque<(Durable, Instant, AfterWrite)>,
    /// Publish-to-durable latency of producer batches.
    append_seconds: metrics::Histogram,
}

impl PendingWrites {
    /// An empty queue that records publish latency in `append_seconds`.
    pub fn new(append_seconds: metrics::Histogram) -> Self {
        Self {
            queue: VecDeque::new(),
            append_seconds,
        }
    }

    /// Queues `after` to run once `durable` resolves.
    pub fn push(&mut self, durable: Durable, after: AfterWrite) {
        self.queue.push_back((durable, Instant::now(), after));
    }

    /// Whether no append is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The oldest append once its outcome is known. Cancel safe: nothing is taken until then.
    pub async fn next(&mut self) -> Option<(Result<(), LogError>, AfterWrite)> {
        let result = self.queue.front_mut()?.0.wait().await;
        self.take(result)
    }

    /// The oldest append if its outcome is already known, without waiting.
    pub fn ready(&mut self) -> Option<(Result<(), LogError>, AfterWrite)> {
        let result = self.queue.front()?.0.ready()?;
        self.take(result)
    }

    /// Removes the oldest append, whose outcome is `result`.
    fn take(&mut self, result: Result<(), LogError>) -> Option<(Result<(), LogError>, AfterWrite)> {
        let (_, queued, after) = self.queue.pop_front()?;
        if matches!(after, AfterWrite::Published { .. }) {
            self.append_seconds.record(queued.elapsed().as_secs_f64());
        }
        Some((result, after))
    }
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
