//! Property (issue 4): over random sequences of publish / deliver / ack / nack / reject /
//! reject-invalid / consumer close / time advance with lease expiry / an ack racing a lease
//! running out / restart, every published message ends in exactly one of acked, dead-lettered,
//! invalid, expired-dropped or still pending; none is lost or counted twice, and none is
//! delivered after it was settled.
//!
//! Each case drives a real broker in this process through the client crate, on a manual clock
//! that only the test moves, and keeps a model of every message (found again by its payload,
//! `{"n":K}`, or `not json K` for the invalid ones). Consumers take exactly the number of
//! deliveries the model says are available (`limit`), so the broker never hands out anything the
//! test did not ask for. After every step the test waits until the broker's own view (stored
//! messages, backlog and in flight of the queue, messages in its dead-letter queue and invalid
//! channel) equals the model's. After every restart and at the end it also compares the broker's
//! counters (acked, expired, dead-lettered by reason, invalid by source); at the end it drains
//! the queue, the dead-letter queue and the invalid channel and matches every message to its
//! model state.

mod common;
mod lifecycle_model;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::TestBroker;
use futures::StreamExt;
use lifecycle_model::{End, Fate, Model, Settings, State, View, LEASE_MS};
use prometheus_parse::{Scrape, Value};
use proptest::prelude::*;
use sluice_broker::clock::ManualClock;
use sluice_broker::config::Fsync;
use sluice_client::types::{ChannelKind, ChannelSettings, PayloadFormat};
use sluice_client::{Client, Consumer, Delivery, ErrorCode, Message, Outcome, Producer};
use tempfile::TempDir;

/// The delay of a delayed nack, in clock milliseconds.
const NACK_DELAY_MS: i64 = 8_000;
/// Longest the broker may take to agree with the model, or to hand out a delivery.
const PATIENCE: Duration = Duration::from_secs(10);

/// One step of a case.
#[derive(Debug, Clone)]
enum Op {
    /// Publish one message, valid JSON or not, with a TTL in seconds or none.
    Publish { ttl_s: Option<u8>, valid: bool },
    /// A new consumer takes up to `n` deliveries.
    Deliver { n: u8 },
    /// Ack a delivery the test holds (picked by index); its lease may have run out, and the
    /// message may have been delivered again or settled otherwise since.
    Ack { pick: u8 },
    /// Return a delivery, for redelivery now or after a delay.
    Nack { pick: u8, delayed: bool },
    /// Dead-letter a delivery.
    Reject { pick: u8 },
    /// Move a delivery to the invalid channel.
    RejectInvalid { pick: u8 },
    /// Close a consumer: what it holds returns.
    Close { pick: u8 },
    /// Move the clock: leases run out, nack delays pass, messages expire.
    Advance { s: u8 },
    /// Ack a delivery while the clock moves, so the ack races its lease and its expiry.
    AckDuringAdvance { pick: u8, s: u8 },
    /// Stop the broker gracefully and start it again on the same data and clock.
    Restart,
}

fn settings() -> impl Strategy<Value = Settings> {
    let max_age = prop::option::weighted(0.3, prop::sample::select(vec![30u8, 90]));
    (1..=3u32, any::<bool>(), max_age).prop_map(|(max_deliveries, to_dlq, max_age_s)| Settings {
        max_deliveries,
        expired_to_dead_letter: to_dlq,
        max_age_s,
    })
}

fn op() -> impl Strategy<Value = Op> {
    let ttl = prop::option::weighted(0.5, prop::sample::select(vec![2u8, 5, 15, 40]));
    let secs = prop::sample::select(vec![1u8, 3, 6, 11]);
    prop_oneof![
        6 => (ttl, prop::bool::weighted(0.85))
            .prop_map(|(ttl_s, valid)| Op::Publish { ttl_s, valid }),
        5 => (1..=3u8).prop_map(|n| Op::Deliver { n }),
        4 => any::<u8>().prop_map(|pick| Op::Ack { pick }),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(pick, delayed)| Op::Nack { pick, delayed }),
        1 => any::<u8>().prop_map(|pick| Op::Reject { pick }),
        1 => any::<u8>().prop_map(|pick| Op::RejectInvalid { pick }),
        1 => any::<u8>().prop_map(|pick| Op::Close { pick }),
        3 => secs.prop_map(|s| Op::Advance { s }),
        3 => (any::<u8>(), prop::sample::select(vec![6u8, 11, 11]))
            .prop_map(|(pick, s)| Op::AckDuringAdvance { pick, s }),
        1 => Just(Op::Restart),
    ]
}

