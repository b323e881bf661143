//! Settlement batching: acks, nacks, rejects and lease extensions of many deliveries gathered
//! into few requests. Acks of one partition become one `Ack` frame of half-open offset ranges.
//!
//! Pure bookkeeping; the consumer's driver task decides when to flush and sends the requests.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_protocol::request::{Ack, Extend, Nack, Reject};
use sluice_protocol::Request;
use tokio::sync::oneshot;

use crate::error::Result;

/// Who waits for a settlement to be answered by the broker.
pub(crate) type Waiter = oneshot::Sender<Result<()>>;

/// What to do with a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SettleKind {
    /// Done with it.
    Ack,
    /// Return it, redelivered no sooner than after this delay.
    Nack {
        /// Delay in milliseconds.
        delay_ms: u64,
    },
    /// Keep it longer.
    Extend {
        /// New lease from now, in milliseconds.
        lease_ms: u64,
    },
    /// Failed for good: dead-letter it, or move it to the invalid channel.
    Reject {
        /// Why, for the dead letter's or invalid message's headers.
        reason: Arc<str>,
        /// Whether it goes to the invalid channel rather than the dead-letter channel.
        invalid: bool,
    },
}

impl SettleKind {
    /// Whether the delivery is finished with (and its credit can be granted again).
    pub(crate) fn settles(&self) -> bool {
        !matches!(self, Self::Extend { .. })
    }
}

/// Offsets and waiters of one future request.
#[derive(Default)]
struct Group {
    /// Offsets to settle.
    offsets: Vec<u64>,
    /// Callers waiting for the answer.
    waiters: Vec<Waiter>,
}

/// Settlements gathered since the last flush, grouped by request.
#[derive(Default)]
pub(crate) struct Settlements {
    /// By (partition, kind).
    groups: HashMap<(u32, SettleKind), Group>,
    /// Settlements gathered.
    count: usize,
}

impl Settlements {
    /// Adds one settlement.
    pub(crate) fn add(
        &mut self,
        partition: u32,
        offset: u64,
        kind: SettleKind,
        waiter: Option<Waiter>,
    ) {
        let group = self.groups.entry((partition, kind)).or_default();
        group.offsets.push(offset);
        group.waiters.extend(waiter);
        self.count += 1;
    }

    /// Settlements gathered since the last flush.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Every gathered settlement as requests for `consumer_id`, each with its waiters.
    pub(crate) fn take_requests(&mut self, consumer_id: u64) -> Vec<(Request, Vec<Waiter>)> {
        self.count = 0;
        self.groups
            .drain()
            .map(|((partition, kind), mut group)| {
                let request = match kind {
                    SettleKind::Ack => Request::Ack(Ack {
                        consumer_id,
                        partition,
                        ranges: coalesce(&mut group.offsets),
                    }),
                    SettleKind::Nack { delay_ms } => Request::Nack(Nack {
                        consumer_id,
                        partition,
                        offsets: group.offsets,
                        delay_ms,
                    }),
                    SettleKind::Extend { lease_ms } => Request::Extend(Extend {
                        consumer_id,
                        partition,
                        offsets: group.offsets,
                        lease_ms,
                    }),
                    SettleKind::Reject { reason, invalid } => Request::Reject(Reject {
                        consumer_id,
                        partition,
                        offsets: group.offsets,
                        reason: reason.to_string(),
                        invalid,
                    }),
                };
                (request, group.waiters)
            })
            .collect()
    }

    /// Fails every gathered settlement with `error` (their connection is gone).
    pub(crate) fn fail_all(&mut self, error: &crate::ClientError) {
        self.count = 0;
        for (_, group) in self.groups.drain() {
            for waiter in group.waiters {
                let _ = waiter.send(Err(error.clone()));
            }
        }
    }
}

/// Sorts offsets and merges them into half-open `[from, to)` ranges.
pub(crate) fn coalesce(offsets: &mut [u64]) -> Vec<(u64, u64)> {
    offsets.sort_unstable();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for &offset in offsets.iter() {
        match ranges.last_mut() {
            Some((_, to)) if offset <= *to => *to = (*to).max(offset + 1),
            _ => ranges.push((offset, offset + 1)),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_offsets_merge_into_one_range() {
        let mut offsets: Vec<u64> = (100..200).rev().collect();
        assert_eq!(coalesce(&mut offsets), vec![(100, 200)]);
    }

    #[test]
    fn gaps_and_duplicates_give_separate_ranges() {
        assert_eq!(
            coalesce(&mut [5, 3, 4, 10, 11, 1, 4]),
            vec![(1, 2), (3, 6), (10, 12)]
        );
        assert_eq!(coalesce(&mut []), vec![]);
    }

    #[test]
    fn settlements_become_one_request_per_partition_and_kind() {
        let mut s = Settlements::default();
        for offset in [1, 2, 3] {
            s.add(0, offset, SettleKind::Ack, None);
        }
        s.add(1, 9, SettleKind::Ack, None);
        s.add(0, 7, SettleKind::Nack { delay_ms: 10 }, None);
        let reject = |reason: &str, invalid| SettleKind::Reject {
            reason: reason.into(),
            invalid,
        };
        s.add(0, 5, reject("bad", false), None);
        s.add(0, 6, reject("bad", false), None);
        s.add(0, 8, reject("bad", true), None);
        assert_eq!(s.len(), 8);
        let mut requests: Vec<Request> = s.take_requests(42).into_iter().map(|(r, _)| r).collect();
        requests.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(requests.len(), 5);
        let mut rejected = None;
        for r in &requests {
            if let Request::Reject(r) = r {
                if !r.invalid {
                    rejected = Some(r.clone());
                }
            }
        }
        let mut rejected = rejected.unwrap();
        rejected.offsets.sort_unstable();
        assert_eq!(rejected.offsets, vec![5, 6]);
        assert_eq!(rejected.reason, "bad");
        assert!(requests.contains(&Request::Ack(Ack {
            consumer_id: 42,
            partition: 0,
            ranges: vec![(1, 4)],
        })));
        assert!(requests.contains(&Request::Nack(Nack {
            consumer_id: 42,
            partition: 0,
            offsets: vec![7],
            delay_ms: 10,
        })));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn failing_all_answers_every_waiter() {
        let mut s = Settlements::default();
        let (tx, mut rx) = oneshot::channel();
        s.add(0, 1, SettleKind::Ack, Some(tx));
        s.fail_all(&crate::ClientError::Disconnected);
        assert!(matches!(rx.try_recv(), Ok(Err(_))));
        assert!(s.take_requests(1).is_empty());
    }
}
