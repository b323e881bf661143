//! Broker processes started by the harness: each under its own temporary data directory, bound
//! to 127.0.0.1 only, and stopped by its own pid when its [`Server`] is dropped (also when the
//! run fails or panics). Also reads a server's CPU time and peak RSS from `/proc`.
//!
//! This module knows how to start each system; it does not know how to talk to it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tempfile::TempDir;

/// A running broker (and helper processes such as epmd), killed on drop.
pub struct Server {
    /// What it is, for messages.
    pub name: String,
    /// The address clients connect to.
    pub addr: String,
    /// The broker process itself, then helpers; stopped in reverse order.
    children: Vec<Child>,
    /// Data and logs; removed after the processes are gone.
    dir: TempDir,
}

impl Server {
    /// The broker's pid.
    pub fn pid(&self) -> u32 {
        self.children[0].id()
    }

    /// CPU seconds (user + system) of the broker and its descendants so far.
    pub fn cpu_seconds(&self) -> f64 {
        tree(self.pid()).iter().map(|&p| cpu_of(p)).sum()
    }

    /// Peak resident set size in bytes since the last [`Server::reset_peak_rss`], summed over
    /// the broker's process tree.
    pub fn peak_rss(&self) -> u64 {
        tree(self.pid())
            .iter()
            .map(|&p| status_kb(p, "VmHWM:") * 1024)
            .sum()
    }

    /// Restarts peak-RSS accounting (`/proc/<pid>/clear_refs` ← 5), so each cell has its own.
    pub fn reset_peak_rss(&self) {
        for pid in tree(self.pid()) {
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
    }

    /// Stops every process: SIGTERM, a grace period, then SIGKILL.
    fn stop(&mut self) {
        for child in self.children.iter_mut().rev() {
            if matches!(child.try_wait(), Ok(None)) {
                // SAFETY: kill(2) on the pid of a child we own and have not reaped yet.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts a Sluice broker with the given fsync policy (`always` or `never`).
pub async fn sluice(bin: &Path, fsync: &str) -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new().prefix("peers-sluice-").tempdir()?;
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{}", free_port()?))
        .env("SLUICE_CHANNEL_DEFAULTS__FSYNC", fsync);
    let child = spawn(&mut cmd, dir.path(), "sluice")?;
    ready(format!("sluice-{fsync}"), port, vec![child], dir, 30).await
}

/// Starts `nats-server` with JetStream (file storage under the temporary directory).
pub async fn nats() -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new().prefix("peers-nats-").tempdir()?;
    let port = free_port()?;
    let mut cmd = Command::new("nats-server");
    cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path().join("jetstream"));
    let child = spawn(&mut cmd, dir.path(), "nats")?;
    ready("nats".into(), port, vec![child], dir, 30).await
}

/// Starts RabbitMQ with its own epmd: AMQP, epmd and Erlang distribution on 127.0.0.1, a
/// unique node name, database and logs under the temporary directory. With `streams`, also the
/// `rabbitmq_stream` plugin, its listener on 127.0.0.1 (advertised as 127.0.0.1, so clients
/// that follow the stream's leader stay on loopback), and the returned address is the stream
/// listener's; without, no plugins and the address is AMQP's.
pub async fn rabbitmq(streams: bool) -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new()
        .prefix("peers-rabbitmq-")
        .tempdir()?;
    let (port, epmd_port, dist_port) = (free_port()?, free_port()?, free_port()?);
    let mut epmd = Command::new("epmd");
    epmd.args(["-address", "127.0.0.1", "-port", &epmd_port.to_string()]);
    let epmd = spawn(&mut epmd, dir.path(), "epmd")?;
    let stream_port = if streams { Some(free_port()?) } else { None };
    write_rabbitmq_config(dir.path(), stream_port)?;
    let mut cmd = Command::new(rabbitmq_script()?);
    cmd.env("HOME", dir.path())
        .env(
            "RABBITMQ_NODENAME",
            format!("sluicepeers{}@localhost", std::process::id()),
        )
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", dist_port.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .env(
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
            "-kernel inet_dist_use_interface {127,0,0,1}",
        )
        .env("RABBITMQ_MNESIA_BASE", dir.path().join("mnesia"))
        .env("RABBITMQ_LOG_BASE", dir.path().join("log"))
        .env(
            "RABBITMQ_ENABLED_PLUGINS_FILE",
            dir.path().join("enabled_plugins"),
        )
        .env("RABBITMQ_CONFIG_FILE", dir.path().join("rabbitmq.conf"))
        .env(
            "RABBITMQ_ADVANCED_CONFIG_FILE",
            dir.path().join("advanced.config"),
        );
    let child = spawn(&mut cmd, dir.path(), "rabbitmq")?;
    let name = if streams {
        "rabbitmq-stream"
    } else {
        "rabbitmq"
    };
    let listen = stream_port.unwrap_or(port);
    ready(name.into(), listen, vec![child, epmd], dir, 120).await
}

