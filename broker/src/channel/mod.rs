//! Channels: queues and topics, their partitions, cursors and dispatch to consumers.

pub mod outbox;