/// A delivery the test holds and has not settled.
struct Held {
    /// Message number.
    msg: usize,
    /// The consumer it came to.
    consumer: usize,
    delivery: Delivery,
}

/// One case: the broker, the client side and the model.
struct Run {
    model: Model,
    clock: ManualClock,
    broker: Option<TestBroker>,
    client: Client,
    producer: Producer,
    /// The queue under test; its dead-letter queue is `<queue>.dlq`.
    queue: String,
    /// Its invalid channel.
    invalid: String,
    /// Consumers by number; `None` once closed (or gone with a restart).
    consumers: Vec<Option<Consumer>>,
    held: Vec<Held>,
    /// Dropped after the broker, which keeps its data there.
    _dir: TempDir,
}

/// The number in a payload the test published.
fn message_number(payload: &[u8]) -> usize {
    let text = std::str::from_utf8(payload).expect("UTF-8 payload");
    let digits = text
        .strip_prefix("{\"n\":")
        .and_then(|t| t.strip_suffix('}'))
        .or_else(|| text.strip_prefix("not json "))
        .unwrap_or_else(|| panic!("not a payload of this test: {text:?}"));
    digits.parse().expect("a message number")
}

/// The next delivery of `consumer`, failing the case if none comes in time.
async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("stream open")
        .expect("delivery ok")
}

/// Messages stored in `channel`, 0 while it does not exist.
async fn stored_in(client: &Client, channel: &str) -> u64 {
    match client.describe_channel(channel).await {
        Ok(d) => d.partitions.iter().map(|p| p.committed_offset).sum(),
        Err(e) if e.code() == Some(ErrorCode::UnknownChannel) => 0,
        Err(e) => panic!("describe {channel}: {e}"),
    }
}

static CASE: AtomicU32 = AtomicU32::new(0);

impl Run {
    async fn start(settings: Settings) -> Self {
        sluice_broker::exporter::install().expect("the metrics recorder installs");
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new();
        let mut config = common::config_on(dir.path(), &clock);
        // Restarts are graceful, so fsync has nothing to add here but time.
        config.channel_defaults.fsync = Fsync::Never;
        let broker = TestBroker::start_with(config).await;
        let queue = format!("life{}", CASE.fetch_add(1, Ordering::Relaxed));
        let invalid = format!("{queue}.invalid");
        let client = Client::connect(broker.addr.clone()).await.unwrap();
        let channel = ChannelSettings {
            lease_ms: Some(LEASE_MS as u64),
            max_deliveries: Some(settings.max_deliveries),
            expired_to_dead_letter: Some(settings.expired_to_dead_letter),
            max_age_ms: settings.max_age_s.map(|s| u64::from(s) * 1000),
            invalid_channel: Some(invalid.clone()),
            payload_format: Some(PayloadFormat::Json),
            ..ChannelSettings::default()
        };
        client
            .create_channel(&queue, ChannelKind::Queue, channel)
            .await
            .unwrap();
        let producer = client.producer(&queue).build().await.unwrap();
        Self {
            model: Model::new(settings),
            clock,
            broker: Some(broker),
            client,
            producer,
            queue,
            invalid,
            consumers: Vec::new(),
            held: Vec::new(),
            _dir: dir,
        }
    }

