//! One publish round trip, and [`Producer::send_batch`](super::Producer::send_batch), which
//! batches a caller's messages itself and skips the batching task.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use sluice_protocol::request::Publish;
use sluice_protocol::{BatchBuilder, NewMessage, Request, Response};

use super::partition::{fixed_partition, outcomes_from_ack, validate};
use super::session::{resend_after, resend_delay, RESENDS};
use super::{Outcome, Shared};
use crate::connection::Answer;
use crate::error::{ClientError, Result};

/// What became of each message of one batch; the outer error fails the whole batch.
pub(super) type BatchOutcome = Result<Vec<Result<Outcome>>>;

/// Takes an in-flight permit, seals the batch (stamping the producer session, if any) and puts
/// it on the wire, in call order, then returns the wait for the answer (which holds the permit)
/// as a `'static` future for the caller to spawn. Batches of one partition dispatched one after
/// another thus reach the broker in order.
pub(super) async fn dispatch(
    shared: &Arc<Shared>,
    partition: u32,
    builder: BatchBuilder,
) -> impl Future<Output = BatchOutcome> + Send + 'static {
    let count = builder.record_count() as usize;
    let permit = shared.in_flight.clone().acquire_owned().await;
    let sent = seal_and_submit(shared, partition, builder).await;
    let shared = shared.clone();
    async move {
        let _permit = permit.map_err(|_| ClientError::Closed)?;
        let (request, submitted) = sent?;
        match answer(&shared, &request, submitted).await? {
            Response::Published(ack) => outcomes_from_ack(&ack, count),
            _ => Err(ClientError::UnexpectedResponse { request: "publish" }),
        }
    }
}

/// Seals the batch and queues its request; with a session, both under the sequence lock.
async fn seal_and_submit(
    shared: &Shared,
    partition: u32,
    builder: BatchBuilder,
) -> Result<(Request, Result<Answer>)> {
    let publish = |batch| {
        Request::Publish(Publish {
            channel: shared.channel.clone(),
            partition,
            batch,
        })
    };
    let Some(session) = &shared.session else {
        let request = publish(builder.finish()?);
        let submitted = shared.client.submit(&request).await;
        return Ok((request, submitted));
    };
    let mut next = session.lock().await;
    let request = publish(session.seal(&mut next, partition, builder)?);
    let submitted = shared.client.submit(&request).await;
    Ok((request, submitted))
}

/// Waits for the answer. A session's batch is resent, same bytes, when its connection was lost
/// or an earlier batch is still missing; without a session the outcome is left to the caller.
async fn answer(shared: &Shared, request: &Request, submitted: Result<Answer>) -> Result<Response> {
    let mut result = match submitted {
        Ok(answer) => answer.await_response().await,
        Err(e) => Err(e),
    };
    let mut attempt = 0;
    while shared.session.is_some() && attempt < RESENDS {
        match &result {
            Err(e) if resend_after(e) => {}
            _ => break,
        }
        attempt += 1;
        tokio::time::sleep(resend_delay(attempt)).await;
        result = match shared.client.submit(request).await {
            Ok(answer) => answer.await_response().await,
            Err(e) => Err(e),
        };
    }
    result
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
    messages
        .iter()
        .try_for_each(|m| validate(m, shared.max_message_batch))?;
    let mut pending = Vec::new();
    for (partition, indices, builder) in build_batches(shared, &messages) {
        let answer = dispatch(shared, partition, builder).await;
        pending.push((indices, tokio::spawn(answer)));
    }
    let mut results = vec![None; messages.len()];
    for (indices, answer) in pending {
        let outcomes = answer.await.map_err(|_| ClientError::Closed)??;
        for (i, outcome) in indices.into_iter().zip(outcomes) {
            results[i] = Some(outcome?);
        }
    }
    results
        .into_iter()
        .map(|o| o.ok_or(ClientError::UnexpectedResponse { request: "publish" }))
        .collect()
}

/// Groups messages by partition and encodes each group into batches within the limits.
fn build_batches(shared: &Shared, messages: &[NewMessage]) -> Vec<(u32, Vec<usize>, BatchBuilder)> {
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
                batches.push((partition, std::mem::take(&mut members), full));
            }
            push(&mut builder, &messages[i]);
            members.push(i);
        }
        if !members.is_empty() {
            batches.push((partition, members, builder));
        }
    }
    batches
}
