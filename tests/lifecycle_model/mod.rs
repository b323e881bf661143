//! The model of the message-lifecycle property test: where every message of a case is, and
//! what the broker must do next, from the semantics in DESIGN §2 and the README. Pure logic: no
//! broker, no clock but its own milliseconds.

/// Lease of every delivery, in clock milliseconds.
pub const LEASE_MS: i64 = 10_000;

/// The queue's settings of a case.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A delivery count above this dead-letters the message.
    pub max_deliveries: u32,
    /// Whether expired messages are dead-lettered rather than dropped.
    pub expired_to_dead_letter: bool,
    /// The channel's `max_age` in seconds.
    pub max_age_s: Option<u8>,
}

/// How a message's life ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    Acked,
    /// In the dead-letter queue with this `sluice-death-reason`.
    Dead(&'static str),
    /// In the invalid channel: broke the contract at publish, or a consumer rejected it.
    Invalid {
        at_publish: bool,
    },
    /// Dropped when it expired.
    Expired,
    /// Acked while its lease ran out and it expired: one or the other, never both.
    AckedOrExpired,
}

/// Where a message is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Not delivered since the broker started: goes out in offset order, after redeliveries.
    New,
    /// Returned; goes out again, lowest offset first, from `at` on.
    Ready {
        at: i64,
    },
    /// Out with a consumer until `deadline`.
    Held {
        consumer: usize,
        deadline: i64,
    },
    Done(End),
}

/// The model of one published message.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Its offset in the queue (`None`: broke the contract, never stored there).
    pub offset: Option<u64>,
    /// When it expires, by TTL or `max_age`.
    pub expires_at: Option<i64>,
    /// Logged returns; its next delivery count is one more.
    pub returns: u32,
    /// Where it is now.
    pub state: State,
}

/// What a grant does with one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fate {
    Deliver { count: u32 },
    Expire,
    TooManyDeliveries,
}

/// What the broker should report, as the sync compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct View {
    /// Messages stored in the queue.
    pub stored: u64,
    /// Not settled yet, in flight included.
    pub backlog: u64,
    /// Out with consumers.
    pub in_flight: u64,
    /// Messages in the dead-letter queue.
    pub dead_letters: u64,
    /// Messages in the invalid channel.
    pub invalid: u64,
}

/// Every message of a case, and the clock as the broker sees it.
#[derive(Debug)]
pub struct Model {
    /// The queue's settings.
    pub settings: Settings,
    /// Clock milliseconds since the case started.
    pub now: i64,
    /// By message number (the `K` of its payload).
    pub msgs: Vec<Msg>,
    /// Messages stored in the queue.
    pub stored: u64,
}

