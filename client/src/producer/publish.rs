//! One publish round trip, and [`Producer::send_batch`](super::Producer::send_batch), which
//! batches a caller's messages itself and skips the batching task.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_protocol::request::Publish;
use sluice_protocol::{BatchBuilder, NewMessage, RecordBatch, Request, Response};
use std::future::Future;

use super::partition::{fixed_partition, offsets_from_runs, validate};
use super::{Outcome, Shared};
use crate::error::{ClientError, Result};

/// Takes an in-flight permit and puts the batch on the wire, in call order, then returns the
/// wait for the answer (which holds the permit) as a `'static` future for the caller to spawn.
/// Batches of one partition dispatched one after another thus reach the broker in order.
pub(super) async fn dispatch(
    shared: &Arc<Shared>,
    partition: u32,
    batch: RecordBatch,
) -> impl Future<Output = Result<Vec<Outcome>>> + Send + 'static {
    let count = batch.record_count() as usize;
    let permit = shared.in_flight.clone().acquire_owned().await;
    let request = Request::Publish(Publish {
        channel: shared.channel.clone(),
        partition,
        batch,
    });
    let submitted = shared.client.submit(&request).await;
    async move {
        let _permit = permit.map_err(|_| ClientError::Closed)?;
        match submitted?.await_response().await? {
            Response::Published(ack) => Ok(offsets_from_runs(&ack.stored, count)?
                .into_iter()
                .map(|offset| Outcome::Stored {
                    partition: ack.partition,
                    offset,
                })
                .collect()),
            _ => Err(ClientError::UnexpectedResponse { request: "publish" }),
        }
    }
}

/// Appends one message to a batch; the message must have passed [`validate`].
pub(super) fn push(builder: &mut BatchBuilder, message: &NewMessage) {
    builder.push_with(|buf| {
        // Cannot fail: every length prefix was checked by `validate`.
        let _ = message.encode(buf);
    });
}

/// Whether `message` no longer fits into `builder` under the producer's limits.
pub(super) fn is_full(shared: &Shared, builder: &BatchBuilder, message: &NewMessage) -> bool {
    let count = builder.record_count();
    count > 0
        && (count >= shared.options.max_batch_messages
            || builder.encoded_len() + 4 + message.encoded_len() > shared.options.max_batch_bytes)
}

/// See [`super::Producer::send_batch`].
pub(super) async fn send_batch(
    shared: &Arc<Shared>,
    messages: Vec<NewMessage>,
) -> Result<Vec<Outcome>> {
    messages.iter().try_for_each(validate)?;
    let mut pending = Vec::new();
    for (partition, indices, batch) in build_batches(shared, &messages)? {
        let answer = dispatch(shared, partition, batch).await;
        pending.push((indices, tokio::spawn(answer)));
    }
    let mut results = vec![None; messages.len()];
    for (indices, answer) in pending {
        let outcomes = answer.await.map_err(|_| ClientError::Closed)??;
        for (i, outcome) in indices.into_iter().zip(outcomes) {
            results[i] = Some(outcome);
        }
    }
    results
        .into_iter()
        .map(|o| o.ok_or(ClientError::UnexpectedResponse { request: "publish" }))
        .collect()
}

/// Groups messages by partition and encodes each group into batches within the limits.
fn build_batches(
    shared: &Shared,
    messages: &[NewMessage],
) -> Result<Vec<(u32, Vec<usize>, RecordBatch)>> {
    let any = shared.next_round_robin();
    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, message) in messages.iter().enumerate() {
        let partition = fixed_partition(message, shared.partitions).unwrap_or(any);
        groups.entry(partition).or_default().push(i);
    }
    let mut batches = Vec::new();
    for (partition, indices) in groups {
        let mut builder = BatchBuilder::messages();
        let mut members = Vec::new();
        for i in indices {
            if is_full(shared, &builder, &messages[i]) {
                let full = std::mem::replace(&mut builder, BatchBuilder::messages());
                batches.push((partition, std::mem::take(&mut members), full.finish()?));
            }
            push(&mut builder, &messages[i]);
            members.push(i);
        }
        if !members.is_empty() {
            batches.push((partition, members, builder.finish()?));
        }
    }
    Ok(batches)
}
