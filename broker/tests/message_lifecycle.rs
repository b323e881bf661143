//! Model test of a message's life in one partition: random sequences of publish / deliver /
//! ack / nack / reject / reject-invalid / time advance with lease expiry / expiry sweep /
//! detach / durable flush / finished moves / crash-and-restart, driven through the public
//! [`Cursor`] and [`Command`] the way the partition task drives them, against a per-offset
//! reference model.
//!
//! The property (issue 4): every published message is in exactly one of acked, dead-lettered,
//! invalid, expired-dropped or still pending; none is lost or counted twice; nothing done is
//! delivered again; and after a restart every pending message is delivered again with its
//! delivery count taken from the logged returns.
//!
//! The harness mirrors `channel/partition.rs` and `partition/moves.rs`: a logged command is
//! appended to `log` and applied only when a `Flush` makes it durable, in log order, except
//! that acks and expiry drops also take effect in memory at once (so a message acked while its
//! lease ran out is never also counted expired); dead-letter and invalid moves are in progress
//! until `FinishMove` logs their `Settle` (or a `Return` when the move failed); a crash keeps
//! the durable log plus some prefix of what was still being written. Like the partition, the
//! expiry sweep skips messages that are being moved out, and may drop one whose return is not
//! yet durable (the return then finds it settled).
//!
//! `tests/message_lifecycle_properties.rs` checks the same property end to end, through the
//! client against a running broker.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use sluice_broker::channel::command::Command;
use sluice_broker::channel::cursor::{ConsumerKey, Cursor, Grant};
use tokio::time::Instant;

/// The subscription every command is about (a queue's own).
const SUB: &str = "orders";
/// Lease of every delivery.
const LEASE: Duration = Duration::from_millis(1000);
/// How long a failed move waits before the message is tried again (as `moves.rs`).
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A consumer key no test consumer uses, for probing what a restarted cursor hands out.
const PROBE: ConsumerKey = 999;

/// Where a message ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Acked,
    DeadLettered,
    Invalid,
    Expired,
}

impl Outcome {
    /// The `Settle` outcome string the partition logs for this.
    fn settle_name(self) -> &'static str {
        match self {
            Self::Acked => unreachable!("acks are logged as Command::Ack"),
            Self::DeadLettered => "dead-lettered",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
        }
    }

    fn from_settle(name: &str) -> Self {
        match name {
            "dead-lettered" => Self::DeadLettered,
            "invalid" => Self::Invalid,
            "expired" => Self::Expired,
            other => panic!("unexpected settle outcome {other}"),
        }
    }
}

/// Where a not-yet-done message is, in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Not delivered in this incarnation: goes out in offset order after redeliveries.
    New,
    /// Returned; redelivered first, from this moment on.
    Waiting(Instant),
    /// Out with a consumer until the deadline.
    Held(ConsumerKey, Instant),
    /// Taken out of flight, with a return or a move on its way; nobody can receive it.
    Out,
}

/// The model of one published message.
#[derive(Debug, Clone)]
struct Message {
    /// When its TTL runs out, if it has one.
    expires_at: Option<Instant>,
    /// Every outcome applied to it; more than one is a double count.
    outcomes: Vec<Outcome>,
    /// Logged returns applied while it was pending.
    returns: u32,
    /// Where it is while pending.
    place: Place,
}

impl Message {
    fn is_done(&self) -> bool {
        !self.outcomes.is_empty()
    }
}

/// Channel settings of one case.
#[derive(Debug, Clone)]
struct Settings {
    /// Attached consumers, keyed `1..=consumers`.
    consumers: u8,
    /// A delivery count above this dead-letters the message.
    max_deliveries: u32,
    /// Whether expired messages are dead-lettered rather than dropped.
    expired_to_dead_letter: bool,
    /// Whether `reject_invalid` has somewhere to go.
    invalid_channel: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Publish {
        n: u8,
        ttl_ms: Option<u16>,
    },
    Deliver {
        consumer: u8,
        max: u64,
    },
    Ack {
        consumer: u8,
        pick: u8,
    },
    Nack {
        consumer: u8,
        pick: u8,
        delay_ms: u16,
    },
    Reject {
        consumer: u8,
        pick: u8,
    },
    RejectInvalid {
        consumer: u8,
        pick: u8,
    },
    AdvanceTime {
        ms: u16,
    },
    ExpireSweep,
    Detach {
        consumer: u8,
    },
    Flush,
    FinishMove {
        pick: u8,
        ok: bool,
    },
    Restart {
        survivors: u8,
    },
}

