//! Dispatch: turns decoded requests into calls on the channel registry.
//!
//! The connection knows frames; the registry knows channels; this module is the seam. Every
//! answer goes out through the session's outbox, possibly later (a publish is answered when its
//! batch is durable), so `handle` only awaits admission into a partition's queue.

use std::sync::Arc;

use sluice_protocol::{ErrorBody, ErrorCode, Request};
use tokio_util::sync::CancellationToken;

use crate::channel::outbox::{Outbox, Reply};
use crate::config::BrokerConfig;

/// Errors that stop the broker from opening.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory or a partition could not be opened.
    #[error("cannot open broker state: {0}")]
    Storage(String),
}

/// One client connection as the dispatcher sees it.
#[derive(Debug)]
pub struct Session {
    /// Unique per broker process.
    pub id: u64,
    /// Where replies and deliveries for this connection go.
    pub outbox: Outbox,
}

/// Routes requests to channels. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    /// Shared state.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Next session id.
    next_session: std::sync::atomic::AtomicU64,
}

impl Dispatcher {
    /// Opens every channel under the configured data directory.
    ///
    /// # Errors
    /// [`OpenError`] when stored state cannot be opened.
    pub async fn open(
        _config: &BrokerConfig,
        _shutdown: CancellationToken,
    ) -> Result<Self, OpenError> {
        Ok(Self {
            inner: Arc::new(Inner {
                next_session: 1.into(),
            }),
        })
    }

    /// A session for a new connection.
    pub fn new_session(&self, outbox: Outbox) -> Session {
        let id = self
            .inner
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Session { id, outbox }
    }

    /// Handles one request; the answer goes to the session's outbox.
    pub async fn handle(&self, session: &Session, correlation_id: u64, request: Request) {
        let reply = Reply::new(session.outbox.clone(), correlation_id, request.opcode());
        reply.send(Err(ErrorBody::new(
            ErrorCode::Internal,
            "not implemented yet",
        )));
    }

    /// Whether the session has attached consumers (such a connection is never idle).
    pub fn has_consumers(&self, _session: &Session) -> bool {
        false
    }

    /// Detaches the session's consumers; their in-flight deliveries return at once.
    pub async fn close_session(&self, _session: &Session) {}

    /// Stops every partition: pending writes are made durable and files closed.
    pub async fn shutdown(&self) {}
}