/// `enabled_plugins` and `rabbitmq.conf`: no plugins, or the stream plugin listening on
/// `127.0.0.1:<stream_port>`.
fn write_rabbitmq_config(dir: &Path, stream_port: Option<u16>) -> anyhow::Result<()> {
    let (plugins, conf) = match stream_port {
        None => ("[].\n".to_owned(), String::new()),
        Some(p) => (
            "[rabbitmq_stream].\n".to_owned(),
            format!(
                "stream.listeners.tcp.1 = 127.0.0.1:{p}\n\
                 stream.advertised_host = 127.0.0.1\n\
                 stream.advertised_port = {p}\n"
            ),
        ),
    };
    std::fs::write(dir.join("enabled_plugins"), plugins)?;
    std::fs::write(dir.join("rabbitmq.conf"), conf)?;
    Ok(())
}

/// The versioned `sbin/rabbitmq-server` script (the Debian wrapper would switch user).
fn rabbitmq_script() -> anyhow::Result<PathBuf> {
    let lib = Path::new("/usr/lib/rabbitmq/lib");
    for entry in std::fs::read_dir(lib).context("RabbitMQ is not installed")? {
        let script = entry?.path().join("sbin/rabbitmq-server");
        if script.exists() {
            return Ok(script);
        }
    }
    bail!(
        "no rabbitmq_server-*/sbin/rabbitmq-server under {}",
        lib.display()
    )
}

/// Spawns with stdout and stderr in `<dir>/<name>.log`.
fn spawn(cmd: &mut Command, dir: &Path, name: &str) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))
}

/// Waits until the port accepts connections; a server that exits or never listens is an error
/// (and is stopped, as the returned guard would be).
async fn ready(
    name: String,
    port: u16,
    children: Vec<Child>,
    dir: TempDir,
    timeout_secs: u64,
) -> anyhow::Result<Server> {
    let addr = format!("127.0.0.1:{port}");
    let mut server = Server {
        name,
        addr,
        children,
        dir,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        if tokio::net::TcpStream::connect(&server.addr).await.is_ok() {
            return Ok(server);
        }
        if let Ok(Some(status)) = server.children[0].try_wait() {
            let logs = keep(&mut server);
            bail!("{} exited ({status}); logs in {logs}", server.name);
        }
        if tokio::time::Instant::now() >= deadline {
            let logs = keep(&mut server);
            bail!(
                "{} did not listen within {timeout_secs} s; logs in {logs}",
                server.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the processes and keeps the directory for a post-mortem; returns its path.
fn keep(server: &mut Server) -> String {
    server.stop();
    let path = server.dir.path().to_path_buf();
    let _ = std::fs::create_dir_all("/tmp/peers-failed");
    let target = Path::new("/tmp/peers-failed").join(path.file_name().unwrap_or_default());
    let _ = std::fs::rename(&path, &target);
    target.display().to_string()
}

/// `pid` and all its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        let children = format!("/proc/{parent}/task/{parent}/children");
        if let Ok(text) = std::fs::read_to_string(children) {
            all.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    all
}

/// utime + stime of one process in seconds.
fn cpu_of(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