fn settings() -> impl Strategy<Value = Settings> {
    (1..=3u8, 1..=4u32, any::<bool>(), prop::bool::weighted(0.8)).prop_map(
        |(consumers, max_deliveries, expired_to_dead_letter, invalid_channel)| Settings {
            consumers,
            max_deliveries,
            expired_to_dead_letter,
            invalid_channel,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    let ttl = prop::option::weighted(0.4, 0..3000u16);
    let max = prop_oneof![8 => 1..6u64, 2 => Just(64), 1 => Just(u64::MAX)];
    let delay = prop_oneof![Just(0u16), 1..1500u16];
    prop_oneof![
        4 => (1..5u8, ttl).prop_map(|(n, ttl_ms)| Op::Publish { n, ttl_ms }),
        8 => (any::<u8>(), max).prop_map(|(consumer, max)| Op::Deliver { consumer, max }),
        4 => (any::<u8>(), any::<u8>()).prop_map(|(consumer, pick)| Op::Ack { consumer, pick }),
        2 => (any::<u8>(), any::<u8>(), delay)
            .prop_map(|(consumer, pick, delay_ms)| Op::Nack { consumer, pick, delay_ms }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(consumer, pick)| Op::Reject { consumer, pick }),
        1 => (any::<u8>(), any::<u8>())
            .prop_map(|(consumer, pick)| Op::RejectInvalid { consumer, pick }),
        3 => (0..1500u16).prop_map(|ms| Op::AdvanceTime { ms }),
        1 => Just(Op::ExpireSweep),
        1 => any::<u8>().prop_map(|consumer| Op::Detach { consumer }),
        5 => Just(Op::Flush),
        3 => (any::<u8>(), prop::bool::weighted(0.8))
            .prop_map(|(pick, ok)| Op::FinishMove { pick, ok }),
        1 => any::<u8>().prop_map(|survivors| Op::Restart { survivors }),
    ]
}

/// A dead-letter or invalid move in progress.
#[derive(Debug, Clone)]
struct Move {
    /// The offsets being moved, out of flight meanwhile.
    offsets: Vec<u64>,
    /// The `Settle` outcome logged when the copies are stored.
    outcome: Outcome,
}

/// One partition with one subscription, its log, its cursor, and the reference model.
struct Harness {
    /// The channel settings of this case.
    settings: Settings,
    /// Captured once; the simulated clock is `base + clock`.
    base: Instant,
    clock: Duration,
    /// The cursor under test.
    cursor: Cursor,
    /// Every logged command, in log order.
    log: Vec<Command>,
    /// Commands `log[..applied]` are durable and applied.
    applied: usize,
    /// The model, indexed by offset; its length is the published end.
    messages: Vec<Message>,
    /// Dead-letter and invalid moves in progress (the partition's `moves`).
    moves: Vec<Move>,
}

impl Harness {
    fn new(settings: Settings) -> Self {
        Self {
            settings,
            base: Instant::now(),
            clock: Duration::ZERO,
            cursor: Cursor::new(0),
            log: Vec::new(),
            applied: 0,
            messages: Vec::new(),
            moves: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.base + self.clock
    }

    fn end(&self) -> u64 {
        self.messages.len() as u64
    }

    fn key(&self, consumer: u8) -> ConsumerKey {
        ConsumerKey::from(consumer % self.settings.consumers) + 1
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Publish { n, ttl_ms } => self.publish(n, ttl_ms),
            Op::Deliver { consumer, max } => self.deliver(self.key(consumer), max),
            Op::Ack { consumer, pick } => self.ack(self.key(consumer), pick),
            Op::Nack {
                consumer,
                pick,
                delay_ms,
            } => {
                let delay = Duration::from_millis(delay_ms.into());
                self.nack(self.key(consumer), pick, delay);
            }
            Op::Reject { consumer, pick } => {
                self.reject(self.key(consumer), pick, Outcome::DeadLettered);
            }
            Op::RejectInvalid { consumer, pick } => {
                self.reject(self.key(consumer), pick, Outcome::Invalid);
            }
            Op::AdvanceTime { ms } => self.advance(Duration::from_millis(ms.into())),
            Op::ExpireSweep => self.sweep_expired(),
            Op::Detach { consumer } => self.detach(self.key(consumer)),
            Op::Flush => self.flush(),
            Op::FinishMove { pick, ok } => self.finish_move(pick, ok),
            Op::Restart { survivors } => self.restart(survivors),
        }
    }

    // ----- requests, as the partition handles them -----

    fn publish(&mut self, n: u8, ttl_ms: Option<u16>) {
        let expires_at = ttl_ms.map(|ms| self.now() + Duration::from_millis(ms.into()));
        for _ in 0..n {
            self.messages.push(Message {
                expires_at,
                outcomes: Vec::new(),
                returns: 0,
                place: Place::New,
            });
        }
    }

    /// One consumer's turn of `grant_round`, then the settling `dispatch` does after it.
    fn deliver(&mut self, key: ConsumerKey, max: u64) {
        let now = self.now();
        let expected = self.expected_grant(now, max);
        let deadline = now + LEASE;
        let grants = self.cursor.grant(key, max, self.end(), now, deadline);
        let granted = flatten(&grants);
        assert_eq!(
            granted, expected,
            "grant to {key} (max {max}): (offset, count) pairs"
        );
        for &(o, _) in &granted {
            self.message(o).place = Place::Held(key, deadline);
        }
        let limit = self.settings.max_deliveries;
        let doomed: Vec<u64> = granted
            .iter()
            .filter(|(_, count)| *count > limit)
            .map(|&(o, _)| o)
            .collect();
        self.take_held(key, &doomed);
        let expired: Vec<u64> = granted
            .iter()
            .filter(|&&(o, count)| count <= limit && self.is_expired(o, now))
            .map(|&(o, _)| o)
            .collect();
        self.take_held(key, &expired);
        if !expired.is_empty() {
            self.settle_expired(expired);
        }
        if !doomed.is_empty() {
            self.start_move(doomed, Outcome::DeadLettered);
        }
    }

    fn ack(&mut self, key: ConsumerKey, pick: u8) {
        if let Some(o) = self.pick_held(key, pick) {
            // In memory at once, as the partition does, then logged.
            self.cursor.apply_ack(o, o + 1);
            self.settle(o, Outcome::Acked);
            self.append(Command::Ack {
                subscription: SUB.into(),
                ranges: vec![(o, o + 1)],
            });
        }
    }

    fn nack(&mut self, key: ConsumerKey, pick: u8, delay: Duration) {
        if let Some(o) = self.pick_held(key, pick) {
            self.take_held(key, &[o]);
            self.return_offsets(vec![o], delay);
        }
    }

    fn reject(&mut self, key: ConsumerKey, pick: u8, outcome: Outcome) {
        let Some(o) = self.pick_held(key, pick) else {
            return;
        };
        self.take_held(key, &[o]);
        if outcome == Outcome::Invalid && !self.settings.invalid_channel {
            self.return_offsets(vec![o], Duration::ZERO);
        } else {
            self.start_move(vec![o], outcome);
        }
    }

    /// Time passes; the partition timer returns expired leases and sweeps expired heads.
    fn advance(&mut self, by: Duration) {
        self.clock += by;
        let now = self.now();
        let expected = self.held_where(|_, deadline| deadline <= now);
        let mut returned = self.cursor.take_expired(now);
        returned.sort_unstable();
        assert_eq!(returned, expected, "leases expired by {:?}", self.clock);
        self.take_out(&returned);
        self.return_offsets(returned, Duration::ZERO);
        self.sweep_expired();
    }

    /// `Partition::sweep_expired`: expired, unacked, not-held offsets from the ack floor on.
    fn sweep_expired(&mut self) {
        let active = self.messages.iter().any(|m| m.expires_at.is_some());
        if !active || self.settings.expired_to_dead_letter {
            return;
        }
        let now = self.now();
        let offsets: Vec<u64> = (self.cursor.ack_floor()..self.end())
            .filter(|&o| self.is_expired(o, now))
            .filter(|&o| !self.cursor.is_acked(o) && !self.cursor.is_held(o))
            .filter(|&o| !self.is_moving(o))
            .collect();
        if !offsets.is_empty() {
            self.drop_expired(offsets);
        }
    }

    fn detach(&mut self, key: ConsumerKey) {
        let expected = self.held_where(|holder, _| holder == key);
        let mut released = self.cursor.release(key);
        released.sort_unstable();
        assert_eq!(released, expected, "released from consumer {key}");
        self.take_out(&released);
        self.return_offsets(released, Duration::ZERO);
    }

    fn finish_move(&mut self, pick: u8, ok: bool) {
        if self.moves.is_empty() {
            return;
        }
        let m = self.moves.remove(usize::from(pick) % self.moves.len());
        if ok {
            self.append(Command::Settle {
                subscription: SUB.into(),
                offsets: m.offsets,
                outcome: m.outcome.settle_name().into(),
            });
        } else {
            self.return_offsets(m.offsets, RETRY_AFTER);
        }
    }

    /// Consumers leave, moves finish, time passes, and one consumer takes and acks whatever
    /// comes, until nothing is pending: no message is stuck where nobody can receive it.
    fn drain(&mut self) {
        for consumer in 0..self.settings.consumers {
            self.detach(self.key(consumer));
        }
        for _ in 0..8 {
            self.flush();
            while !self.moves.is_empty() {
                self.finish_move(0, true);
            }
            self.flush();
            self.advance(RETRY_AFTER * 2);
            self.deliver(1, u64::MAX);
            for _ in self.held_where(|holder, _| holder == 1) {
                self.ack(1, 0); // the first held offset not acked yet
            }
            self.flush();
            self.check();
            if self.messages.iter().all(Message::is_done) {
                return;
            }
        }
        panic!("messages left pending after draining: {:?}", self.messages);
    }

    // ----- the partition's internals -----

    fn settle_expired(&mut self, offsets: Vec<u64>) {
        if self.settings.expired_to_dead_letter {
            self.start_move(offsets, Outcome::DeadLettered);
        } else {
            self.drop_expired(offsets);
        }
    }

    /// Done in memory at once, and logged.
    fn drop_expired(&mut self, offsets: Vec<u64>) {
        for &o in &offsets {
            self.cursor.apply_ack(o, o + 1);
            self.settle(o, Outcome::Expired);
        }
        self.append(Command::Settle {
            subscription: SUB.into(),
            offsets,
            outcome: Outcome::Expired.settle_name().into(),
        });
    }

    fn start_move(&mut self, offsets: Vec<u64>, outcome: Outcome) {
        self.moves.push(Move { offsets, outcome });
    }

    fn return_offsets(&mut self, offsets: Vec<u64>, delay: Duration) {
        if offsets.is_empty() {
            return;
        }
        self.append(Command::Return {
            subscription: SUB.into(),
            offsets,
            delay_ms: delay.as_millis() as u64,
        });
    }

    fn append(&mut self, command: Command) {
        self.log.push(command);
    }

    /// Everything appended becomes durable and is applied, in log order.
    fn flush(&mut self) {
        let now = self.now();
        while self.applied < self.log.len() {
            let command = self.log[self.applied].clone();
            self.applied += 1;
            self.apply(&command, now);
        }
    }

    /// `Partition::apply`, on the cursor and on the model.
    fn apply(&mut self, command: &Command, now: Instant) {
        match command {
            Command::Ack { ranges, .. } => {
                for &(from, to) in ranges {
                    self.cursor.apply_ack(from, to);
                    for o in from..to {
                        self.settle(o, Outcome::Acked);
                    }
                }
            }
            Command::Settle {
                offsets, outcome, ..
            } => {
                for &o in offsets {
                    self.cursor.apply_ack(o, o + 1);
                    self.settle(o, Outcome::from_settle(outcome));
                }
            }
            Command::Return {
                offsets, delay_ms, ..
            } => {
                let ready_at = now + Duration::from_millis(*delay_ms);
                self.cursor.apply_return(offsets, ready_at, now);
                for &o in offsets {
                    self.model_return(o, ready_at);
                }
            }
            other => panic!("the harness never logs {other:?}"),
        }
    }

    /// A crash: the durable log and a prefix of what was being written survive; moves in
    /// progress and every consumer's deliveries are gone. The cursor and the model are rebuilt
    /// from the log, each command round-tripped through its control batch on the way.
    fn restart(&mut self, survivors: u8) {
        let unwritten = self.log.len() - self.applied;
        let kept = self.applied + usize::from(survivors) % (unwritten + 1);
        self.log.truncate(kept);
        self.moves.clear();
        for command in &mut self.log {
            let batch = command.to_batch();
            assert!(batch.is_control());
            let decoded = Command::from_batch(&batch).expect("a logged command decodes");
            assert_eq!(decoded, vec![command.clone()]);
            *command = decoded.into_iter().next().expect("one command");
        }
        self.cursor = Cursor::new(0);
        self.applied = 0;
        for m in &mut self.messages {
            m.outcomes.clear();
            m.returns = 0;
            m.place = Place::New;
        }
        self.flush();
        self.check_restarted();
    }

    // ----- the model -----

    fn message(&mut self, offset: u64) -> &mut Message {
        &mut self.messages[offset as usize]
    }

    fn is_expired(&self, offset: u64, now: Instant) -> bool {
        self.messages[offset as usize]
            .expires_at
            .is_some_and(|at| at <= now)
    }

    /// Being moved out: a dead-letter or invalid move is on its way, or its `Settle` is not
    /// applied yet (the partition's `moving`).
    fn is_moving(&self, offset: u64) -> bool {
        let settling = self.log[self.applied..].iter().any(|c| match c {
            Command::Settle {
                offsets, outcome, ..
            } => outcome != "expired" && offsets.contains(&offset),
            _ => false,
        });
        settling || self.moves.iter().any(|m| m.offsets.contains(&offset))
    }

    fn settle(&mut self, offset: u64, outcome: Outcome) {
        let m = self.message(offset);
        if !m.outcomes.contains(&outcome) {
            m.outcomes.push(outcome);
        }
        m.place = Place::Out;
    }

    fn model_return(&mut self, offset: u64, ready_at: Instant) {
        let m = self.message(offset);
        if m.is_done() {
            return;
        }
        m.returns += 1;
        if m.place != Place::New {
            m.place = Place::Waiting(ready_at);
        }
    }

    /// Takes offsets the model says `key` holds out of flight, checking the cursor agrees.
    fn take_held(&mut self, key: ConsumerKey, offsets: &[u64]) {
        let taken = self.cursor.take_held(key, offsets);
        assert_eq!(taken, offsets, "take_held by {key}");
        self.take_out(offsets);
    }

    fn take_out(&mut self, offsets: &[u64]) {
        for &o in offsets {
            self.message(o).place = Place::Out;
        }
    }

    fn pick_held(&self, key: ConsumerKey, pick: u8) -> Option<u64> {
        let held = self.held_where(|holder, _| holder == key);
        (!held.is_empty()).then(|| held[usize::from(pick) % held.len()])
    }

    fn held_where(&self, pick: impl Fn(ConsumerKey, Instant) -> bool) -> Vec<u64> {
        (0..self.end())
            .filter(|&o| match self.messages[o as usize].place {
                Place::Held(holder, deadline) => {
                    !self.messages[o as usize].is_done() && pick(holder, deadline)
                }
                _ => false,
            })
            .collect()
    }

    /// What a grant of `max` should hand out: due redeliveries lowest first, then new
    /// messages in offset order, each with delivery count 1 + its logged returns.
    fn expected_grant(&self, now: Instant, max: u64) -> Vec<(u64, u32)> {
        let pending = |o: &u64| !self.messages[*o as usize].is_done();
        let due = (0..self.end()).filter(pending).filter(
            |&o| matches!(self.messages[o as usize].place, Place::Waiting(at) if at <= now),
        );
        let new = (0..self.end())
            .filter(pending)
            .filter(|&o| self.messages[o as usize].place == Place::New);
        due.chain(new)
            .take(usize::try_from(max).unwrap_or(usize::MAX))
            .map(|o| (o, 1 + self.messages[o as usize].returns))
            .collect()
    }

    // ----- invariants -----

    /// After every step: each published offset is in exactly one state, and the cursor agrees.
    fn check(&self) {
        let mut pending = 0;
        for (o, m) in self.messages.iter().enumerate() {
            let o = o as u64;
            assert!(
                m.outcomes.len() <= 1,
                "offset {o} counted twice: {:?}",
                m.outcomes
            );
            assert_eq!(
                self.cursor.is_acked(o),
                m.is_done(),
                "offset {o} done: {m:?}"
            );
            match m.place {
                Place::Held(key, _) if !m.is_done() => {
                    assert_eq!(self.cursor.held_by(key, &[o]), vec![o], "{o} held by {key}");
                }
                _ => assert!(!self.cursor.is_held(o), "offset {o} in flight: {m:?}"),
            }
            if !m.is_done() {
                pending += 1;
                let count = self.cursor.delivery_count(o);
                assert_eq!(count, 1 + m.returns, "delivery count of {o}");
            }
        }
        assert_eq!(self.cursor.backlog(self.end()), pending, "backlog");
        let held = self.held_where(|_, _| true).len() as u64;
        assert_eq!(self.cursor.in_flight(), held, "in flight");
        let tally = self.tally();
        assert_eq!(tally.values().sum::<u64>() + pending, self.end(), "lost");
    }

    /// Settled messages by outcome.
    fn tally(&self) -> BTreeMap<Outcome, u64> {
        let mut tally = BTreeMap::new();
        for m in &self.messages {
            for &outcome in &m.outcomes {
                *tally.entry(outcome).or_insert(0) += 1;
            }
        }
        tally
    }

    /// After a restart every pending message goes out again, in offset order, with a delivery
    /// count of 1 + the `Return`s the log holds for it; nothing done goes out.
    fn check_restarted(&self) {
        let now = self.now();
        let mut probe = self.cursor.clone();
        let got = flatten(&probe.grant(PROBE, u64::MAX, self.end(), now, now + LEASE));
        let expected: Vec<(u64, u32)> = (0..self.end())
            .filter(|&o| !self.messages[o as usize].is_done())
            .map(|o| (o, 1 + self.logged_returns(o)))
            .collect();
        assert_eq!(got, expected, "redelivery after restart");
    }

    fn logged_returns(&self, offset: u64) -> u32 {
        let returns = self.log.iter().filter(|c| match c {
            Command::Return { offsets, .. } => offsets.contains(&offset),
            _ => false,
        });
        returns.count() as u32
    }
}

fn flatten(grants: &[Grant]) -> Vec<(u64, u32)> {
    grants
        .iter()
        .flat_map(|g| (g.start..g.end).map(move |o| (o, g.count)))
        .collect()
}

/// 128 cases unless `PROPTEST_CASES` says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn every_published_message_ends_in_exactly_one_outcome(
        settings in settings(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut harness = Harness::new(settings);
        for op in &ops {
            harness.step(op);
            harness.check();
        }
        harness.drain();
    }
}
