//! The batching task behind [`Producer::send`](super::Producer::send): one open batch per
//! partition, sent when full, when its linger time is up, or (with no linger) when the queue
//! runs dry. Each sent batch runs as its own task holding an in-flight permit, so this loop
//! keeps batching while earlier batches wait for the broker.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_protocol::{BatchBuilder, NewMessage};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::partition::fixed_partition;
use super::publish::{dispatch, is_full, push, BatchOutcome};
use super::{Outcome, Shared, Submit};
use crate::error::Result;

/// Where each message's outcome goes, in batch order.
type Waiters = Vec<oneshot::Sender<Result<Outcome>>>;

/// A batch being filled.
struct OpenBatch {
    /// The encoded messages so far.
    builder: BatchBuilder,
    /// One per message, in order.
    waiters: Waiters,
    /// When the batch must go even if not full.
    deadline: Instant,
}

/// The batching loop's state.
pub(super) struct Accumulator {
    /// Producer settings, client and in-flight permits.
    shared: Arc<Shared>,
    /// Messages from `send`.
    queue: mpsc::Receiver<Submit>,
    /// Open batches by partition.
    open: HashMap<u32, OpenBatch>,
    /// Partition for messages with neither key nor id, until its batch is sent.
    sticky: u32,
}

impl Accumulator {
    pub(super) fn new(shared: Arc<Shared>, queue: mpsc::Receiver<Submit>) -> Self {
        let sticky = shared.next_round_robin();
        Self {
            shared,
            queue,
            open: HashMap::new(),
            sticky,
        }
    }

    /// Runs until every producer handle is dropped, then sends what is left.
    pub(super) async fn run(mut self) {
        while let Some(submit) = self.next_submit().await {
            match submit {
                Submit::Message(message, reply) => self.add(message, reply).await,
                Submit::Flush(reply) => {
                    self.flush_all().await;
                    self.wait_in_flight().await;
                    let _ = reply.send(());
                }
            }
        }
        self.flush_all().await;
    }

    /// The next request, sending batches whose time has come while waiting for it.
    async fn next_submit(&mut self) -> Option<Submit> {
        loop {
            if self.open.is_empty() {
                return self.queue.recv().await;
            }
            if self.shared.options.linger.is_zero() {
                match self.queue.try_recv() {
                    Ok(submit) => return Some(submit),
                    Err(TryRecvError::Empty) => self.flush_all().await,
                    Err(TryRecvError::Disconnected) => return None,
                }
                continue;
            }
            let deadline = self.open.values().map(|b| b.deadline).min()?;
            tokio::select! {
                submit = self.queue.recv() => return submit,
                _ = tokio::time::sleep_until(deadline) => self.flush_due(Instant::now()).await,
            }
        }
    }

    async fn add(&mut self, message: NewMessage, reply: oneshot::Sender<Result<Outcome>>) {
        let partition = fixed_partition(&message, self.shared.partitions).unwrap_or(self.sticky);
        let full = self
            .open
            .get(&partition)
            .is_some_and(|b| is_full(&self.shared, &b.builder, &message));
        if full {
            self.flush(partition).await;
        }
        let linger = self.shared.options.linger;
        let batch = self.open.entry(partition).or_insert_with(|| OpenBatch {
            builder: BatchBuilder::messages(),
            waiters: Vec::new(),
            deadline: Instant::now() + linger,
        });
        push(&mut batch.builder, &message);
        batch.waiters.push(reply);
        if batch.builder.record_count() >= self.shared.options.max_batch_messages {
            self.flush(partition).await;
        }
    }

    async fn flush_due(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .open
            .iter()
            .filter(|(_, b)| b.deadline <= now)
            .map(|(p, _)| *p)
            .collect();
        for partition in due {
            self.flush(partition).await;
        }
    }

    async fn flush_all(&mut self) {
        let all: Vec<u32> = self.open.keys().copied().collect();
        for partition in all {
            self.flush(partition).await;
        }
    }

    /// Puts one partition's open batch on the wire once an in-flight permit is free; a task
    /// waits for the answer.
    async fn flush(&mut self, partition: u32) {
        let Some(open) = self.open.remove(&partition) else {
            return;
        };
        if partition == self.sticky {
            self.sticky = self.shared.next_round_robin();
        }
        let answer = dispatch(&self.shared, partition, open.builder).await;
        tokio::spawn(async move { resolve(open.waiters, answer.await) });
    }

    async fn wait_in_flight(&self) {
        let all = u32::try_from(self.shared.options.max_in_flight).unwrap_or(u32::MAX);
        let _all = self.shared.in_flight.acquire_many(all).await;
    }
}

fn resolve(waiters: Waiters, result: BatchOutcome) {
    match result {
        Ok(outcomes) => {
            for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
                let _ = waiter.send(outcome);
            }
        }
        Err(e) => {
            for waiter in waiters {
                let _ = waiter.send(Err(e.clone()));
            }
        }
    }
}
