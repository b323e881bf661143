//! The consumer's driver task: owns the subscription on the current connection, batches
//! settlements into few requests, grants credit as deliveries are settled, and re-subscribes on
//! a new connection when the old one dies.
//!
//! Flushing: the driver takes every command already queued (up to [`MAX_PENDING`]) and then
//! sends them as one request per partition and kind, so acks coalesce into ranges exactly when
//! they arrive faster than the driver can send them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use sluice_protocol::request::{ConsumerRef, Credit, Subscribe};
use sluice_protocol::response::Subscribed;
use sluice_protocol::{Request, Response};
use tokio::sync::{mpsc, oneshot};

use super::delivery::Command;
use super::settle::Settlements;
use crate::connection::{Connection, DeliverySink, Inbound, Route};
use crate::error::{ClientError, Result};
use crate::Client;

/// Most settlements gathered before a flush.
const MAX_PENDING: usize = 8192;
/// Pause after a failed re-subscribe before the next try.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How long `close` waits for the broker to confirm the detach.
const DETACH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the consumer subscribes to, and how.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    /// Channel name.
    pub channel: String,
    /// Subscription name; `None` for the queue's own or a new ephemeral one on a topic.
    pub subscription: Option<String>,
    /// Prefetch window: deliveries held unsettled at most.
    pub window: u32,
    /// Lease override in milliseconds.
    pub lease_ms: Option<u64>,
    /// Most deliveries ever taken, when limited.
    pub limit: Option<u64>,
}

/// A subscription live on one connection.
pub(super) struct Attached {
    /// The connection it lives on.
    pub conn: Arc<Connection>,
    /// The id it was subscribed with.
    pub consumer_id: u64,
    /// The broker's answer.
    pub subscribed: Subscribed,
}

/// Subscribes on the client's current connection, routing deliveries to `sink` with `tag`.
///
/// # Errors
/// The broker's error, or a connection error.
pub(super) async fn attach(
    client: &Client,
    spec: &Spec,
    tag: u64,
    credit: u32,
    sink: &DeliverySink,
) -> Result<Attached> {
    let conn = client.connection().await?;
    let consumer_id = client.next_consumer_id();
    let request = Request::Subscribe(Subscribe {
        consumer_id,
        channel: spec.channel.clone(),
        subscription: spec.subscription.clone(),
        credit,
        lease_ms: spec.lease_ms,
    });
    let route = Route::Attach {
        consumer_id,
        tag,
        sink: sink.clone(),
    };
    match conn.call_routed(&request, Some(route)).await? {
        Response::Subscribed(subscribed) => Ok(Attached {
            conn,
            consumer_id,
            subscribed,
        }),
        _ => Err(ClientError::UnexpectedResponse {
            request: "subscribe",
        }),
    }
}

/// Why [`Driver::serve`] returned.
enum Exit {
    /// `close` was called.
    Close(oneshot::Sender<Result<()>>),
    /// Every handle is gone.
    Dropped,
    /// The connection died.
    Lost,
}

/// The driver task's state.
pub(super) struct Driver {
    /// For reconnecting.
    pub client: Client,
    /// What to subscribe to.
    pub spec: Spec,
    /// From deliveries and the consumer handle.
    pub commands: mpsc::UnboundedReceiver<Command>,
    /// The consumer's inbox, re-attached on each new connection.
    pub sink: DeliverySink,
    /// Deliveries received so far (counted by the consumer stream).
    pub delivered: Arc<AtomicU64>,
    /// Generation of the current subscription.
    pub tag: u64,
    /// The current subscription.
    pub attached: Attached,
    /// Credit granted on the current subscription, counted from `delivered` at attach time.
    pub granted: u64,
    /// Settlements not yet sent.
    pub pending: Settlements,
    /// Settled deliveries whose credit is not granted back yet.
    pub to_grant: u32,
    /// Settlement requests awaiting the broker; each yields its error, if any.
    pub in_flight: FuturesUnordered<BoxFuture<'static, Option<ClientError>>>,
    /// First failure of a settlement nobody waited for, reported by `close`.
    pub first_error: Option<ClientError>,
}

