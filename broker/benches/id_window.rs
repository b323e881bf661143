//! Benchmark of the message-id window as publish drives it: batches of 100 random ids, each
//! batch hashed and prefetched before it is checked, into a window that grows from empty (as in
//! the first minutes of a channel, and in every `sluice-bench --ids` run). A baseline in the same
//! run: the same number of random 64-byte reads from a buffer of the same size class, the memory
//! latency every new id pays at least once.
//!
//! ```sh
//! cargo bench -p sluice-broker --bench id_window -- --warm-up-time 1 --measurement-time 10
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::Rng;
use sluice_broker::channel::dedupe::IdWindow;

/// Ids a publish batch carries.
const BATCH: usize = 100;

/// Inserts `ids` into a fresh window the way publish does; the time taken.
fn fill(ids: &[[u8; 16]]) -> Duration {
    let mut window = IdWindow::new(Duration::from_secs(120));
    let now = 1_000_000;
    let mut prepared = Vec::with_capacity(BATCH);
    let start = Instant::now();
    for (b, batch) in ids.chunks(BATCH).enumerate() {
        prepared.clear();
        prepared.extend((0..).zip(batch).map(|(i, id)| (i, window.prepare(*id))));
        black_box(window.check_batch(&prepared, (b * BATCH) as u64, now));
    }
    let spent = start.elapsed();
    drop(black_box(window));
    spent
}

/// `n` independent reads of random cache lines of a `lines`-line buffer; the time taken.
fn random_lines(lines: usize, n: usize) -> Duration {
    let buffer = vec![[1u64; 8]; lines];
    let mut rng = rand::rng();
    let picks: Vec<usize> = (0..n).map(|_| rng.random_range(0..lines)).collect();
    let start = Instant::now();
    let sum: u64 = picks.iter().map(|&i| buffer[i][0]).sum();
    let spent = start.elapsed();
    black_box(sum);
    spent
}

fn id_window(c: &mut Criterion) {
    let mut group = c.benchmark_group("id_window");
    group.sample_size(10);
    let mut rng = rand::rng();
    for n in [1_000_000usize, 4_000_000] {
        let ids: Vec<[u8; 16]> = (0..n).map(|_| rng.random()).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("fill", n), &ids, |b, ids| {
            b.iter_custom(|iters| (0..iters).map(|_| fill(ids)).sum())
        });
        // A window of n ids is about n * 2/7 index lines at its peak.
        let lines = (n * 2 / 7).next_power_of_two();
        group.bench_with_input(BenchmarkId::new("random_line_reads", n), &n, |b, &n| {
            b.iter_custom(|iters| (0..iters).map(|_| random_lines(lines, n)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, id_window);
criterion_main!(benches);
