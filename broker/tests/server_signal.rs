//! The `sluice` binary as operators run it: flags, config errors, and SIGTERM shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sluice_protocol::request::Handshake;
use sluice_protocol::{Frame, FrameDecoder, Request};

const PATIENCE: Duration = Duration::from_secs(20);

fn sluice(dir: &tempfile::TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .env_remove("SLUICE_LISTEN")
        .stdin(Stdio::null());
    command
}

/// Reads the broker's log until it reports its listen address.
fn listen_addr(child: &mut Child) -> SocketAddr {
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("sluice listening"))
        .expect("a startup line");
    // Keep draining the log so the broker never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let addr = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("listen="))
        .expect("listen= in the startup line");
    addr.parse().expect("an address")
}

fn handshake_with(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let request = Request::Handshake(Handshake {
        min_version: 1,
        max_version: 1,
        client: "signal test".into(),
        auth: None,
    });
    let mut bytes = BytesMut::new();
    Frame::request(request.opcode(), 1, request.encode_body().0).encode(&mut bytes);
    stream.write_all(&bytes).unwrap();
    let mut answer = BytesMut::new();
    while FrameDecoder::default().check(&answer).unwrap().is_none() {
        let mut chunk = [0u8; 256];
        let n = stream.read(&mut chunk).expect("handshake answer");
        assert!(n > 0, "closed before answering the handshake");
        answer.extend_from_slice(&chunk[..n]);
    }
    stream
}

/// Polls until the process exits, failing after [`PATIENCE`].
fn wait_for_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigterm_shuts_the_broker_down_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sluice(&dir)
        .args(["--data-dir", "data", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice starts");
    let addr = listen_addr(&mut child);
    let _connected = handshake_with(addr);
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) with a pid we spawned and a valid signal number has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_for_exit(&mut child);
    assert!(status.success(), "{status:?}");
}

#[test]
fn print_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice(&dir)
        .args(["--print-config", "--listen", "127.0.0.1:7999"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.contains("listen = \"127.0.0.1:7999\""), "{printed}");
}

#[test]
fn a_missing_config_file_is_one_line_on_stderr_and_exit_code_two() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice(&dir)
        .args(["--config", "nope.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("sluice: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
