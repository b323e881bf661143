//! Publishing into the partition: producer-session and message-id deduplication, stamping,
//! appending, and the per-message answer once the batch is durable.
//!
//! The common case (no session, no ids, nothing invalid) touches no record: the batch is stamped
//! and appended as it came. Only a batch with publisher-made ids is scanned, and only one with
//! duplicates inside is re-encoded without them.

use sluice_protocol::message::peek_dedupe_key;
use sluice_protocol::response::PublishAck;
use sluice_protocol::types::{DuplicateRun, InvalidOutcome, StoredRun};
use sluice_protocol::{ErrorBody, ErrorCode, RecordBatch, Response, Stamp};

use super::writes::{AfterWrite, Done};
use super::{Partition, TERM};
use crate::channel::dedupe::SessionVerdict;
use crate::channel::error::ChannelError;
use crate::channel::outbox::Reply;

/// What the channel layer decided about a batch before it reached the partition.
#[derive(Debug, Clone, Default)]
pub struct Routed {
    /// Original index of each message of the batch, when invalid ones were taken out.
    pub indexes: Option<Vec<u32>>,
    /// Messages that broke the contract.
    pub invalid: Vec<InvalidOutcome>,
}

/// The answer to a publish, waiting for its batch to become durable.
#[derive(Debug)]
pub struct PendingAck {
    /// Original index of each stored message, in order; `None` when they are simply
    /// `0..count` (the common case, kept free of per-message work).
    stored: Option<Vec<u32>>,
    /// Messages stored.
    count: u32,
    /// Messages that were duplicates.
    duplicates: Vec<DuplicateRun>,
    /// Messages that broke the contract.
    invalid: Vec<InvalidOutcome>,
}

impl PendingAck {
    /// The answer, given where the stored messages landed.
    pub fn into_ack(self, partition: u32, base_offset: u64) -> PublishAck {
        let Some(indexes) = self.stored else {
            let run = StoredRun {
                index: 0,
                count: self.count,
                offset: base_offset,
            };
            return PublishAck {
                partition,
                stored: if self.count == 0 {
                    Vec::new()
                } else {
                    vec![run]
                },
                duplicates: self.duplicates,
                invalid: self.invalid,
            };
        };
        let mut stored: Vec<StoredRun> = Vec::new();
        for (i, &index) in indexes.iter().enumerate() {
            let offset = base_offset + i as u64;
            match stored.last_mut() {
                Some(run)
                    if run.index + run.count == index
                        && run.offset + u64::from(run.count) == offset =>
                {
                    run.count += 1;
                }
                _ => stored.push(StoredRun {
                    index,
                    count: 1,
                    offset,
                }),
            }
        }
        PublishAck {
            partition,
            stored,
            duplicates: self.duplicates,
            invalid: self.invalid,
        }
    }
}

impl Partition {
    /// Checks, deduplicates, stamps and appends a producer's batch.
    pub(super) fn publish(&mut self, batch: RecordBatch, routed: Routed, reply: Reply) {
        if let Err(e) = self.admissible(&batch) {
            return reply.send(Err(e.to_wire()));
        }
        let count = batch.record_count();
        let original = |i: u32| routed.indexes.as_ref().map_or(i, |ix| ix[i as usize]);
        let (pid, epoch, seq) = (
            batch.producer_id(),
            batch.producer_epoch(),
            batch.base_sequence(),
        );
        match self.producers.check(pid, epoch, seq, count) {
            SessionVerdict::New => {}
            SessionVerdict::Duplicate { base_offset } => {
                self.metrics.deduplicated(count as usize);
                let duplicates = (0..count)
                    .map(|i| DuplicateRun {
                        index: original(i),
                        offset: base_offset + u64::from(i),
                    })
                    .collect();
                let pending = PendingAck {
                    stored: None,
                    count: 0,
                    duplicates,
                    invalid: routed.invalid,
                };
                return reply.send(Ok(Response::Published(pending.into_ack(self.config.id, 0))));
            }
            SessionVerdict::Fenced { current_epoch } => {
                let message =
                    format!("producer {pid} epoch {epoch} is fenced by epoch {current_epoch}");
                return reply.send(Err(ErrorBody::new(ErrorCode::ProducerFenced, message)));
            }
            SessionVerdict::OutOfOrder { expected, got } => {
                let message = format!("producer {pid}: expected sequence {expected}, got {got}");
                return reply.send(Err(ErrorBody::new(ErrorCode::OutOfOrderSequence, message)));
            }
        }
        let now = self.now_ms();
        let (batch, kept, duplicates) = self.drop_duplicate_ids(batch, now, &original);
        let stored_count = kept.as_ref().map_or(count, |k| k.len() as u32);
        let stored = match (&routed.indexes, kept) {
            (None, None) => None,
            (_, kept) => Some(match kept {
                Some(kept) => kept.into_iter().map(original).collect(),
                None => (0..count).map(original).collect(),
            }),
        };
        self.metrics.deduplicated(duplicates.len());
        if pid != 0 {
            self.producers
                .record(pid, epoch, seq, count, self.log.next_offset());
        }
        let pending = PendingAck {
            stored,
            count: stored_count,
            duplicates,
            invalid: routed.invalid,
        };
        let Some(batch) = batch else {
            return reply.send(Ok(Response::Published(pending.into_ack(self.config.id, 0))));
        };
        self.append_batch(batch, now, pending, reply);
    }

