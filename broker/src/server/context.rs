//! What every connection task shares with the server: the dispatcher, limits, and the signals
//! and tracker of an orderly shutdown.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dispatch::Dispatcher;
use crate::config::ServerConfig;

/// Shared by the accept loop and every connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Context {
    /// Routes requests to channels.
    pub dispatcher: Dispatcher,
    /// Limits and timeouts of connections.
    pub config: Arc<ServerConfig>,
    /// Largest record batch a partition stores (`channel_defaults.max_batch_bytes`), told to
    /// clients at the handshake.
    pub max_batch_bytes: usize,
    /// Cancelled when the broker stops: connections stop reading and answer what is in flight.
    pub shutdown: CancellationToken,
    /// Cancelled when the shutdown timeout has passed: answers still due are given up.
    pub abort: CancellationToken,
    /// Every connection and writer task, so shutdown can wait for them.
    pub tracker: TaskTracker,
}
