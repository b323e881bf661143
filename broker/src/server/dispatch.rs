//! Dispatch: turns decoded requests into calls on the channel registry and partition tasks.
//!
//! The connection knows frames; the registry knows channels; this module is the seam. Every
//! answer goes out through the session's outbox, possibly later (a publish is answered when its
//! batch is durable), so `handle` only awaits admission into a partition's queue, and requests
//! from one connection reach each partition in the order they were sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use sluice_protocol::request::{self, Request};
use sluice_protocol::response::{ProducerSession, Redriven, Subscribed};
use sluice_protocol::types::{ChannelKind, ChannelMeta, ChannelSummary};
use sluice_protocol::Response;
use tokio_util::sync::CancellationToken;

use crate::channel::consumer::{ConsumerHandle, Credit};
use crate::channel::cursor::ConsumerKey;
use crate::channel::error::ChannelError;
use crate::channel::outbox::{Outbox, Reply};
use crate::channel::partition::PartitionRequest;
use crate::channel::registry::{Channel, Registry};
use crate::channel::subscription::Lifetime;
use crate::channel::{publish, redrive};
use crate::config::BrokerConfig;

/// Errors that stop the broker from opening.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory or a partition could not be opened.
    #[error("cannot open broker state: {0}")]
    Storage(#[from] ChannelError),
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
    /// Open channels.
    registry: Arc<Registry>,
    /// Attached consumers by (session, client-chosen consumer id).
    consumers: DashMap<(u64, u64), Attachment>,
    /// Next session id.
    next_session: AtomicU64,
    /// Next broker-wide consumer key.
    next_consumer: AtomicU64,
    /// Address clients reach this node at, for metadata answers.
    advertised: String,
}

/// What the dispatcher remembers of an attached consumer.
#[derive(Debug, Clone)]
struct Attachment {
    /// Broker-wide key, as partitions know it.
    key: ConsumerKey,
    /// The channel it reads.
    channel: Arc<Channel>,
    /// Its credit, shared with the partitions.
    credit: Arc<Credit>,
}

