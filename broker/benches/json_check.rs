//! Benchmark of the `payload_format = json` check on typical payloads, against the check it
//! replaced as the baseline in the same run: serde_json's skipping parser, a UTF-8 pass and a
//! scan of the escapes for unpaired surrogates.
//!
//! ```sh
//! cargo bench -p sluice-broker --bench json_check -- --warm-up-time 1 --measurement-time 5
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_broker::channel::json;

/// The old check's three passes, for their cost: the third stands in for its scan of the
/// escapes (it finds the backslashes with memchr, as that scan did, but stops at any `\ud`
/// rather than judge the pair). The payloads below hold no such escape, so on them it does
/// the old scan's work exactly.
fn serde_three_pass(text: &[u8]) -> bool {
    std::str::from_utf8(text).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
        && !memchr::memchr_iter(b'\\', text).any(|at| text.get(at + 1..at + 3) == Some(b"ud"))
}

fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    // What `sluice-bench --json --size 100` sends.
    let bench = format!("{{\"t\":\"{:020}\",\"p\":\"{}\"}}", 12345, "z".repeat(65));
    let order = r#"{"id":"6f1c2a9e-93c4-4b8e-a1d2-7c0e5b3f9a10","customer":{"name":"Zoë Müller","email":"zoe@example.com","tier":"gold"},"lines":[{"sku":"A-100","qty":2,"price":19.99},{"sku":"B-220","qty":1,"price":5.5,"note":"gift \"wrap\"\n"}],"total":45.48,"paid":true,"coupon":null,"placed":"2026-11-27T04:00:00Z"}"#;
    let numbers = format!(
        "[{}]",
        (0..64)
            .map(|i| format!("{}.{}e-{}", i * 7919, i, i % 9))
            .collect::<Vec<_>>()
            .join(",")
    );
    let text = format!(
        "{{\"title\":\"{}\",\"lang\":\"el\"}}",
        "Καλημέρα κόσμε, ".repeat(12)
    );
    vec![
        ("bench_100B", bench.into_bytes()),
        ("greek_text", text.into_bytes()),
        ("order_350B", order.as_bytes().to_vec()),
        ("numbers", numbers.into_bytes()),
    ]
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("json_check");
    for (name, text) in payloads() {
        assert!(
            json::check(&text).is_ok() && serde_three_pass(&text),
            "{name}"
        );
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("serde_three_pass", name), &text, |b, t| {
            b.iter(|| serde_three_pass(black_box(t)))
        });
        group.bench_with_input(BenchmarkId::new("one_pass", name), &text, |b, t| {
            b.iter(|| json::check(black_box(t)).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