impl Model {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            now: 0,
            msgs: Vec::new(),
            stored: 0,
        }
    }

    pub fn is_pending(&self, k: usize) -> bool {
        !matches!(self.msgs[k].state, State::Done(_))
    }

    pub fn is_expired(&self, k: usize) -> bool {
        self.msgs[k].expires_at.is_some_and(|at| at <= self.now)
    }

    pub fn holds(&self, k: usize, consumer: usize) -> bool {
        matches!(self.msgs[k].state, State::Held { consumer: c, .. } if c == consumer)
    }

    pub fn publish(&mut self, ttl_ms: Option<i64>, valid: bool) -> usize {
        let max_age = self.settings.max_age_s.map(|s| i64::from(s) * 1000);
        let expires_at = [ttl_ms, max_age]
            .into_iter()
            .flatten()
            .map(|d| self.now + d)
            .min();
        let (offset, state) = if valid {
            self.stored += 1;
            (Some(self.stored - 1), State::New)
        } else {
            (None, State::Done(End::Invalid { at_publish: true }))
        };
        self.msgs.push(Msg {
            offset,
            expires_at,
            returns: 0,
            state,
        });
        self.msgs.len() - 1
    }

    /// What dispatch looks at, in order: due redeliveries lowest offset first, then new
    /// messages in offset order.
    fn candidates(&self) -> Vec<usize> {
        let mut ready = Vec::new();
        let mut new = Vec::new();
        for (k, m) in self.msgs.iter().enumerate() {
            match m.state {
                State::Ready { at } if at <= self.now => ready.push((m.offset, k)),
                State::New => new.push((m.offset, k)),
                _ => {}
            }
        }
        ready.sort_unstable();
        new.sort_unstable();
        ready.into_iter().chain(new).map(|(_, k)| k).collect()
    }

    /// A grant of `credit` deliveries: candidates in order until that many are delivered; an
    /// expired one is settled as expired, one past `max_deliveries` is dead-lettered.
    pub fn plan(&self, credit: usize) -> Vec<(usize, Fate)> {
        let mut plan = Vec::new();
        let mut delivered = 0;
        for k in self.candidates() {
            if delivered == credit {
                break;
            }
            let count = 1 + self.msgs[k].returns;
            let fate = if self.is_expired(k) {
                Fate::Expire
            } else if count > self.settings.max_deliveries {
                Fate::TooManyDeliveries
            } else {
                delivered += 1;
                Fate::Deliver { count }
            };
            plan.push((k, fate));
        }
        plan
    }

    pub fn grant(&mut self, plan: &[(usize, Fate)], consumer: usize) {
        let deadline = self.now + LEASE_MS;
        let expired = if self.settings.expired_to_dead_letter {
            End::Dead("expired")
        } else {
            End::Expired
        };
        for &(k, fate) in plan {
            self.msgs[k].state = match fate {
                Fate::Deliver { .. } => State::Held { consumer, deadline },
                Fate::Expire => State::Done(expired),
                Fate::TooManyDeliveries => State::Done(End::Dead("max-deliveries")),
            };
        }
    }

    /// An ack settles a pending message, whoever holds it (a late ack included).
    pub fn ack(&mut self, k: usize) {
        if self.is_pending(k) {
            self.msgs[k].state = State::Done(End::Acked);
        }
    }

    pub fn nack(&mut self, k: usize, consumer: usize, delay_ms: i64) {
        if self.holds(k, consumer) {
            self.give_back(k, self.now + delay_ms);
            self.sweep();
        }
    }

    pub fn reject(&mut self, k: usize, consumer: usize, invalid: bool) {
        if self.holds(k, consumer) {
            let end = if invalid {
                End::Invalid { at_publish: false }
            } else {
                End::Dead("rejected")
            };
            self.msgs[k].state = State::Done(end);
        }
    }

    pub fn close(&mut self, consumer: usize) {
        for k in 0..self.msgs.len() {
            if self.holds(k, consumer) {
                self.give_back(k, self.now);
            }
        }
        self.sweep();
    }

    /// Time passes; `racing` is a message whose ack was sent as it did.
    pub fn advance(&mut self, ms: i64, racing: Option<usize>) {
        self.now += ms;
        if let Some(k) = racing.filter(|&k| self.is_pending(k)) {
            // Whether the sweep could drop it before the ack arrives: expired, and not held
            // once the leases that ran out are taken back.
            let unheld = match self.msgs[k].state {
                State::Held { deadline, .. } => deadline <= self.now,
                _ => true,
            };
            let drops = !self.settings.expired_to_dead_letter && self.is_expired(k) && unheld;
            let end = if drops {
                End::AckedOrExpired
            } else {
                End::Acked
            };
            self.msgs[k].state = State::Done(end);
        }
        for k in 0..self.msgs.len() {
            if let State::Held { deadline, .. } = self.msgs[k].state {
                if deadline <= self.now {
                    self.give_back(k, self.now);
                }
            }
        }
        self.sweep();
    }

    /// A graceful restart: consumers detach (what they hold returns), then everything pending
    /// goes out again in offset order; nack delays are forgotten.
    pub fn restart(&mut self) {
        for m in &mut self.msgs {
            match m.state {
                State::Held { .. } => {
                    m.returns += 1;
                    m.state = State::New;
                }
                State::Ready { .. } => m.state = State::New,
                State::New | State::Done(_) => {}
            }
        }
        self.sweep();
    }

    fn give_back(&mut self, k: usize, at: i64) {
        self.msgs[k].returns += 1;
        self.msgs[k].state = State::Ready { at };
    }

    /// The sweeper: expired messages nobody holds are dropped at once, unless the channel
    /// dead-letters them (dispatch does that when it reaches them).
    fn sweep(&mut self) {
        if self.settings.expired_to_dead_letter {
            return;
        }
        for k in 0..self.msgs.len() {
            let unheld = matches!(self.msgs[k].state, State::New | State::Ready { .. });
            if unheld && self.is_expired(k) {
                self.msgs[k].state = State::Done(End::Expired);
            }
        }
    }

    fn count(&self, pick: impl Fn(&State) -> bool) -> u64 {
        self.msgs.iter().filter(|m| pick(&m.state)).count() as u64
    }

    pub fn ended(&self, end: End) -> u64 {
        self.count(|s| *s == State::Done(end))
    }

    pub fn view(&self) -> View {
        View {
            stored: self.stored,
            backlog: self.count(|s| !matches!(s, State::Done(_))),
            in_flight: self.count(|s| matches!(s, State::Held { .. })),
            dead_letters: self.count(|s| matches!(s, State::Done(End::Dead(_)))),
            invalid: self.count(|s| matches!(s, State::Done(End::Invalid { .. }))),
        }
    }

    /// The pending messages, for failure messages.
    pub fn describe_pending(&self) -> String {
        let lines: Vec<String> = (0..self.msgs.len())
            .filter(|&k| self.is_pending(k))
            .map(|k| {
                let m = &self.msgs[k];
                let expires = m.expires_at.map(|at| at - self.now);
                format!(
                    "  #{k} offset {:?} {:?} returns {} expires in {expires:?}",
                    m.offset, m.state, m.returns
                )
            })
            .collect();
        format!("now {} ms, pending:\n{}", self.now, lines.join("\n"))
    }
}
