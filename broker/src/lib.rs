//! The Sluice broker node.
//!
//! Data flows down the tree: [`server`] (frames and connections) → [`channel`] (queues, topics,
//! partitions, cursors) → [`log`] (segments on disk). Nothing below imports anything above.

pub mod channel;
pub mod config;
pub mod log;
pub mod server;