    async fn step(&mut self, op: &Op) {
        match *op {
            Op::Publish { ttl_s, valid } => self.publish(ttl_s, valid).await,
            Op::Deliver { n } => self.deliver(usize::from(n)).await,
            Op::Ack { pick } => {
                if let Some(h) = self.take_held(pick) {
                    h.delivery.ack().await.expect("ack");
                    self.model.ack(h.msg);
                }
            }
            Op::Nack { pick, delayed } => {
                if let Some(h) = self.take_held(pick) {
                    let delay_ms = if delayed { NACK_DELAY_MS } else { 0 };
                    let delay = Duration::from_millis(delay_ms as u64);
                    h.delivery.nack(delay).await.expect("nack");
                    self.model.nack(h.msg, h.consumer, delay_ms);
                }
            }
            Op::Reject { pick } => {
                if let Some(h) = self.take_held(pick) {
                    h.delivery.reject("property test").await.expect("reject");
                    self.model.reject(h.msg, h.consumer, false);
                }
            }
            Op::RejectInvalid { pick } => {
                if let Some(h) = self.take_held(pick) {
                    let rejected = h.delivery.reject_invalid("property test").await;
                    rejected.expect("reject_invalid");
                    self.model.reject(h.msg, h.consumer, true);
                }
            }
            Op::Close { pick } => self.close(pick).await,
            Op::Advance { s } => {
                self.clock.advance(Duration::from_secs(s.into()));
                self.model.advance(i64::from(s) * 1000, None);
            }
            Op::AckDuringAdvance { pick, s } => self.ack_during_advance(pick, s).await,
            Op::Restart => self.restart().await,
        }
        self.sync().await;
    }

    async fn publish(&mut self, ttl_s: Option<u8>, valid: bool) {
        let n = self.model.msgs.len();
        let payload = if valid {
            format!("{{\"n\":{n}}}")
        } else {
            format!("not json {n}")
        };
        let mut message = Message::new(payload);
        if let Some(s) = ttl_s {
            message = message.ttl(Duration::from_secs(s.into()));
        }
        let outcome = self.producer.send(message).await.expect("publish");
        let ttl_ms = ttl_s.map(|s| i64::from(s) * 1000);
        let k = self.model.publish(ttl_ms, valid);
        match outcome {
            Outcome::Stored { offset, .. } if valid => {
                assert_eq!(Some(offset), self.model.msgs[k].offset, "offset of #{k}");
            }
            Outcome::Invalid { routed_to, .. } if !valid => {
                assert_eq!(routed_to, self.invalid, "#{k} routed to");
            }
            other => panic!("publishing #{k} (valid: {valid}): {other:?}"),
        }
    }

