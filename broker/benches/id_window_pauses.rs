//! The longest pause a growing message-id window causes: fills a window with random ids in
//! batches of 100, as publish does, and reports the total time and the slowest batches. A
//! criterion mean hides these; a partition's publishers see them as publish latency.
//!
//! ```sh
//! cargo bench -p sluice-broker --bench id_window_pauses -- 16777216
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use rand::Rng;
use sluice_broker::channel::dedupe::IdWindow;

/// Ids a publish batch carries.
const BATCH: usize = 100;

fn main() {
    // `cargo bench` passes `--bench`; the one number among the arguments is the id count.
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(16 << 20);
    let mut rng = rand::rng();
    let ids: Vec<[u8; 16]> = (0..n).map(|_| rng.random()).collect();
    let mut window = IdWindow::new(Duration::from_secs(120));
    let now = 1_000_000;
    let mut batches: Vec<(Duration, usize)> = Vec::with_capacity(n / BATCH + 1);
    let start = Instant::now();
    for (b, batch) in ids.chunks(BATCH).enumerate() {
        let began = Instant::now();
        let prepared: Vec<_> = (0..)
            .zip(batch)
            .map(|(i, id)| (i, window.prepare(*id)))
            .collect();
        black_box(window.check_batch(&prepared, (b * BATCH) as u64, now));
        batches.push((began.elapsed(), b * BATCH));
    }
    let total = start.elapsed();
    batches.sort_unstable_by(|a, b| b.cmp(a));
    println!("{n} ids in {total:.2?}; slowest batches of {BATCH}:");
    for (took, at) in batches.iter().take(5) {
        println!("  {took:>10.2?} at id {at}");
    }
}
