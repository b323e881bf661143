//! [`Client`]: a handle to one broker address that keeps a connection alive.
//!
//! Every request goes over the current connection; when it has died, the next request opens a
//! new one with exponential backoff, and only one task reconnects while the others wait for it.
//! Requests that were in flight on a dead connection fail with
//! [`ClientError::Disconnected`]: their outcome is unknown, so they are not retried blindly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use sluice_protocol::{Request, Response};
use tokio::sync::OnceCell;

use crate::connection::{Answer, ConnectSettings, Connection};
use crate::error::{ClientError, Result};

/// How a [`Client`] connects and reconnects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Name sent in the handshake, shown in the broker's logs.
    pub client_name: String,
    /// Deadline for one TCP connect plus handshake.
    pub connect_timeout: Duration,
    /// Largest frame accepted from the broker.
    pub max_frame: usize,
    /// First pause between reconnect attempts; doubles up to `reconnect_max_delay`.
    pub reconnect_initial_delay: Duration,
    /// Longest pause between reconnect attempts.
    pub reconnect_max_delay: Duration,
    /// Attempts per reconnect before the waiting request fails (the next request tries again).
    pub reconnect_attempts: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            client_name: format!("sluice-client/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(5),
            max_frame: sluice_protocol::frame::DEFAULT_MAX_FRAME,
            reconnect_initial_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_secs(5),
            reconnect_attempts: 10,
        }
    }
}

/// A cheap-to-clone handle to a broker. All clones share one pipelined connection.
///
/// ```no_run
/// # async fn run() -> sluice_client::Result<()> {
/// let client = sluice_client::Client::connect("127.0.0.1:7480").await?;
/// for channel in client.list_channels().await? {
///     println!("{} ({})", channel.name, channel.kind);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    /// State shared by all clones.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.shared.addr)
            .finish()
    }
}

/// What every clone of a client shares.
struct Shared {
    /// Broker address, `host:port`.
    addr: String,
    /// Connect and reconnect settings.
    options: ClientOptions,
    /// The current connection, or the reconnect in progress. Replaced when the connection dies.
    /// The lock is held only to clone or swap the `Arc`, never across an await.
    slot: Mutex<Arc<OnceCell<Arc<Connection>>>>,
    /// Source of consumer ids, unique per client and so per connection.
    next_consumer_id: AtomicU64,
}

impl Client {
    /// Connects to a broker at `addr` (`host:port`) with default options.
    ///
    /// # Errors
    /// [`ClientError::Connect`] or [`ClientError::Timeout`] when the broker cannot be reached,
    /// a broker error when it refuses the handshake.
    pub async fn connect(addr: impl Into<String>) -> Result<Self> {
        Self::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects with explicit options. The first connection is tried once, without backoff, so
    /// a wrong address fails fast.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_with(addr: impl Into<String>, options: ClientOptions) -> Result<Self> {
        let addr = addr.into();
        let conn = Connection::open(&addr, &settings(&options)).await?;
        let slot = Mutex::new(Arc::new(OnceCell::new_with(Some(conn))));
        Ok(Self {
            shared: Arc::new(Shared {
                addr,
                options,
                slot,
                next_consumer_id: AtomicU64::new(1),
            }),
        })
    }

    /// The broker address this client talks to.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Sends one raw protocol request and waits for the answer: the escape hatch under the typed
    /// API.
    ///
    /// # Errors
    /// The broker's error, or a connection error.
    pub async fn request(&self, request: &Request) -> Result<Response> {
        self.connection().await?.call(request).await
    }

    /// Queues a request on the current connection; the answer is awaited separately. Requests
    /// submitted one after another go on the wire in that order.
    pub(crate) async fn submit(&self, request: &Request) -> Result<Answer> {
        self.connection().await?.submit(request).await
    }

    /// The largest frame the broker accepts, from the handshake.
    ///
    /// # Errors
    /// A connection error when no connection can be made.
    pub async fn broker_max_frame(&self) -> Result<usize> {
        Ok(self.connection().await?.info().max_frame as usize)
    }

    /// The largest record batch the broker stores, learnt at the handshake; `None` from a
    /// broker that does not say.
    ///
    /// # Errors
    /// A connection error.
    pub async fn broker_max_batch(&self) -> Result<Option<usize>> {
        let max_batch = self.connection().await?.info().max_batch;
        Ok((max_batch > 0).then_some(max_batch as usize))
    }

    pub(crate) fn next_consumer_id(&self) -> u64 {
        self.shared.next_consumer_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The live connection, reconnecting with backoff if the current one has died.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>> {
        loop {
            let cell = self.current_slot();
            let conn = cell.get_or_try_init(|| self.reconnect()).await?.clone();
            if !conn.is_closed() {
                return Ok(conn);
            }
            let mut slot = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
            if Arc::ptr_eq(&slot, &cell) {
                *slot = Arc::new(OnceCell::new());
            }
        }
    }

    fn current_slot(&self) -> Arc<OnceCell<Arc<Connection>>> {
        self.shared
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn reconnect(&self) -> Result<Arc<Connection>> {
        let options = &self.shared.options;
        let settings = settings(options);
        let mut delay = options.reconnect_initial_delay;
        let mut last = ClientError::Disconnected;
        for attempt in 0..options.reconnect_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(jittered(delay)).await;
                delay = (delay * 2).min(options.reconnect_max_delay);
            }
            match Connection::open(&self.shared.addr, &settings).await {
                Ok(conn) => {
                    tracing::info!(addr = %self.shared.addr, attempt, "reconnected to broker");
                    return Ok(conn);
                }
                Err(e) if e.is_connection_error() || matches!(e, ClientError::Timeout) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

fn settings(options: &ClientOptions) -> ConnectSettings {
    ConnectSettings {
        client_name: options.client_name.clone(),
        connect_timeout: options.connect_timeout,
        max_frame: options.max_frame,
    }
}

/// `delay` plus up to half of it again, so clients that lost the same broker spread out.
fn jittered(delay: Duration) -> Duration {
    let extra = rand::rng().random_range(0..=delay.as_millis() as u64 / 2);
    delay + Duration::from_millis(extra)
}
