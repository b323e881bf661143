//! The harness the end-to-end tests share: a broker running in the test process and a way to
//! run the real `sluicectl` binary against it, every wait bounded by [`PATIENCE`].
//!
//! The broker runs on a manual clock: messages expire (and leases run out) only when a test
//! moves [`Broker::clock`] past them.
//!
//! Each test file uses a subset of it.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use sluice_broker::clock::ManualClock;
use sluice_broker::config::BrokerConfig;
use sluice_broker::server::Server;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest any one `sluicectl` run or awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A broker running inside the test process, on its own runtime worker threads.
pub struct Broker {
    /// Address to pass as `--broker`.
    pub addr: String,
    /// The broker's time, which moves only when advanced.
    pub clock: ManualClock,
    /// Stops the accept loop.
    shutdown: CancellationToken,
    /// The accept loop, awaited on stop so partitions close before the directory goes.
    task: JoinHandle<()>,
    /// Data directory; removed on drop, after the broker stopped.
    _dir: TempDir,
}

impl Broker {
    /// Starts a broker on an ephemeral port of 127.0.0.1 with a fresh data directory and a
    /// manual clock.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new();
        let config = BrokerConfig {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            clock: clock.clone().into(),
            ..BrokerConfig::default()
        };
        let server = Server::bind(&config).await.expect("broker starts");
        let addr = server.local_addr().to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        Self {
            addr,
            clock,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// Stops the accept loop and waits (at most [`PATIENCE`]) for it to end.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("broker shuts down in time")
            .unwrap();
    }

    /// Runs `sluicectl --broker ADDR args...` with `input` on standard input.
    pub async fn run(&self, args: &[&str], input: Option<&str>) -> Run {
        sluicectl(&self.addr, args, input).await
    }
}

/// What one `sluicectl` run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    /// Standard output, whole.
    pub stdout: String,
    /// Standard error, whole: where the one-line error contract is checked.
    pub stderr: String,
    /// Exit status; `None` if killed by a signal.
    pub code: Option<i32>,
}

impl Run {
    /// Asserts success with an empty standard error; returns standard output.
    pub fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "sluicectl failed: {self:?}");
        assert_eq!(
            self.stderr, "",
            "sluicectl succeeded but wrote to stderr: {self:?}"
        );
        self.stdout
    }

    /// Asserts the error contract: non-zero exit, nothing on stdout, one `error:` line on
    /// stderr. Returns that line.
    pub fn failed(self) -> String {
        assert_ne!(self.code, Some(0), "sluicectl should have failed: {self:?}");
        assert!(
            self.code.is_some(),
            "sluicectl died from a signal: {self:?}"
        );
        assert_eq!(self.stdout, "", "a failure printed to stdout: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "stderr is not one line: {self:?}");
        assert!(
            self.stderr.ends_with('\n'),
            "stderr line is unterminated: {self:?}"
        );
        assert!(
            lines[0].starts_with("error: "),
            "unexpected stderr: {self:?}"
        );
        lines[0].to_owned()
    }
}

/// Runs the real binary, `sluicectl --broker ADDR args...`, to completion (or fails the test
/// after [`PATIENCE`]). Standard input is `input`, or empty if `None`; `SLUICE_BROKER` is unset.
pub async fn sluicectl(addr: &str, args: &[&str], input: Option<&str>) -> Run {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluicectl"))
        .arg("--broker")
        .arg(addr)
        .args(args)
        .env_remove("SLUICE_BROKER")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sluicectl starts");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        // Dropping stdin closes it: end of input.
    }
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("sluicectl {args:?} did not finish in time"))
        .unwrap();
    Run {
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        code: output.status.code(),
    }
}
