//! Channels: queues and topics, their partitions, cursors and dispatch to consumers.
//!
//! This layer knows messaging (subscriptions, acks, leases) and nothing about frames or files:
//! requests arrive as protocol types, answers leave through an [`outbox::Outbox`], and storage is
//! the partition's [`crate::log::Log`].

pub mod command;
pub mod consumer;
pub mod cursor;
pub mod dead_letter;
pub mod dedupe;
pub mod delivery;
pub mod error;
pub mod expiry;
pub mod id_archive;
mod id_index;
pub mod json;
pub mod outbox;
pub mod partition;
pub mod publish;
pub mod range_set;
pub mod redrive;
pub mod registry;
pub mod snapshot;
pub mod subscription;
pub mod validation;
