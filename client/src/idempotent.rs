//! [`IdempotentReceiver`]: skips messages whose id was already processed, because delivery is
//! at least once (a redelivery after a lost ack, or a publisher retry that the broker's dedupe
//! window did not catch).
//!
//! Ids are remembered in a [`ProcessedStore`]; the built-in [`MemoryStore`] keeps the most recent
//! `capacity` ids. Plug in a durable store to survive restarts of the consuming process.

use std::collections::{HashSet, VecDeque};

use crate::Delivery;

/// Where processed message ids are remembered.
pub trait ProcessedStore: Send {
    /// Whether `id` was recorded.
    fn contains(&self, id: &[u8; 16]) -> bool;
    /// Records `id`.
    fn insert(&mut self, id: [u8; 16]);
}

/// The most recent `capacity` ids, in memory; the oldest is forgotten first.
#[derive(Debug)]
pub struct MemoryStore {
    /// Ids remembered.
    ids: HashSet<[u8; 16]>,
    /// The same ids, oldest first, for eviction.
    order: VecDeque<[u8; 16]>,
    /// Most ids remembered.
    capacity: usize,
}

impl MemoryStore {
    /// A store remembering at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }
}

impl ProcessedStore for MemoryStore {
    fn contains(&self, id: &[u8; 16]) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: [u8; 16]) {
        if !self.ids.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
    }
}

/// Filters deliveries whose message id was processed before.
///
/// ```no_run
/// # async fn run(mut consumer: sluice_client::Consumer) -> sluice_client::Result<()> {
/// use futures::StreamExt;
/// use sluice_client::IdempotentReceiver;
/// let mut receiver = IdempotentReceiver::in_memory(100_000);
/// while let Some(delivery) = consumer.next().await {
///     let delivery = delivery?;
///     if receiver.already_processed(&delivery) {
///         delivery.ack().await?; // a duplicate: settle it, do not act on it again
///         continue;
///     }
///     // ... act on the message ...
///     receiver.mark_processed(&delivery);
///     delivery.ack().await?;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct IdempotentReceiver<S = MemoryStore> {
    /// Processed ids.
    store: S,
}

impl IdempotentReceiver<MemoryStore> {
    /// A receiver remembering the last `capacity` ids in memory.
    pub fn in_memory(capacity: usize) -> Self {
        Self::with_store(MemoryStore::new(capacity))
    }
}

impl<S: ProcessedStore> IdempotentReceiver<S> {
    /// A receiver over a custom store.
    pub fn with_store(store: S) -> Self {
        Self { store }
    }

    /// Whether this delivery's message id was processed already.
    pub fn already_processed(&self, delivery: &Delivery) -> bool {
        self.store.contains(&delivery.id())
    }

    /// Records this delivery's message id as processed.
    pub fn mark_processed(&mut self, delivery: &Delivery) {
        self.store.insert(delivery.id());
    }

    /// Records `id`; true when it was new (the message should be processed).
    pub fn first_time(&mut self, id: [u8; 16]) -> bool {
        if self.store.contains(&id) {
            return false;
        }
        self.store.insert(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_id_is_not_processed_twice() {
        let mut receiver = IdempotentReceiver::in_memory(10);
        assert!(receiver.first_time([1; 16]));
        assert!(!receiver.first_time([1; 16]));
        assert!(receiver.first_time([2; 16]));
    }

    #[test]
    fn the_oldest_id_is_forgotten_past_capacity() {
        let mut receiver = IdempotentReceiver::in_memory(2);
        for id in [[1; 16], [2; 16], [3; 16]] {
            assert!(receiver.first_time(id));
        }
        assert!(receiver.first_time([1; 16]), "evicted");
        assert!(!receiver.first_time([3; 16]));
    }
}
