//! Benchmarks of the partition log: append throughput by batch shape and fsync policy,
//! sequential read, and the disk's own baseline (2 MiB writes, fdatasync after each, into a
//! fresh file and over an already cached one) measured in the same run.
//!
//! ```sh
//! cargo bench -p sluice-broker --bench log -- --warm-up-time 1 --measurement-time 3
//! ```

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_broker::log::{FsyncPolicy, Log, LogConfig};
use sluice_protocol::{BatchBuilder, RecordBatch};
use tokio::runtime::Runtime;

/// Bytes of batches built ahead and appended back to back in one timed stretch.
const CHUNK_BYTES: usize = 32 << 20;
/// Baseline write size between two `fdatasync`s.
const SYNC_EVERY: usize = 2 << 20;
/// Baseline bytes written per iteration.
const BASELINE_BYTES: usize = 64 << 20;

fn batch(records: usize, size: usize) -> RecordBatch {
    let mut b = BatchBuilder::messages();
    let body = vec![0x5a; size];
    for _ in 0..records {
        b.push_raw(&body);
    }
    b.finish().expect("non-empty")
}

/// Appends `iters` batches of the given shape, timing only the appends and their durability.
async fn append_timed(log: &mut Log, iters: u64, records: usize, size: usize) -> Duration {
    let per_chunk = (CHUNK_BYTES / (records * (size + 4) + 72)).max(1) as u64;
    let mut spent = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(per_chunk);
        left -= n;
        let batches: Vec<_> = (0..n).map(|_| batch(records, size)).collect();
        let start = Instant::now();
        let mut durables = Vec::with_capacity(batches.len());
        for b in batches {
            durables.push(log.append(b, 1, 0).expect("append").1);
        }
        for d in durables {
            d.await.expect("durable");
        }
        spent += start.elapsed();
        // Keep the disk footprint small; the deleted files are not timed.
        log.purge_before(log.next_offset()).await.expect("purge");
    }
    spent
}

fn appends(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("append");
    for (policy, fsync) in [
        ("always", FsyncPolicy::Always),
        ("never", FsyncPolicy::Never),
    ] {
        for size in [100, 1024] {
            for records in [1, 100, 1000] {
                let len = batch(records, size).len() as u64;
                group.throughput(Throughput::Bytes(len));
                let id = BenchmarkId::new(policy, format!("{records}x{size}B"));
                let dir = tempfile::tempdir().expect("temp dir");
                let config = LogConfig {
                    fsync,
                    ..LogConfig::default()
                };
                let mut log = rt.block_on(Log::open(dir.path(), config)).expect("open");
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| rt.block_on(append_timed(&mut log, iters, records, size)))
                });
                rt.block_on(log.close()).expect("close");
            }
        }
    }
    group.finish();
}

fn sequential_read(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = rt
        .block_on(Log::open(dir.path(), LogConfig::default()))
        .expect("open");
    let one = batch(1000, 100);
    let total = 256u64 << 20;
    let count = total / one.len() as u64;
    for _ in 0..count {
        let _ = log.append(batch(1000, 100), 1, 0).expect("append");
    }
    rt.block_on(log.sync()).expect("sync");
    let next = log.next_offset();
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(1 << 20));
    let mut from = 0;
    group.bench_function("sequential_1MiB_reads", |b| {
        b.iter(|| {
            let batches = rt.block_on(log.read(from, 1 << 20)).expect("read");
            from = batches.last().map_or(0, |b| b.next_offset());
            if from >= next {
                from = 0;
            }
            batches
        })
    });
    group.finish();
    rt.block_on(log.close()).expect("close");
}

/// Writes `BASELINE_BYTES` to `file` from position 0 in 2 MiB writes, fdatasync after each.
fn write_synced(file: &mut File, buf: &[u8]) {
    file.seek(SeekFrom::Start(0)).expect("seek");
    for _ in 0..BASELINE_BYTES / SYNC_EVERY {
        file.write_all(buf).expect("write");
        file.sync_data().expect("fdatasync");
    }
}

fn disk_baseline(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let buf = vec![0x5au8; SYNC_EVERY];
    let mut group = c.benchmark_group("disk_baseline");
    group.throughput(Throughput::Bytes(BASELINE_BYTES as u64));
    group.bench_function("fresh_file_fdatasync_2MiB", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for i in 0..iters {
                let path = dir.path().join(format!("fresh-{i}"));
                let mut file = File::create(&path).expect("create");
                let start = Instant::now();
                write_synced(&mut file, &buf);
                spent += start.elapsed();
                std::fs::remove_file(&path).expect("remove");
            }
            spent
        })
    });
    let path = dir.path().join("cached");
    let mut file = File::create(&path).expect("create");
    write_synced(&mut file, &buf);
    group.bench_function("rewrite_cached_fdatasync_2MiB", |b| {
        b.iter(|| write_synced(&mut file, &buf))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = disk_baseline, appends, sequential_read
}
criterion_main!(benches);
