//! The idempotent producer's session: a `(producer_id, epoch)` from the broker and the next
//! sequence number per partition, stamped into every batch.
//!
//! ```text
//! InitProducer{channel} ──▶ ProducerSession{producer_id, epoch}
//! batch to partition p:   producer_id, epoch, base_sequence = messages sent to p before it
//! broker, per (producer_id, p): base_sequence already seen → duplicate (original offsets)
//!                               base_sequence ahead of the next expected → OutOfOrderSequence
//! ```
//!
//! Batches of one partition must reach the broker in sequence order, so a batch takes its
//! sequence and goes on the wire under one lock. A batch resent after a lost connection keeps
//! its bytes, so it keeps its sequence and the broker answers `duplicate` if it had stored it.

use std::collections::HashMap;
use std::time::Duration;

use sluice_protocol::request::InitProducer;
use sluice_protocol::response::ProducerSession;
use sluice_protocol::{BatchBuilder, ErrorCode, RecordBatch, Request, Response};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::{ClientError, Result};
use crate::Client;

/// Resends of one batch before its error is final.
pub(super) const RESENDS: u32 = 8;

/// One producer session on one channel.
#[derive(Debug)]
pub(crate) struct Session {
    /// What the broker handed out.
    session: ProducerSession,
    /// Next base sequence per partition. Held across stamping and submitting, so sequence order
    /// is wire order.
    next: Mutex<HashMap<u32, u32>>,
}

impl Session {
    /// Asks the broker for a new producer id on `channel`.
    ///
    /// # Errors
    /// The broker's error (e.g. `UnknownOpcode` from a broker without sessions), or a connection
    /// error.
    pub(crate) async fn open(client: &Client, channel: &str) -> Result<Self> {
        let request = Request::InitProducer(InitProducer {
            channel: channel.to_owned(),
            producer_id: None,
        });
        match client.request(&request).await? {
            Response::ProducerSession(session) => Ok(Self {
                session,
                next: Mutex::new(HashMap::new()),
            }),
            _ => Err(ClientError::UnexpectedResponse {
                request: "init producer",
            }),
        }
    }

    /// The producer id and epoch.
    pub(crate) fn id(&self) -> ProducerSession {
        self.session
    }

    /// Locks the sequence counters; keep the guard until the stamped batch is submitted.
    pub(crate) async fn lock(&self) -> MutexGuard<'_, HashMap<u32, u32>> {
        self.next.lock().await
    }

    /// Stamps `builder` with the session and the partition's next sequence, and advances it.
    ///
    /// # Errors
    /// A [`BatchError`](sluice_protocol::BatchError) from sealing the batch.
    pub(crate) fn seal(
        &self,
        next: &mut HashMap<u32, u32>,
        partition: u32,
        mut builder: BatchBuilder,
    ) -> Result<RecordBatch> {
        let sequence = next.entry(partition).or_insert(0);
        let ProducerSession { producer_id, epoch } = self.session;
        builder.producer(producer_id, epoch, *sequence);
        let batch = builder.finish()?;
        *sequence = sequence.wrapping_add(batch.record_count());
        Ok(batch)
    }
}

/// Whether a session's batch should be sent again after `error`: its connection was lost (the
/// outcome is unknown, and a resend is safe), or an earlier batch of its partition has not
/// reached the broker yet (it is being resent too).
pub(super) fn resend_after(error: &ClientError) -> bool {
    error.is_connection_error() || error.code() == Some(ErrorCode::OutOfOrderSequence)
}

/// Pause before resend number `attempt` (from 1).
pub(super) fn resend_delay(attempt: u32) -> Duration {
    Duration::from_millis(20u64 << attempt.min(6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_count_messages_per_partition() {
        let session = Session {
            session: ProducerSession {
                producer_id: 9,
                epoch: 2,
            },
            next: Mutex::new(HashMap::new()),
        };
        let mut next = HashMap::new();
        let batch = |n: usize| {
            let mut b = BatchBuilder::messages();
            for _ in 0..n {
                b.push_raw(b"m");
            }
            b
        };
        let first = session.seal(&mut next, 0, batch(3)).unwrap();
        let other = session.seal(&mut next, 1, batch(1)).unwrap();
        let second = session.seal(&mut next, 0, batch(2)).unwrap();
        assert_eq!(
            (first.producer_id(), first.producer_epoch()),
            (9, 2),
            "stamped with the session"
        );
        assert_eq!(first.base_sequence(), 0);
        assert_eq!(other.base_sequence(), 0);
        assert_eq!(second.base_sequence(), 3);
    }

    #[test]
    fn only_lost_connections_and_sequence_gaps_are_resent() {
        assert!(resend_after(&ClientError::Disconnected));
        let gap = ClientError::broker(ErrorCode::OutOfOrderSequence, "gap");
        assert!(resend_after(&gap));
        let fenced = ClientError::broker(ErrorCode::ProducerFenced, "fenced");
        assert!(!resend_after(&fenced));
    }
}