impl Driver {
    /// Runs until closed, dropped, or a re-subscribe fails for good.
    pub(super) async fn run(mut self) {
        let mut failure = None;
        loop {
            match self.serve().await {
                Exit::Close(reply) => {
                    let _ = reply.send(self.close().await);
                    break;
                }
                Exit::Dropped => {
                    let _ = self.close().await;
                    break;
                }
                Exit::Lost => {
                    self.pending
                        .fail_all(&ClientError::NotHeld("connection lost"));
                    match self.reattach().await {
                        Ok(true) => continue,
                        Ok(false) => break,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
            }
        }
        let _ = self.sink.send(Inbound::Ended(failure));
    }

    async fn serve(&mut self) -> Exit {
        let conn = self.attached.conn.clone();
        loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => {
                    let Some(command) = command else { return Exit::Dropped };
                    if let Some(exit) = self.take_burst(command) {
                        return exit;
                    }
                    self.flush().await;
                }
                Some(error) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.record(error);
                }
                _ = conn.closed() => return Exit::Lost,
            }
        }
    }

    /// Accepts `first` and every command already queued behind it, up to [`MAX_PENDING`].
    fn take_burst(&mut self, first: Command) -> Option<Exit> {
        let mut next = Some(first);
        while let Some(command) = next {
            if let Some(exit) = self.accept(command) {
                return Some(exit);
            }
            next = if self.pending.len() < MAX_PENDING {
                self.commands.try_recv().ok()
            } else {
                None
            };
        }
        None
    }

    fn accept(&mut self, command: Command) -> Option<Exit> {
        match command {
            Command::Close(reply) => Some(Exit::Close(reply)),
            Command::Settle {
                tag,
                partition,
                offset,
                kind,
                reply,
            } => {
                if tag != self.tag {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(ClientError::NotHeld("connection lost")));
                    }
                    return None;
                }
                if kind.settles() {
                    self.to_grant += 1;
                }
                self.pending.add(partition, offset, kind, reply);
                None
            }
        }
    }

    /// Grants credit back when half the window is settled, then sends the settlements.
    async fn flush(&mut self) {
        let conn = self.attached.conn.clone();
        let consumer_id = self.attached.consumer_id;
        // Settlements go on the wire now, in order, before any credit they free: a future that
        // only sends when polled would sit unsent while commands keep arriving (the select
        // below prefers commands), and the broker would hand out credit for deliveries whose
        // acks it never got.
        for (request, waiters) in self.pending.take_requests(consumer_id) {
            let answer = conn.submit(&request).await;
            self.in_flight.push(Box::pin(async move {
                let result = match answer {
                    Ok(answer) => answer.await_response().await.map(|_| ()),
                    Err(e) => Err(e),
                };
                for waiter in waiters {
                    let _ = waiter.send(result.clone());
                }
                result.err()
            }));
        }
        if self.to_grant >= (self.spec.window / 2).max(1) {
            let credit = self.grantable(self.to_grant);
            self.to_grant = 0;
            if credit > 0 {
                self.granted += u64::from(credit);
                let request = Request::Credit(Credit {
                    consumer_id,
                    credit,
                });
                let _ = conn.notify(&request, None).await;
            }
        }
    }

    /// `want`, less what would take the consumer past its limit.
    fn grantable(&self, want: u32) -> u32 {
        match self.spec.limit {
            None => want,
            Some(limit) => {
                let left = limit.saturating_sub(self.granted);
                u32::try_from(left.min(u64::from(want))).unwrap_or(want)
            }
        }
    }

    fn record(&mut self, error: Option<ClientError>) {
        if self.first_error.is_none() {
            self.first_error = error;
        }
    }

    /// Sends what is pending, waits for every answer, detaches.
    async fn close(&mut self) -> Result<()> {
        self.flush().await;
        while let Some(error) = self.in_flight.next().await {
            self.record(error);
        }
        let id = self.attached.consumer_id;
        let detach = Request::Detach(ConsumerRef { consumer_id: id });
        let conn = &self.attached.conn;
        let call = conn.call_routed(&detach, Some(Route::Detach(id)));
        let _ = tokio::time::timeout(DETACH_TIMEOUT, call).await;
        self.first_error.take().map_or(Ok(()), Err)
    }

    /// Subscribes again on a new connection. `Ok(false)`: the consumer was closed meanwhile or
    /// has taken all it may.
    ///
    /// # Errors
    /// The broker's refusal (the channel or subscription is gone, say).
    async fn reattach(&mut self) -> Result<bool> {
        loop {
            let delivered = self.delivered.load(Ordering::Relaxed);
            self.granted = delivered;
            self.to_grant = 0;
            let credit = self.grantable(self.spec.window);
            if credit == 0 {
                return Ok(false);
            }
            self.tag += 1;
            let (client, spec, sink, tag) = (
                self.client.clone(),
                self.spec.clone(),
                self.sink.clone(),
                self.tag,
            );
            let attempt = async move { attach(&client, &spec, tag, credit, &sink).await };
            let result = match self.while_offline(attempt).await {
                Some(result) => result,
                None => return Ok(false),
            };
            match result {
                Ok(attached) => {
                    self.attached = attached;
                    self.granted = delivered + u64::from(credit);
                    return Ok(true);
                }
                Err(e) if e.is_connection_error() || matches!(e, ClientError::Timeout) => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Drives `work` while answering commands as an offline consumer; `None` when closed.
    async fn while_offline<T>(&mut self, work: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    None => return None,
                    Some(Command::Close(reply)) => {
                        let _ = reply.send(self.first_error.take().map_or(Ok(()), Err));
                        return None;
                    }
                    Some(command) => {
                        let _ = self.accept(command);
                    }
                },
                Some(error) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.record(error);
                }
                result = &mut work => return Some(result),
            }
        }
    }
}
