//! The server: binds the listener, accepts connections under a limit, and shuts down in order.
//!
//! Shutdown: stop accepting; connections stop reading and answer what is in flight, for up to
//! `server.shutdown_timeout`; then the dispatcher makes pending writes durable and closes its
//! partitions. Knows sockets, connection tasks and the dispatcher's lifecycle; nothing about
//! frames' contents or channels.

use std::fs::{File, TryLockError};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::serve;
use super::context::Context;
use super::dispatch::{Dispatcher, OpenError};
use super::refuse::refuse_busy;
use crate::config::{BrokerConfig, ServerConfig};

/// Connections being turned away at once at most; beyond this they are dropped unanswered.
const MAX_REFUSING: usize = 64;
/// First pause after a failed accept (e.g. out of file descriptors); doubles up to a second.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Stored broker state could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Another broker (or another server in this process) has the data directory.
    #[error("data directory {} is in use by another broker (it holds the lock on {})", dir.display(), lock.display())]
    DataDirInUse {
        /// The configured data directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The data directory or its lock file could not be created or locked.
    #[error("cannot lock data directory {}: {source}", dir.display())]
    DataDir {
        /// The configured data directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A bound, not yet running broker server.
#[derive(Debug)]
pub struct Server {
    /// The bound listener.
    listener: TcpListener,
    /// Its actual address (the port is chosen by the OS when configured as 0).
    local_addr: SocketAddr,
    /// Routes requests to channels; shut down last.
    dispatcher: Dispatcher,
    /// The token the dispatcher was opened with; cancelled once it has shut down.
    dispatcher_token: CancellationToken,
    /// Limits and timeouts of connections.
    config: Arc<ServerConfig>,
    /// Largest record batch a partition stores.
    max_batch_bytes: usize,
    /// The data directory's lock, held while the server exists (see [`lock_data_dir`]).
    _data_dir_lock: File,
}

/// Takes the data directory for this broker: an exclusive lock on `<data_dir>/LOCK`, held as
/// long as the returned file is open, and let go by the kernel when the process dies, kill -9
/// included. Two brokers on one directory each append to the same logs from their own idea of
/// its end, and one overwrites what the other acknowledged.
fn lock_data_dir(dir: &Path) -> Result<File, ServerError> {
    let failed = |source| ServerError::DataDir {
        dir: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let lock = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(ServerError::DataDirInUse {
            dir: dir.to_owned(),
            lock,
        }),
        Err(TryLockError::Error(e)) => Err(failed(e)),
    }
}

impl Server {
    /// Binds `config.listen` and opens the stored broker state.
    ///
    /// # Errors
    /// [`ServerError::Bind`] when the address is unavailable, [`ServerError::Open`] when the
    /// data directory cannot be opened.
    pub async fn bind(config: &BrokerConfig) -> Result<Self, ServerError> {
        let data_dir_lock = lock_data_dir(&config.data_dir)?;
        let bind_error = |source| ServerError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let dispatcher_token = CancellationToken::new();
        let dispatcher = Dispatcher::open(config, dispatcher_token.clone()).await?;
        Ok(Self {
            listener,
            local_addr,
            dispatcher,
            dispatcher_token,
            config: Arc::new(config.server.clone()),
            max_batch_bytes: config.channel_defaults.max_batch_bytes,
            _data_dir_lock: data_dir_lock,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then shuts down in order and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let ctx = Context {
            dispatcher: self.dispatcher.clone(),
            config: self.config.clone(),
            max_batch_bytes: self.max_batch_bytes,
            shutdown,
            abort: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        Acceptor::new(self.listener, &ctx).run().await;
        finish(ctx, self.dispatcher_token).await;
    }

    /// Runs the server in a task of the current runtime, for tests and embedding.
    pub fn spawn(self) -> RunningServer {
        let local_addr = self.local_addr;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(self.run(shutdown.clone()));
        RunningServer {
            local_addr,
            shutdown,
            task,
        }
    }
}

/// A server running in its own task.
#[derive(Debug)]
pub struct RunningServer {
    /// The address clients connect to.
    local_addr: SocketAddr,
    /// Stops the server when cancelled.
    shutdown: CancellationToken,
    /// The task running [`Server::run`].
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shuts the server down in order and waits until it has stopped.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "server task failed");
        }
    }
}

/// Waits for connections to answer what is in flight, then shuts the dispatcher down.
async fn finish(ctx: Context, dispatcher_token: CancellationToken) {
    ctx.tracker.close();
    let timeout_after = ctx.config.shutdown_timeout;
    if timeout(timeout_after, ctx.tracker.wait()).await.is_err() {
        tracing::warn!(?timeout_after, "giving up on in-flight requests");
        ctx.abort.cancel();
    }
    ctx.dispatcher.shutdown().await;
    dispatcher_token.cancel();
    if timeout(timeout_after, ctx.tracker.wait()).await.is_err() {
        tracing::warn!(
            tasks = ctx.tracker.len(),
            "connection tasks still running at exit"
        );
    }
    tracing::info!("server stopped");
}

/// The accept loop and its connection limit.
struct Acceptor<'a> {
    /// The bound listener; dropped (so the port closes) when the loop ends.
    listener: TcpListener,
    /// What connections share.
    ctx: &'a Context,
    /// One permit per connection being served.
    permits: Arc<Semaphore>,
    /// One permit per connection being turned away, so refusing stays cheap.
    refusing: Arc<Semaphore>,
}

impl<'a> Acceptor<'a> {
    fn new(listener: TcpListener, ctx: &'a Context) -> Self {
        Self {
            listener,
            permits: Arc::new(Semaphore::new(ctx.config.max_connections)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            ctx,
        }
    }

    /// Accepts until shutdown; failed accepts back off instead of spinning.
    async fn run(self) {
        let mut backoff = ACCEPT_BACKOFF;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _peer)) => {
                    backoff = ACCEPT_BACKOFF;
                    self.admit(stream);
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::select! {
                        biased;
                        _ = self.ctx.shutdown.cancelled() => return,
                        _ = sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(1)),
                    }
                }
            }
        }
    }

    /// Serves the connection, or turns it away at the limit.
    fn admit(&self, stream: TcpStream) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let ctx = self.ctx.clone();
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            metrics::counter!("sluice_connections_accepted_total").increment(1);
            self.ctx.tracker.spawn(async move {
                metrics::gauge!("sluice_connections_active").increment(1.0);
                serve(stream, ctx).await;
                metrics::gauge!("sluice_connections_active").decrement(1.0);
                drop(permit);
            });
        } else if let Ok(permit) = self.refusing.clone().try_acquire_owned() {
            self.ctx.tracker.spawn(async move {
                refuse_busy(stream, ctx).await;
                drop(permit);
            });
        }
    }
}