    /// A new consumer limited to what the model says it can get, which must be exactly that.
    async fn deliver(&mut self, n: usize) {
        let deliverable = |plan: &[(usize, Fate)]| {
            plan.iter()
                .filter(|(_, f)| matches!(f, Fate::Deliver { .. }))
                .count()
        };
        let available = deliverable(&self.model.plan(n));
        if available == 0 {
            return;
        }
        let plan = self.model.plan(available);
        let number = self.consumers.len();
        let mut consumer = self
            .client
            .consumer(&self.queue)
            .prefetch(available as u32)
            .limit(available as u64)
            .subscribe()
            .await
            .expect("subscribe");
        let mut got = BTreeMap::new();
        for _ in 0..available {
            let delivery = next(&mut consumer).await;
            let msg = message_number(delivery.payload());
            assert!(
                got.insert(msg, delivery.delivery_count()).is_none(),
                "#{msg} delivered twice in one grant"
            );
            self.held.push(Held {
                msg,
                consumer: number,
                delivery,
            });
        }
        let want: BTreeMap<usize, u32> = plan
            .iter()
            .filter_map(|&(k, fate)| match fate {
                Fate::Deliver { count } => Some((k, count)),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            want,
            "deliveries (message → count) to consumer {number}\n{}",
            self.model.describe_pending()
        );
        self.model.grant(&plan, number);
        self.consumers.push(Some(consumer));
    }

    fn take_held(&mut self, pick: u8) -> Option<Held> {
        if self.held.is_empty() {
            return None;
        }
        let i = usize::from(pick) % self.held.len();
        Some(self.held.swap_remove(i))
    }

    async fn close(&mut self, pick: u8) {
        let open: Vec<usize> = (0..self.consumers.len())
            .filter(|&c| self.consumers[c].is_some())
            .collect();
        if open.is_empty() {
            return;
        }
        let c = open[usize::from(pick) % open.len()];
        self.close_consumer(c).await;
    }

    async fn close_consumer(&mut self, c: usize) {
        let Some(consumer) = self.consumers[c].take() else {
            return;
        };
        consumer.close().await.expect("close");
        self.held.retain(|h| h.consumer != c);
        self.model.close(c);
    }

    async fn ack_during_advance(&mut self, pick: u8, s: u8) {
        let by = Duration::from_secs(s.into());
        let Some(h) = self.take_held(pick) else {
            self.clock.advance(by);
            return self.model.advance(i64::from(s) * 1000, None);
        };
        let ack = tokio::spawn(async move { h.delivery.ack().await });
        self.clock.advance(by);
        ack.await.unwrap().expect("ack");
        self.model.advance(i64::from(s) * 1000, Some(h.msg));
    }

    async fn restart(&mut self) {
        let broker = self.broker.take().expect("a broker");
        self.broker = Some(broker.restart().await);
        // The old connection is gone; its consumers end (they have taken all they may).
        self.held.clear();
        self.consumers.iter_mut().for_each(|c| *c = None);
        let addr = self.broker.as_ref().unwrap().addr.clone();
        self.client = Client::connect(addr).await.unwrap();
        self.producer = self.client.producer(&self.queue).build().await.unwrap();
        self.model.restart();
        self.sync().await;
        self.check_counters();
    }

    /// What the broker reports now.
    async fn view(&self) -> View {
        let d = self.client.describe_channel(&self.queue).await.unwrap();
        let sub = &d.subscriptions[0];
        View {
            stored: d.partitions.iter().map(|p| p.committed_offset).sum(),
            backlog: sub.backlog,
            in_flight: sub.in_flight,
            dead_letters: stored_in(&self.client, &format!("{}.dlq", self.queue)).await,
            invalid: stored_in(&self.client, &self.invalid).await,
        }
    }

    /// Waits until the broker reports what the model says.
    async fn sync(&self) {
        let want = self.model.view();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let got = self.view().await;
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the broker reports {got:?}, the model says {want:?}\n{}",
                self.model.describe_pending()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The broker's counters for the queue against the model's tally.
    fn check_counters(&self) {
        let text = sluice_broker::exporter::install().unwrap().render();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let queue = self.queue.as_str();
        let counter = |name: &str, filter: &[(&str, &str)]| -> u64 {
            let sum: f64 = scrape
                .samples
                .iter()
                .filter(|s| s.metric == name && s.labels.get("channel") == Some(queue))
                .filter(|s| filter.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
                .map(|s| match s.value {
                    Value::Counter(v) | Value::Untyped(v) => v,
                    _ => 0.0,
                })
                .sum();
            sum as u64
        };
        let m = &self.model;
        let context = || m.describe_pending();
        let published = counter("sluice_messages_published_total", &[]);
        assert_eq!(published, m.stored, "published\n{}", context());
        let dead = |reason| counter("sluice_messages_dead_lettered_total", &[("reason", reason)]);
        for (label, reason) in [
            ("max_deliveries", "max-deliveries"),
            ("rejected", "rejected"),
            ("expired", "expired"),
        ] {
            let want = m.ended(End::Dead(reason));
            assert_eq!(dead(label), want, "dead-lettered ({label})\n{}", context());
        }
        let invalid = |source| counter("sluice_messages_invalid_total", &[("source", source)]);
        let at_publish = m.ended(End::Invalid { at_publish: true });
        assert_eq!(invalid("publish"), at_publish, "invalid at publish");
        let rejected = m.ended(End::Invalid { at_publish: false });
        assert_eq!(invalid("consumer"), rejected, "rejected as invalid");
        // An ack that raced its lease and its expiry counts as one or the other, never both.
        let acked = counter("sluice_messages_acked_total", &[]);
        let expired = counter("sluice_messages_expired_total", &[]);
        let (want_acked, raced) = (m.ended(End::Acked), m.ended(End::AckedOrExpired));
        let want_expired = m.ended(End::Expired) + m.ended(End::Dead("expired"));
        assert!(
            acked >= want_acked
                && expired >= want_expired
                && acked + expired == want_acked + want_expired + raced,
            "acked {acked} and expired {expired} counted; the model has {want_acked} acked, \
             {want_expired} expired and {raced} either\n{}",
            context()
        );
    }

    /// Everything still pending is delivered once more and acked; then the dead-letter queue
    /// and the invalid channel hold exactly the messages the model put there.
    async fn finish(mut self) {
        for c in 0..self.consumers.len() {
            self.close_consumer(c).await;
        }
        self.sync().await;
        let past_delays = NACK_DELAY_MS / 1000 + 1;
        self.clock.advance(Duration::from_secs(past_delays as u64));
        self.model.advance(past_delays * 1000, None);
        self.sync().await;

        let plan = self.model.plan(usize::MAX);
        let mut drain = self
            .client
            .consumer(&self.queue)
            .prefetch(1024)
            .subscribe()
            .await
            .unwrap();
        let want: Vec<usize> = plan
            .iter()
            .filter(|(_, f)| matches!(f, Fate::Deliver { .. }))
            .map(|&(k, _)| k)
            .collect();
        let mut pending = Vec::new();
        for _ in 0..want.len() {
            pending.push(next(&mut drain).await);
        }
        let mut got: Vec<usize> = pending
            .iter()
            .map(|d| message_number(d.payload()))
            .collect();
        got.sort_unstable();
        assert_eq!(got, want, "still pending at the end");
        self.model.grant(&plan, usize::MAX);
        self.sync().await;
        for (d, k) in pending.iter().zip(&got) {
            d.ack().await.expect("ack");
            self.model.ack(*k);
        }
        self.sync().await;
        assert_eq!(
            self.model.view().backlog,
            0,
            "{}",
            self.model.describe_pending()
        );
        self.check_counters();

        let dlq = format!("{}.dlq", self.queue);
        let dead = self.read_all(&dlq, "sluice-death-reason").await;
        for (k, reason) in &dead {
            let end = self.model.msgs[*k].state;
            assert_eq!(
                end,
                State::Done(End::Dead(reason_name(reason))),
                "#{k} in {dlq}"
            );
        }
        let invalid = self
            .read_all(&self.invalid.clone(), "sluice-invalid-reason")
            .await;
        for k in invalid.keys() {
            let end = self.model.msgs[*k].state;
            assert!(
                matches!(end, State::Done(End::Invalid { .. })),
                "#{k} in the invalid channel is {end:?}"
            );
        }
        drain.close().await.unwrap();
        self.broker.take().unwrap().stop().await;
    }

    /// Every message of `channel` (as many as the sync saw stored there), each once, with its
    /// `header`, by message number.
    async fn read_all(&self, channel: &str, header: &str) -> BTreeMap<usize, String> {
        let count = stored_in(&self.client, channel).await;
        let mut all = BTreeMap::new();
        if count == 0 {
            return all;
        }
        let mut consumer = self
            .client
            .consumer(channel)
            .prefetch(1024)
            .subscribe()
            .await
            .unwrap();
        for _ in 0..count {
            let d = next(&mut consumer).await;
            let k = message_number(d.payload());
            let value = d.header(header).expect("the header");
            let value = String::from_utf8_lossy(value).into_owned();
            assert!(all.insert(k, value).is_none(), "#{k} twice in {channel}");
        }
        consumer.close().await.unwrap();
        all
    }
}

/// The model's name for a `sluice-death-reason`.
fn reason_name(reason: &str) -> &'static str {
    match reason {
        "max-deliveries" => "max-deliveries",
        "rejected" => "rejected",
        "expired" => "expired",
        other => panic!("unknown death reason {other}"),
    }
}

/// 32 cases unless `PROPTEST_CASES` says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_time: 180_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_published_message_ends_in_exactly_one_state(
        settings in settings(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut run = Run::start(settings).await;
            for op in &ops {
                run.step(op).await;
            }
            run.finish().await;
        });
    }
}
