//! Publishing into the partition: producer-session and message-id deduplication, stamping,
//! appending, and the per-message answer once the batch is durable.
//!
//! The common case (no session, no ids, nothing invalid) touches no record: the batch is stamped
//! and appended as it came. Only a batch with publisher-made ids is scanned, and only one with
//! duplicates inside is re-encoded without them.

use sluice_protocol::message::peek_id;
use sluice_protocol::response::PublishAck;
use sluice_protocol::types::{DuplicateRun, InvalidOutcome, StoredRun};
use sluice_protocol::{BatchBuilder, ErrorBody, ErrorCode, RecordBatch, Response, Stamp};

use super::writes::{self, AfterWrite, Done};
use super::{now_ms, Partition, TERM};
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
    /// Original index of each stored message, in order.
    stored: Vec<u32>,
    /// Messages that were duplicates.
    duplicates: Vec<DuplicateRun>,
    /// Messages that broke the contract.
    invalid: Vec<InvalidOutcome>,
}

impl PendingAck {
    /// The answer, given where the stored messages landed.
    pub fn into_ack(self, partition: u32, base_offset: u64) -> PublishAck {
        let mut stored: Vec<StoredRun> = Vec::new();
        for (i, &index) in self.stored.iter().enumerate() {
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
                    stored: Vec::new(),
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
        let now = now_ms();
        let (batch, stored, duplicates) = self.drop_duplicate_ids(batch, now, &original);
        self.metrics.deduplicated(duplicates.len());
        if pid != 0 {
            self.producers
                .record(pid, epoch, seq, count, self.log.next_offset());
        }
        let pending = PendingAck {
            stored,
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
            Some(reason) => Err(ChannelError::InvalidArgument(format!(
                "partition failed: {reason}"
            ))),
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
    ) -> (Option<RecordBatch>, Vec<u32>, Vec<DuplicateRun>) {
        let count = batch.record_count();
        let all: Vec<u32> = (0..count).map(original).collect();
        if self.ids.window_is_off() {
            return (Some(batch), all, Vec::new());
        }
        self.ids.expire(now);
        let base = self.log.next_offset();
        let mut keep = Vec::with_capacity(count as usize);
        let mut duplicates = Vec::new();
        for (i, record) in batch.raw_records().enumerate() {
            let Some(id) = peek_id(&record) else {
                keep.push((i as u32, record));
                continue;
            };
            match self.ids.lookup(&id, now) {
                Some(offset) => duplicates.push(DuplicateRun {
                    index: original(i as u32),
                    offset,
                }),
                None => {
                    self.ids.insert(id, base + keep.len() as u64, now);
                    keep.push((i as u32, record));
                }
            }
        }
        let stored: Vec<u32> = keep.iter().map(|(i, _)| original(*i)).collect();
        if duplicates.is_empty() {
            return (Some(batch), stored, duplicates);
        }
        (
            rebuild(&batch, keep.iter().map(|(_, r)| r)),
            stored,
            duplicates,
        )
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
                let durable = self.metrics.time_append(durable);
                let after = AfterWrite::Published {
                    batch,
                    pending,
                    reply,
                };
                writes::push(&mut self.writes, durable, after);
            }
            Err(e) => self.fail(e, Done::Reply(reply)),
        }
    }

    /// Learns producer sessions and recent message ids from a stored batch (replay).
    pub(super) fn observe_for_dedupe(&mut self, batch: &RecordBatch, now: i64) {
        let (pid, count) = (batch.producer_id(), batch.record_count());
        if pid != 0 {
            let (epoch, seq) = (batch.producer_epoch(), batch.base_sequence());
            self.producers
                .record(pid, epoch, seq, count, batch.base_offset());
        }
        if self.ids.window_is_off() || !self.ids.covers(batch.first_timestamp(), now) {
            return;
        }
        for (i, record) in batch.raw_records().enumerate() {
            if let Some(id) = peek_id(&record) {
                self.ids
                    .insert(id, batch.base_offset() + i as u64, batch.first_timestamp());
            }
        }
    }
}

/// A new batch holding `records` (the ones kept), with the original's producer fields.
fn rebuild<'a>(
    original: &RecordBatch,
    records: impl Iterator<Item = &'a bytes::Bytes>,
) -> Option<RecordBatch> {
    let mut builder = BatchBuilder::messages();
    builder.producer(
        original.producer_id(),
        original.producer_epoch(),
        original.base_sequence(),
    );
    for record in records {
        builder.push_raw(record);
    }
    builder.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_runs_follow_original_indexes_around_gaps() {
        let pending = PendingAck {
            stored: vec![0, 1, 3, 4],
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
