//! An attached consumer as partitions see it: where its deliveries go and how many it may take.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::cursor::ConsumerKey;
use super::outbox::Outbox;

/// Deliveries a consumer can still take, shared by every partition it receives from.
#[derive(Debug, Default)]
pub struct Credit(AtomicU64);

impl Credit {
    /// Grants `n` more.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::AcqRel);
    }

    /// Takes up to `max`; returns how many were taken. Never overdraws.
    pub fn reserve(&self, max: u64) -> u64 {
        let taken = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |have| {
                Some(have - have.min(max))
            });
        let have = taken.unwrap_or_else(|have| have);
        have.min(max)
    }

    /// Gives back what a reservation did not use.
    pub fn refund(&self, n: u64) {
        if n > 0 {
            self.add(n);
        }
    }

    /// What is left.
    pub fn available(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A consumer attached to one subscription, as handed to the partitions it reads.
#[derive(Debug, Clone)]
pub struct ConsumerHandle {
    /// Broker-wide key (cursor entries refer to it).
    pub key: ConsumerKey,
    /// The id the client chose; deliveries carry it.
    pub client_id: u64,
    /// Shared credit.
    pub credit: Arc<Credit>,
    /// The connection's writer queue.
    pub outbox: Outbox,
    /// Lease override for this consumer.
    pub lease: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_take_more_than_there_is() {
        let credit = Credit::default();
        credit.add(5);
        assert_eq!(credit.reserve(3), 3);
        assert_eq!(credit.reserve(3), 2);
        assert_eq!(credit.reserve(3), 0);
        credit.refund(1);
        assert_eq!(credit.available(), 1);
    }
}