    fn admissible(&self, batch: &RecordBatch) -> Result<(), ChannelError> {
        if batch.is_control() {
            return Err(ChannelError::InvalidArgument(
                "producers may not send control batches".into(),
            ));
        }
        if batch.len() > self.config.max_batch_bytes {
            return Err(ChannelError::BatchTooLarge {
                size: batch.len(),
                max: self.config.max_batch_bytes,
            });
        }
        match &self.failed {
            Some(reason) => Err(ChannelError::PartitionFailed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Takes out messages whose id was stored within the dedupe window (or earlier in the same
    /// batch) and records the ids of the others at the offsets they will get.
    fn drop_duplicate_ids(
        &mut self,
        batch: RecordBatch,
        now: i64,
        original: &dyn Fn(u32) -> u32,
    ) -> (Option<RecordBatch>, Option<Vec<u32>>, Vec<DuplicateRun>) {
        if self.ids.window_is_off() {
            return (Some(batch), None, Vec::new());
        }
        if !batch.may_have_dedupe_keys() {
            // Nothing to check, but ids stored earlier still leave the window on time.
            self.ids.expire(now);
            return (Some(batch), None, Vec::new());
        }
        // Every id of the batch is hashed first; check_batch then asks for all their index
        // lines before it checks any, so the cache misses overlap.
        let mut ids = std::mem::take(&mut self.batch_ids);
        ids.clear();
        let prepared = batch.record_slices().enumerate();
        ids.extend(
            prepared
                .filter_map(|(i, r)| peek_dedupe_key(r).map(|id| (i as u32, self.ids.prepare(id)))),
        );
        let mut duplicates: Vec<DuplicateRun> = self
            .ids
            .check_batch(&ids, self.log.next_offset(), now)
            .into_iter()
            .map(|(index, offset)| DuplicateRun { index, offset })
            .collect();
        self.batch_ids = ids;
        if duplicates.is_empty() {
            return (Some(batch), None, duplicates);
        }
        let mut dropped = duplicates.iter().map(|d| d.index).peekable();
        let kept: Vec<u32> = (0..batch.record_count())
            .filter(|&i| dropped.next_if_eq(&i).is_none())
            .collect();
        for d in &mut duplicates {
            d.index = original(d.index);
        }
        let mut wanted = kept.iter().copied().peekable();
        let rebuilt = batch.subset(|i| wanted.next_if_eq(&i).is_some());
        (rebuilt, Some(kept), duplicates)
    }

    fn append_batch(&mut self, batch: RecordBatch, now: i64, pending: PendingAck, reply: Reply) {
        let stamp = Stamp {
            base_offset: self.log.next_offset(),
            entry_index: self.log.next_entry(),
            term: TERM,
            timestamp: now,
        };
        let batch = batch.stamp(stamp);
        match self.log.append_stamped(batch.clone()) {
            Ok((_, durable)) => {
                let after = AfterWrite::Published {
                    batch,
                    pending,
                    reply,
                };
                self.writes.push(durable, after);
            }
            Err(e) => self.fail(e, Done::Reply(reply)),
        }
    }

    /// Learns the producer session of a stored batch (replay).
    pub(super) fn observe_session(&mut self, batch: &RecordBatch) {
        let (pid, count) = (batch.producer_id(), batch.record_count());
        if pid != 0 {
            let (epoch, seq) = (batch.producer_epoch(), batch.base_sequence());
            self.producers
                .record(pid, epoch, seq, count, batch.base_offset());
        }
    }

    /// Learns the message ids of a stored batch still inside the window at `now` (replay).
    pub(super) fn observe_ids(&mut self, batch: &RecordBatch, now: i64) {
        if self.ids.window_is_off() || !self.ids.covers(batch.first_timestamp(), now) {
            return;
        }
        for (i, record) in batch.record_slices().enumerate() {
            if let Some(id) = peek_dedupe_key(record) {
                self.ids
                    .insert(id, batch.base_offset() + i as u64, batch.first_timestamp());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_runs_follow_original_indexes_around_gaps() {
        let pending = PendingAck {
            stored: Some(vec![0, 1, 3, 4]),
            count: 4,
            duplicates: Vec::new(),
            invalid: Vec::new(),
        };
        let ack = pending.into_ack(2, 10);
        assert_eq!(
            ack.stored,
            vec![
                StoredRun {
                    index: 0,
                    count: 2,
                    offset: 10
                },
                StoredRun {
                    index: 3,
                    count: 2,
                    offset: 12
                },
            ]
        );
    }
}
