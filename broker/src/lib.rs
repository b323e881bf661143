//! The Sluice broker node.
//!
//! Data flows down the tree: [`server`] (frames and connections) → [`channel`] (queues, topics,
//! partitions, cursors) → [`log`] (segments on disk). Nothing below imports anything above.
//! [`exporter`] serves the metrics all of them record; [`clock`] is where they all get the time.

pub mod channel;
pub mod clock;
pub mod config;
pub mod exporter;
pub mod log;
pub mod server;