impl Dispatcher {
    /// Opens every channel under the configured data directory.
    ///
    /// # Errors
    /// [`OpenError`] when stored state cannot be opened.
    pub async fn open(
        config: &BrokerConfig,
        _shutdown: CancellationToken,
    ) -> Result<Self, OpenError> {
        let registry = Registry::open(config).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                consumers: DashMap::new(),
                next_session: AtomicU64::new(1),
                next_consumer: AtomicU64::new(1),
                advertised: config.listen.to_string(),
            }),
        })
    }

    /// A session for a new connection.
    pub fn new_session(&self, outbox: Outbox) -> Session {
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        Session { id, outbox }
    }

    /// Handles one request; the answer goes to the session's outbox.
    pub async fn handle(&self, session: &Session, correlation_id: u64, request: Request) {
        let reply = Reply::new(session.outbox.clone(), correlation_id, request.opcode());
        match self.route(session, request, reply.clone()).await {
            Ok(Some(response)) => reply.send(Ok(response)),
            Ok(None) => {} // answered later by a partition
            Err(e) => reply.send(Err(e.to_wire())),
        }
    }

    /// Whether the session has attached consumers (such a connection is never idle).
    pub fn has_consumers(&self, session: &Session) -> bool {
        self.inner.consumers.iter().any(|e| e.key().0 == session.id)
    }

    /// Detaches the session's consumers; their in-flight deliveries return at once.
    pub async fn close_session(&self, session: &Session) {
        let ids: Vec<u64> = self
            .inner
            .consumers
            .iter()
            .filter(|e| e.key().0 == session.id)
            .map(|e| e.key().1)
            .collect();
        for id in ids {
            let _ = self.detach(session, id).await;
        }
    }

    /// Stops every partition: pending writes are made durable and files closed.
    pub async fn shutdown(&self) {
        self.inner.registry.shutdown().await;
    }

    async fn route(
        &self,
        session: &Session,
        request: Request,
        reply: Reply,
    ) -> Result<Option<Response>, ChannelError> {
        let registry = &self.inner.registry;
        Ok(Some(match request {
            Request::Publish(p) => {
                let channel = registry.get(&p.channel)?;
                publish::publish(registry, &channel, p.partition, p.batch, reply).await?;
                return Ok(None);
            }
            Request::Credit(c) => self.credit(session, c.consumer_id, c.credit)?,
            Request::Ack(a) => return self.ack(session, a, reply).await.map(|()| None),
            Request::Nack(n) => return self.nack(session, n, reply).await.map(|()| None),
            Request::Extend(x) => return self.extend(session, x, reply).await.map(|()| None),
            Request::Reject(r) => return self.reject(session, r, reply).await.map(|()| None),
            Request::Subscribe(s) => self.subscribe(session, s).await?,
            Request::Detach(d) => self.detach(session, d.consumer_id).await?,
            other => self.admin(other).await?,
        }))
    }

    async fn admin(&self, request: Request) -> Result<Response, ChannelError> {
        let registry = &self.inner.registry;
        Ok(match request {
            Request::Metadata(m) => Response::Metadata(self.metadata(&m.channels)?),
            Request::CreateChannel(c) => {
                registry.create(&c.name, c.kind, &c.settings).await?;
                Response::Ok
            }
            Request::DeleteChannel(c) => {
                registry.delete(&c.name).await?;
                Response::Ok
            }
            Request::ListChannels => Response::Channels(self.summaries().await?),
            Request::DescribeChannel(c) => {
                Response::Description(registry.get(&c.name)?.describe().await?)
            }
            Request::CreateSubscription(s) => {
                let lifetime = if s.durable {
                    Lifetime::Durable
                } else {
                    Lifetime::Named
                };
                let lease = s.lease_ms.map(Duration::from_millis);
                registry
                    .get(&s.channel)?
                    .create_subscription(&s.name, lifetime, lease)
                    .await?;
                Response::Ok
            }
            Request::DeleteSubscription(s) => {
                registry
                    .get(&s.channel)?
                    .delete_subscription(&s.name)
                    .await?;
                Response::Ok
            }
            Request::ListSubscriptions(c) => {
                Response::Subscriptions(registry.get(&c.name)?.describe().await?.subscriptions)
            }
            Request::InitProducer(r) => Response::ProducerSession(self.init_producer(r).await?),
            Request::Redrive(r) => {
                let count =
                    redrive::redrive(registry, &r.channel, r.to.as_deref(), r.count).await?;
                Response::Redriven(Redriven { count })
            }
            Request::Purge(p) => {
                let channel = registry.get(&p.channel)?;
                channel.purge(p.subscription.as_deref()).await?;
                Response::Ok
            }
            Request::Handshake(_) => {
                return Err(ChannelError::InvalidArgument(
                    "the handshake was done already".into(),
                ));
            }
            // Data-path requests are routed before `admin`; should one arrive here anyway, the
            // client gets an error rather than the broker a panic.
            other => {
                return Err(ChannelError::InvalidArgument(format!(
                    "opcode {} is not an administration request",
                    other.opcode()
                )));
            }
        })
    }

    async fn init_producer(
        &self,
        r: request::InitProducer,
    ) -> Result<ProducerSession, ChannelError> {
        let channel = self.inner.registry.get(&r.channel)?;
        let Some(producer_id) = r.producer_id else {
            let producer_id = rand::random::<u64>().max(1);
            return Ok(ProducerSession {
                producer_id,
                epoch: 0,
            });
        };
        let mut epoch = 0;
        for p in &channel.partitions {
            let known = p
                .call(|done| PartitionRequest::ProducerEpoch { producer_id, done })
                .await?;
            if let Some(known) = known {
                epoch = epoch.max(known.saturating_add(1));
            }
        }
        Ok(ProducerSession { producer_id, epoch })
    }

    fn metadata(&self, names: &[String]) -> Result<Vec<ChannelMeta>, ChannelError> {
        let channels = if names.is_empty() {
            self.inner.registry.list()
        } else {
            names
                .iter()
                .map(|n| self.inner.registry.get(n))
                .collect::<Result<_, _>>()?
        };
        Ok(channels
            .iter()
            .map(|c| ChannelMeta {
                name: c.spec.name.clone(),
                kind: c.spec.kind,
                partitions: c.partition_metas(&self.inner.advertised),
            })
            .collect())
    }

    async fn summaries(&self) -> Result<Vec<ChannelSummary>, ChannelError> {
        let mut out = Vec::new();
        for channel in self.inner.registry.list() {
            let d = channel.describe().await?;
            let messages = d
                .partitions
                .iter()
                .map(|p| p.next_offset - p.first_offset)
                .sum();
            out.push(ChannelSummary {
                name: d.name,
                kind: d.kind,
                partitions: channel.spec.partitions,
                messages,
            });
        }
        Ok(out)
    }

    fn attachment(&self, session: &Session, consumer_id: u64) -> Result<Attachment, ChannelError> {
        self.inner
            .consumers
            .get(&(session.id, consumer_id))
            .map(|a| a.clone())
            .ok_or(ChannelError::UnknownConsumer(consumer_id))
    }

    async fn subscribe(
        &self,
        session: &Session,
        s: request::Subscribe,
    ) -> Result<Response, ChannelError> {
        let channel = self.inner.registry.get(&s.channel)?;
        let (subscription, ephemeral) = subscription_for(&channel, session, &s)?;
        let key = self.inner.next_consumer.fetch_add(1, Ordering::Relaxed);
        let credit = Arc::new(Credit::default());
        credit.add(u64::from(s.credit));
        let attachment = Attachment {
            key,
            channel: Arc::clone(&channel),
            credit: Arc::clone(&credit),
        };
        match self.inner.consumers.entry((session.id, s.consumer_id)) {
            dashmap::Entry::Occupied(_) => return Err(ChannelError::ConsumerExists(s.consumer_id)),
            dashmap::Entry::Vacant(v) => {
                v.insert(attachment);
            }
        }
        let handle = ConsumerHandle {
            key,
            client_id: s.consumer_id,
            credit,
            outbox: session.outbox.clone(),
            lease: s.lease_ms.map(Duration::from_millis),
        };
        for p in &channel.partitions {
            let (subscription, consumer) = (subscription.clone(), handle.clone());
            let attached = p
                .call(|done| PartitionRequest::Attach {
                    subscription,
                    ephemeral,
                    consumer,
                    done,
                })
                .await
                .and_then(|r| r);
            if let Err(e) = attached {
                let _ = self.detach(session, s.consumer_id).await;
                return Err(e);
            }
        }
        let partitions = channel.partition_metas(&self.inner.advertised);
        Ok(Response::Subscribed(Subscribed {
            subscription,
            partitions,
        }))
    }

    async fn detach(&self, session: &Session, consumer_id: u64) -> Result<Response, ChannelError> {
        let (_, a) = self
            .inner
            .consumers
            .remove(&(session.id, consumer_id))
            .ok_or(ChannelError::UnknownConsumer(consumer_id))?;
        for p in &a.channel.partitions {
            let _ = p.send(PartitionRequest::Detach { consumer: a.key }).await;
        }
        Ok(Response::Ok)
    }

    fn credit(
        &self,
        session: &Session,
        consumer_id: u64,
        credit: u32,
    ) -> Result<Response, ChannelError> {
        let a = self.attachment(session, consumer_id)?;
        a.credit.add(u64::from(credit));
        for p in &a.channel.partitions {
            p.wake();
        }
        Ok(Response::Ok)
    }

    async fn ack(
        &self,
        session: &Session,
        ack: request::Ack,
        reply: Reply,
    ) -> Result<(), ChannelError> {
        let a = self.attachment(session, ack.consumer_id)?;
        let request = PartitionRequest::Ack {
            consumer: a.key,
            ranges: ack.ranges,
            reply,
        };
        a.channel.partition(ack.partition)?.send(request).await
    }

    async fn nack(
        &self,
        session: &Session,
        nack: request::Nack,
        reply: Reply,
    ) -> Result<(), ChannelError> {
        let a = self.attachment(session, nack.consumer_id)?;
        let delay = Duration::from_millis(nack.delay_ms);
        let request = PartitionRequest::Nack {
            consumer: a.key,
            offsets: nack.offsets,
            delay,
            reply,
        };
        a.channel.partition(nack.partition)?.send(request).await
    }

    async fn reject(
        &self,
        session: &Session,
        r: request::Reject,
        reply: Reply,
    ) -> Result<(), ChannelError> {
        let a = self.attachment(session, r.consumer_id)?;
        let request = PartitionRequest::Reject {
            consumer: a.key,
            offsets: r.offsets,
            reason: r.reason,
            invalid: r.invalid,
            reply,
        };
        a.channel.partition(r.partition)?.send(request).await
    }

    async fn extend(
        &self,
        session: &Session,
        x: request::Extend,
        reply: Reply,
    ) -> Result<(), ChannelError> {
        let a = self.attachment(session, x.consumer_id)?;
        let lease = Duration::from_millis(x.lease_ms);
        let request = PartitionRequest::Extend {
            consumer: a.key,
            offsets: x.offsets,
            lease,
            reply,
        };
        a.channel.partition(x.partition)?.send(request).await
    }
}

/// The subscription a consumer attaches to, and whether it is a new ephemeral one.
fn subscription_for(
    channel: &Channel,
    session: &Session,
    s: &request::Subscribe,
) -> Result<(String, bool), ChannelError> {
    let name = &channel.spec.name;
    match (channel.spec.kind, &s.subscription) {
        (ChannelKind::Queue, None) => Ok((name.clone(), false)),
        (ChannelKind::Queue, Some(sub)) if sub == name => Ok((name.clone(), false)),
        (ChannelKind::Queue, Some(sub)) => Err(ChannelError::UnknownSubscription {
            channel: name.clone(),
            name: sub.clone(),
        }),
        (ChannelKind::Topic, None) => Ok((format!("~{}.{}", session.id, s.consumer_id), true)),
        (ChannelKind::Topic, Some(sub)) => Ok((sub.clone(), false)),
    }
}
