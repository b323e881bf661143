//! SIGKILL crash test of the partition log.
//!
//! The test binary re-executes itself as a child that appends to a log under `fsync = always`
//! and prints each acknowledged (durable) offset. The parent kills it with SIGKILL at random
//! moments, reopens the log and checks that every printed offset is present and intact and
//! that a new append works. Default: 200 kills; set `SLUICE_CRASH_KILLS` for more.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;
use sluice_broker::log::{Log, LogConfig};
use sluice_protocol::{BatchBuilder, RecordBatch};

/// Env var that turns the test binary into the appending child; holds the log directory.
const CHILD_ENV: &str = "SLUICE_CRASH_CHILD_DIR";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

/// The payload for the batch at `offset`: recognisable, so damage or misplacement shows.
fn payload(offset: u64, len: usize) -> Vec<u8> {
    offset
        .to_le_bytes()
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn batch_at(offset: u64, len: usize) -> RecordBatch {
    let mut b = BatchBuilder::messages();
    b.push_raw(&payload(offset, len));
    b.finish().expect("one record")
}

/// Child: appends groups of batches forever, printing `offset` once each is durable.
fn run_child(dir: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut log = Log::open(dir, config()).await?;
        let mut rng = rand::rng();
        loop {
            let mut group = Vec::new();
            for _ in 0..rng.random_range(1..=8) {
                let offset = log.next_offset();
                let len = rng.random_range(1..600);
                let (appended, durable) = log.append(batch_at(offset, len), 1, 0)?;
                group.push((appended.base_offset, len, durable));
            }
            for (offset, len, durable) in group {
                durable.await?;
                println!("ok {offset} {len}");
            }
        }
    })
}

/// Parent side of one round: start a child, let it acknowledge some appends, kill it.
fn one_round(dir: &Path, rng: &mut impl Rng) -> anyhow::Result<Vec<(u64, usize)>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "sigkill_never_loses_an_acknowledged_append",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut it = line.split_whitespace();
            if it.next() == Some("ok") {
                let offset: u64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
                let len: usize = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                if tx.send((offset, len)).is_err() {
                    break;
                }
            }
        }
    });
    let target = rng.random_range(0..40);
    let mut acked = Vec::new();
    while acked.len() < target {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(ack) => acked.push(ack),
            Err(_) => anyhow::bail!("child acknowledged nothing for 30 s"),
        }
    }
    // A little more random time, so kills also land mid-write and mid-fsync.
    std::thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
    child.kill()?;
    child.wait()?;
    let _ = reader.join();
    acked.extend(rx.try_iter());
    Ok(acked)
}

/// Reopens the log and checks every acknowledged append, then appends once more.
async fn verify(dir: &Path, acked: &[(u64, usize)]) -> anyhow::Result<()> {
    let mut log = Log::open(dir, config()).await?;
    let stored: HashMap<u64, RecordBatch> = log
        .read(log.first_offset(), usize::MAX)
        .await?
        .into_iter()
        .map(|b| (b.base_offset(), b))
        .collect();
    for &(offset, len) in acked {
        let batch = stored
            .get(&offset)
            .ok_or_else(|| anyhow::anyhow!("offset {offset} lost"))?;
        let record = batch.raw_records().next();
        let intact = record.as_deref() == Some(&payload(offset, len)[..]);
        anyhow::ensure!(intact, "offset {offset} damaged");
    }
    let offset = log.next_offset();
    let (appended, durable) = log.append(batch_at(offset, 10), 1, 0)?;
    durable.await?;
    anyhow::ensure!(appended.base_offset == offset);
    log.close().await?;
    Ok(())
}

#[test]
fn sigkill_never_loses_an_acknowledged_append() -> anyhow::Result<()> {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return run_child(Path::new(&dir));
    }
    let kills: usize = std::env::var("SLUICE_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut rng = rand::rng();
    let mut all = Vec::new();
    for round in 0..kills {
        let acked = one_round(dir.path(), &mut rng)?;
        all.extend(acked);
        rt.block_on(verify(dir.path(), &all))
            .map_err(|e| e.context(format!("after kill {round}")))?;
    }
    assert!(all.len() > kills, "the children acknowledged appends");
    Ok(())
}
