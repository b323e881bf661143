//! Channels: queues and topics, their partitions, cursors and dispatch to consumers.
//!
//! This layer knows messaging (subscriptions, acks, leases) and nothing about frames or files:
//! requests arrive as protocol types, answers leave through an [`outbox::Outbox`], and storage is
//! the partition's [`crate::log::Log`].

pub mod cursor;
pub mod outbox;
pub mod range_set;
