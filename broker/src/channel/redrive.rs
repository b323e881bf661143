//! Redrive: publishing dead letters back to the channel they died in (or another), without the
//! death headers, and settling them in the dead-letter queue once they are stored.
//!
//! Each redriven copy keeps the message's id and carries a dedupe key derived from its place in
//! the dead-letter queue, so a redrive that is retried after a failure does not store a message
//! twice, and the source's window (which may still hold the id) does not drop it.

use std::sync::Arc;

use bytes::Bytes;
use sluice_protocol::headers as h;
use sluice_protocol::MessageView;

use super::dead_letter;
use super::error::ChannelError;
use super::partition::PartitionRequest;
use super::registry::Registry;

/// Redrives up to `count` messages (all waiting ones when `None`) of the queue `dlq`, to `to`
/// or to each message's `sluice-death-channel`. Returns how many were published.
///
/// A message that cannot be published (its source channel is gone, say) is skipped: it stays
/// taken while the redrive goes on through its partition, so the redrive moves past it, and then
/// waits in the dead-letter queue again. The redrive still publishes everything else it can and
/// then reports how many it redrove and how many it could not, with the first reason.
///
/// # Errors
/// `UnknownChannel` for the dead-letter queue or for `to`, `InvalidArgument` for `to == dlq`,
/// [`ChannelError::RedriveIncomplete`] when some messages could not be published, or a
/// partition that stopped.
pub async fn redrive(
    registry: &Arc<Registry>,
    dlq: &str,
    to: Option<&str>,
    count: Option<u64>,
) -> Result<u64, ChannelError> {
    let channel = registry.get(dlq)?;
    if let Some(to) = to {
        if to == dlq {
            // Each copy would be taken again, without end.
            return Err(ChannelError::InvalidArgument(format!(
                "cannot redrive {dlq} into itself"
            )));
        }
        // A missing target is the caller's mistake: say so before taking anything.
        registry.get(to)?;
    }
    let mut left = count.unwrap_or(u64::MAX);
    let (mut redriven, mut failed, mut first_error) = (0, 0, None);
    for p in &channel.partitions {
        let source = dead_letter::Source {
            channel: dlq,
            incarnation: channel.spec.incarnation,
            partition: p.id,
        };
        let mut skipped = Vec::new();
        while left > 0 {
            let max = left.min(1024);
            let taken = p
                .call(|done| PartitionRequest::TakeForRedrive { max, done })
                .await?;
            if taken.is_empty() {
                break;
            }
            // All of a chunk at once, so the copies share their targets' group commits (one at
            // a time, each waited for a sync of its own).
            let copies = taken.into_iter().map(|(offset, record)| async move {
                (
                    offset,
                    redrive_one(registry, source, offset, record, to).await,
                )
            });
            let mut settled = Vec::new();
            for (offset, result) in futures::future::join_all(copies).await {
                match result {
                    Ok(()) => settled.push(offset),
                    Err(e) => {
                        tracing::warn!(dlq, offset, "redrive failed: {e}");
                        skipped.push(offset);
                        first_error.get_or_insert(e);
                    }
                }
            }
            let done_now = settled.len() as u64;
            p.call(|done| PartitionRequest::FinishRedrive {
                settled,
                failed: Vec::new(),
                done,
            })
            .await??;
            redriven += done_now;
            left = left.saturating_sub(done_now);
        }
        if !skipped.is_empty() {
            // A skipped message that returned on its own (the redrive outlasted its lease) may
            // have been taken and skipped again.
            skipped.sort_unstable();
            skipped.dedup();
            failed += skipped.len() as u64;
            p.call(|done| PartitionRequest::FinishRedrive {
                settled: Vec::new(),
                failed: skipped,
                done,
            })
            .await??;
        }
    }
    match first_error {
        None => Ok(redriven),
        Some(cause) => Err(ChannelError::RedriveIncomplete {
            redriven,
            failed,
            cause: Box::new(cause),
        }),
    }
}

async fn redrive_one(
    registry: &Arc<Registry>,
    source: dead_letter::Source<'_>,
    offset: u64,
    record: Bytes,
    to: Option<&str>,
) -> Result<(), ChannelError> {
    let dlq = source.channel;
    let view =
        MessageView::decode(record).map_err(|e| ChannelError::InvalidArgument(e.to_string()))?;
    let target = match to {
        Some(to) => to.to_owned(),
        None => view
            .header(h::DEATH_CHANNEL)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .ok_or_else(|| {
                ChannelError::InvalidArgument(format!("{dlq}:{offset} names no source channel"))
            })?,
    };
    let mut message = view.into_new();
    message
        .headers
        .retain(|(name, _)| !name.starts_with("sluice-death-"));
    message.dedupe_key = Some(dead_letter::move_id(source, "~redrive", offset));
    dead_letter::publish(registry, &target, false, message)
        .await
        .map(|_| ())
}
