//! Shared helpers for end-to-end tests: brokers in-process or as child processes, and waiting
//! on conditions with a timeout instead of sleeping.
//!
//! A test about time (expiry, leases, nack delays, retention by age) starts its broker on a
//! [`ManualClock`] ([`TestBroker::start_on`]) and advances it; it never waits for real time to
//! pass.
#![allow(dead_code)] // each test file uses its own subset

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use sluice_broker::clock::ManualClock;
use sluice_broker::config::BrokerConfig;
use sluice_broker::server::Server;
use sluice_client::{Consumer, Delivery};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest any condition in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A broker running inside the test process.
pub struct TestBroker {
    /// Address to connect to.
    pub addr: String,
    /// Its data directory.
    pub dir: PathBuf,
    /// What it was started with, to start it again.
    config: BrokerConfig,
    /// Stops it.
    shutdown: CancellationToken,
    /// Its accept loop.
    task: JoinHandle<()>,
}

/// A config for a broker on an ephemeral port with data in `dir`.
pub fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..BrokerConfig::default()
    }
}

/// As [`config`], with time taken from `clock`.
pub fn config_on(dir: &Path, clock: &ManualClock) -> BrokerConfig {
    BrokerConfig {
        clock: clock.clone().into(),
        ..config(dir)
    }
}

impl TestBroker {
    /// Starts a broker on an ephemeral port with data in `dir`.
    pub async fn start(dir: &Path) -> Self {
        Self::start_with(config(dir)).await
    }

    /// Starts a broker on an ephemeral port with data in `dir`, whose time moves only when
    /// `clock` is advanced.
    pub async fn start_on(dir: &Path, clock: &ManualClock) -> Self {
        Self::start_with(config_on(dir, clock)).await
    }

    /// Starts a broker with `config`.
    pub async fn start_with(config: BrokerConfig) -> Self {
        let server = Server::bind(&config).await.expect("broker starts");
        let addr = server.local_addr().to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        Self {
            addr,
            dir: config.data_dir.clone(),
            config,
            shutdown,
            task,
        }
    }

    /// Shuts down gracefully and starts again with the same data, clock and settings, on a new
    /// port.
    pub async fn restart(self) -> Self {
        let config = self.config.clone();
        self.stop().await;
        Self::start_with(config).await
    }

    /// Shuts down gracefully and waits until every partition is closed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("shutdown in time")
            .unwrap();
    }
}

/// Environment variable that turns a test binary into a child broker.
pub const CHILD_ENV: &str = "SLUICE_TEST_CHILD_BROKER_DIR";
/// Environment variable setting the child broker's `channel_defaults.segment_bytes`.
pub const CHILD_SEGMENT_BYTES_ENV: &str = "SLUICE_TEST_CHILD_SEGMENT_BYTES";

/// A broker in a child process (this test binary re-executed), for kill -9.
pub struct ChildBroker {
    /// The process.
    child: Child,
    /// Address to connect to.
    pub addr: String,
}

impl ChildBroker {
    /// Runs `entry` (the name of an ignored test in this binary that calls
    /// [`child_broker_main`]) in a child process with data in `dir`.
    pub fn spawn(entry: &str, dir: &Path) -> Self {
        Self::spawn_with_env(entry, dir, &[])
    }

    /// As [`ChildBroker::spawn`], with extra environment variables (failpoints).
    pub fn spawn_with_env(entry: &str, dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .envs(env.iter().copied())
            .args([
                "--exact",
                entry,
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                line.split_once("listening ")
                    .map(|(_, addr)| addr.trim().to_owned())
            })
            .expect("child prints its address");
        // Keep reading, so the child's last words (the harness's result line) never hit a
        // closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, addr }
    }

    /// SIGTERM: the child runs the broker's graceful shutdown and exits.
    pub fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    /// Waits up to `bound` for the process to exit; its exit code, `None` if killed by a
    /// signal. Fails the test when it is still running after `bound`.
    pub fn wait_exit_code(mut self, bound: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the broker did not exit within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to [`PATIENCE`]) for the process to end by itself, e.g. at a failpoint.
    pub fn wait_for_exit(mut self) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the broker did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // Child::kill sends SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Defines, in a test file, the ignored test that [`ChildBroker`] re-executes to run a broker,
/// and `ENTRY`, its name. One line per test file instead of a copied function.
#[macro_export]
macro_rules! child_broker_entry {
    () => {
        const ENTRY: &str = "child_broker_entry_point";

        #[test]
        #[ignore = "entry point of the child broker process, run by the other tests here"]
        fn child_broker_entry_point() {
            common::child_broker_main();
        }
    };
}

/// The body of the child-broker entry test: runs a broker until killed, if asked to.
pub fn child_broker_main() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut config = config(Path::new(&dir));
    if let Some(bytes) = std::env::var_os(CHILD_SEGMENT_BYTES_ENV) {
        let bytes = bytes.to_string_lossy().parse().expect("segment bytes");
        config.channel_defaults.segment_bytes = bytes;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Server::bind(&config).await.unwrap();
        // SIGTERM runs the graceful shutdown, as the `sluice` binary does.
        let shutdown = CancellationToken::new();
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            terminate.recv().await;
            on_signal.cancel();
        });
        // On a line of its own: the test harness prints its own words before it.
        println!("\nlistening {}", server.local_addr());
        server.run(shutdown).await;
    });
}

/// Waits for `condition` to hold, polling; fails the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next delivery, failing the test if none comes within [`PATIENCE`].
pub async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("stream open")
        .expect("delivery ok")
}

/// The payload as text.
pub fn text(d: &Delivery) -> String {
    String::from_utf8_lossy(d.payload()).into_owned()
}

/// Subscribes once the dead-letter queue exists (the first dead letter creates it).
pub async fn subscribe_when_ready(
    client: &sluice_client::Client,
    channel: &str,
) -> sluice_client::Consumer {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match client.consumer(channel).subscribe().await {
            Ok(consumer) => return consumer,
            Err(e) if e.code() == Some(sluice_client::ErrorCode::UnknownChannel) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{channel} never appeared"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("subscribe failed: {e}"),
        }
    }
}
