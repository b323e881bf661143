//! The channel side of publishing: the channel's contract is checked here, before the batch
//! reaches its partition, so the work runs on the publisher's connection task.
//!
//! A batch whose messages all keep the contract goes to the partition untouched. Messages that
//! break it are stored in the invalid channel (with `sluice-invalid-reason` and
//! `sluice-invalid-channel`) or, with none set, refused; the rest go on as a new batch, and the
//! partition answers for every message of the original batch.

use std::sync::Arc;

use bytes::Bytes;
use sluice_protocol::message::payload_of;
use sluice_protocol::response::PublishAck;
use sluice_protocol::types::InvalidOutcome;
use sluice_protocol::{MessageView, RecordBatch, Response};

use super::dead_letter;
use super::error::ChannelError;
use super::outbox::Reply;
use super::partition::{PartitionRequest, Routed};
use super::registry::{Channel, Registry};

/// Routes one producer batch for `partition` of `channel`.
///
/// # Errors
/// `UnknownPartition`, `ShuttingDown`, or a failure to store an invalid message.
pub async fn publish(
    registry: &Arc<Registry>,
    channel: &Channel,
    partition: u32,
    batch: RecordBatch,
    reply: Reply,
) -> Result<(), ChannelError> {
    let handle = channel.partition(partition)?;
    if channel.contract.is_empty() {
        let request = PartitionRequest::Publish {
            batch,
            routed: Routed::default(),
            reply,
        };
        return handle.send(request).await;
    }
    let (kept, broken) = check(channel, &batch);
    if broken.is_empty() {
        let request = PartitionRequest::Publish {
            batch,
            routed: Routed::default(),
            reply,
        };
        return handle.send(request).await;
    }
    let invalid = route_invalid(registry, channel, partition, broken).await?;
    let labels = [
        ("channel", channel.spec.name.clone()),
        ("partition", partition.to_string()),
        ("source", "publish".to_owned()),
    ];
    metrics::counter!("sluice_messages_invalid_total", &labels).increment(invalid.len() as u64);
    let mut wanted = kept.iter().copied().peekable();
    let Some(batch) = batch.subset(|i| wanted.next_if_eq(&i).is_some()) else {
        let ack = PublishAck {
            partition,
            invalid,
            ..PublishAck::default()
        };
        reply.send(Ok(Response::Published(ack)));
        return Ok(());
    };
    let routed = Routed {
        indexes: Some(kept),
        invalid,
    };
    handle
        .send(PartitionRequest::Publish {
            batch,
            routed,
            reply,
        })
        .await
}

/// A message that broke the contract: its index, why, and the message.
type Broken = (u32, String, Bytes);

/// Splits a batch into the indexes of the records that keep the contract and the records that
/// break it. The common case (all keep it) allocates nothing per message; a contract on the
/// payload alone does not even decode the headers.
fn check(channel: &Channel, batch: &RecordBatch) -> (Vec<u32>, Vec<Broken>) {
    let contract = &channel.contract;
    let failed: Vec<(u32, String)> = if contract.needs_headers() {
        let verdict = |record: Bytes| match MessageView::decode(record) {
            Ok(view) => contract.check(&view),
            Err(e) => Err(format!("malformed: {e}")),
        };
        let verdicts = batch.raw_records().map(verdict);
        failures(verdicts)
    } else {
        let verdict = |record: &[u8]| match payload_of(record) {
            Some(payload) => contract.check_payload(payload),
            None => Err("malformed: record cut short".to_owned()),
        };
        failures(batch.record_slices().map(verdict))
    };
    if failed.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mut kept = Vec::new();
    let mut broken = Vec::new();
    let mut failed = failed.into_iter().peekable();
    for (i, record) in batch.raw_records().enumerate() {
        match failed.next_if(|(f, _)| *f == i as u32) {
            Some((index, reason)) => broken.push((index, reason, record)),
            None => kept.push(i as u32),
        }
    }
    (kept, broken)
}

/// The indexes and reasons of the failed verdicts.
fn failures(verdicts: impl Iterator<Item = Result<(), String>>) -> Vec<(u32, String)> {
    verdicts
        .enumerate()
        .filter_map(|(i, v)| v.err().map(|reason| (i as u32, reason)))
        .collect()
}

/// Stores broken messages in the invalid channel, or reports them refused when there is none.
///
/// The copies are published all at once, so they share the invalid channel's group commit: one
/// at a time, a batch of 100 broken messages waited for 100 syncs in a row.
async fn route_invalid(
    registry: &Arc<Registry>,
    channel: &Channel,
    partition: u32,
    broken: Vec<Broken>,
) -> Result<Vec<InvalidOutcome>, ChannelError> {
    let target = channel.spec.settings.invalid_channel.clone();
    let name = &channel.spec.name;
    let source = dead_letter::Source {
        channel: name,
        incarnation: channel.spec.incarnation,
        partition,
    };
    let mut copies = Vec::new();
    let mut outcomes = Vec::with_capacity(broken.len());
    for (index, reason, record) in broken {
        if let Some(target) = &target {
            // A record whose fields do not decode goes there too, whole, as the copy's payload:
            // its outcome says it is stored in the invalid channel.
            let view = MessageView::decode(record.clone()).unwrap_or_else(|_| MessageView {
                id: None,
                dedupe_key: None,
                key: None,
                ttl_ms: None,
                headers: Vec::new(),
                payload: record.clone(),
            });
            let id = dead_letter::content_id(source, &record);
            let message = dead_letter::invalid_message(view, &reason, name, id);
            copies.push(dead_letter::publish(registry, target, true, message));
        }
        outcomes.push(InvalidOutcome {
            index,
            reason,
            routed_to: target.clone(),
        });
    }
    futures::future::try_join_all(copies).await?;
    Ok(outcomes)
}
