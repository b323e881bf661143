//! The broker's clock: where every decision about a message's time gets "now".
//!
//! Append timestamps, expiry (TTL and `max_age`), the dedupe window, retention by age, lease
//! deadlines and nack delays all read a [`Clock`], which travels from
//! [`BrokerConfig::clock`](crate::config::BrokerConfig::clock) through the registry to every
//! partition. A broker runs on [`SystemClock`]; tests run it on a [`ManualClock`] and move time
//! by hand, so nothing waits for real time to pass for a message to expire or a lease to run out.
//!
//! Timers that only decide *when* work is looked at, not what its outcome is (connection
//! timeouts, fsync intervals, how often gauges are set and retention looks for segments), stay
//! on real time.
//!
//! Why not tokio's paused time: the log completes writes on its own thread, and while a paused
//! runtime waits for such a write it advances time to the next timer, so time would jump by
//! amounts a test does not choose.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

/// Resolves when a clock has reached a deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of time. Both readings move together: [`Clock::now`] is monotonic time for leases
/// and delays, [`Clock::now_ms`] is wall-clock time for what is stored (append timestamps) and
/// measured against it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Monotonic time: lease deadlines and nack delays are measured on it.
    fn now(&self) -> Instant;

    /// Resolves once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Sleep;
}

/// Real time: the operating system's wall clock and tokio's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

/// Time that moves only when told to, for tests. Clones share one time.
///
/// ```
/// use std::time::Duration;
/// use sluice_broker::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::starting_at(1_000);
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_ms(), 3_000);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// Shared by every clone.
    inner: Arc<ManualTime>,
}

/// The state behind a [`ManualClock`].
#[derive(Debug)]
struct ManualTime {
    /// Wall-clock milliseconds at creation.
    start_ms: i64,
    /// Monotonic time at creation.
    base: Instant,
    /// How far the clock was moved since; its receivers wake whoever sleeps on the clock.
    elapsed: watch::Sender<Duration>,
}

impl ManualClock {
    /// A clock that starts at the current wall-clock time and then stands still.
    pub fn new() -> Self {
        Self::starting_at(SystemClock.now_ms())
    }

    /// A clock that starts at `start_ms` (milliseconds since the Unix epoch).
    pub fn starting_at(start_ms: i64) -> Self {
        let inner = ManualTime {
            start_ms,
            base: Instant::now(),
            elapsed: watch::Sender::new(Duration::ZERO),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Moves time forward by `by`, waking every partition whose timers became due.
    pub fn advance(&self, by: Duration) {
        self.inner.elapsed.send_modify(|elapsed| *elapsed += by);
    }

    /// How far the clock has been moved since it was made.
    pub fn elapsed(&self) -> Duration {
        *self.inner.elapsed.borrow()
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.inner.start_ms + self.elapsed().as_millis() as i64
    }

    fn now(&self) -> Instant {
        self.inner.base + self.elapsed()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let base = self.inner.base;
        let mut elapsed = self.inner.elapsed.subscribe();
        Box::pin(async move {
            // Like a tokio timer, spend a unit of the task's cooperative budget, so a loop that
            // keeps sleeping until a past deadline yields now and then instead of holding its
            // worker thread (and hanging the test) for good.
            tokio::task::coop::consume_budget().await;
            while base + *elapsed.borrow_and_update() < deadline {
                if elapsed.changed().await.is_err() {
                    // Every handle is gone: time never moves again.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

/// A clock as the broker carries it: cheap to clone, the system clock by default. Two handles
/// are equal when they share one clock.
#[derive(Clone)]
pub struct SharedClock(Arc<dyn Clock>);

impl SharedClock {
    /// Wraps `clock`.
    pub fn new(clock: impl Clock + 'static) -> Self {
        Self(Arc::new(clock))
    }

    /// The system clock (one instance per process, so default configs compare equal).
    pub fn system() -> Self {
        static SYSTEM: LazyLock<SharedClock> = LazyLock::new(|| SharedClock::new(SystemClock));
        SYSTEM.clone()
    }
}

impl Default for SharedClock {
    fn default() -> Self {
        Self::system()
    }
}

impl Deref for SharedClock {
    type Target = dyn Clock;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for SharedClock {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl From<ManualClock> for SharedClock {
    fn from(clock: ManualClock) -> Self {
        Self::new(clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_readings_of_a_manual_clock_move_together_and_only_when_told() {
        let clock = ManualClock::starting_at(5_000);
        let at = clock.now();
        assert_eq!(clock.now_ms(), 5_000);
        clock.clone().advance(Duration::from_millis(1_500));
        assert_eq!(clock.now_ms(), 6_500);
        assert_eq!(clock.now() - at, Duration::from_millis(1_500));
    }

    #[tokio::test]
    async fn sleeping_on_a_manual_clock_ends_when_it_is_moved_past_the_deadline() {
        let clock = ManualClock::new();
        let mut sleep = clock.sleep_until(clock.now() + Duration::from_secs(10));
        assert!(futures::poll!(&mut sleep).is_pending());
        clock.advance(Duration::from_secs(9));
        assert!(
            futures::poll!(&mut sleep).is_pending(),
            "woke before the deadline"
        );
        clock.advance(Duration::from_secs(1));
        assert!(
            futures::poll!(&mut sleep).is_ready(),
            "still asleep at the deadline"
        );
    }

    #[test]
    fn sleeping_past_a_deadline_in_a_loop_lets_other_tasks_run() {
        let (tx, rx) = std::sync::mpsc::channel();
        // On its own thread, so a runtime that never gets its thread back fails the test
        // instead of hanging it.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {
                let clock = ManualClock::new();
                let past = clock.now();
                tokio::spawn(async move {
                    loop {
                        clock.sleep_until(past).await;
                    }
                });
                let other = tokio::spawn(async {});
                other.await.unwrap();
            });
            let _ = tx.send(());
        });
        let ran = rx.recv_timeout(Duration::from_secs(10));
        assert!(ran.is_ok(), "the spinning task never yielded");
    }

    #[test]
    fn default_handles_share_the_system_clock() {
        assert_eq!(SharedClock::default(), SharedClock::system());
        let manual = SharedClock::from(ManualClock::new());
        assert_ne!(manual, SharedClock::system());
        assert_eq!(manual.clone(), manual);
    }
}
