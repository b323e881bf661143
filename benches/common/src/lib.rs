//! Pieces every Sluice load generator shares, so that `sluice-bench` and the peer comparison
//! (`benches/peers`) time messages the same way.
//!
//! A payload starts with its *scheduled* send time, nanoseconds since the run's start, as a
//! little-endian `u64`; the rest is filler. A consumer reads the stamp back and records
//! publish→deliver latency from the scheduled time, so a broker that falls behind shows up as
//! latency instead of a lower offered load.
//!
//! ```text
//! +----------------+-------------------------+
//! | stamp: u64 LE  | filler 0x5a ...         |
//! +----------------+-------------------------+
//!  0              8                      size
//! ```
//!
//! This crate knows nothing about any broker.

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::time::Instant;

/// Bytes at the front of a payload taken by the send time.
pub const STAMP_BYTES: usize = 8;

/// A latency histogram in nanoseconds, 1 ns to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

/// Nanoseconds since `start`.
pub fn ns_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds from `start` to `at` (0 if `at` is earlier).
pub fn ns_between(start: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX)
}

/// `n` payloads of `size` bytes (at least [`STAMP_BYTES`]) in one buffer, each stamped with
/// `stamp`; slice it with [`payload_at`].
pub fn stamped_batch(n: usize, size: usize, stamp: u64) -> Bytes {
    debug_assert!(size >= STAMP_BYTES);
    let mut buf = BytesMut::with_capacity(n * size);
    for _ in 0..n {
        buf.put_u64_le(stamp);
        buf.put_bytes(0x5a, size - STAMP_BYTES);
    }
    buf.freeze()
}

/// The `i`th payload of a [`stamped_batch`] buffer.
pub fn payload_at(batch: &Bytes, i: usize, size: usize) -> Bytes {
    batch.slice(i * size..(i + 1) * size)
}

/// One stamped payload.
pub fn stamped(size: usize, stamp: u64) -> Bytes {
    stamped_batch(1, size, stamp)
}

/// Bytes a JSON payload needs at least: `{"t":"<20 digits>","p":""}`.
pub const JSON_STAMP_BYTES: usize = 35;

/// `n` JSON payloads of `size` bytes (at least [`JSON_STAMP_BYTES`]) in one buffer, for
/// channels whose contract wants JSON: `{"t":"<stamp, 20 decimal digits>","p":"zz…"}`.
pub fn stamped_json_batch(n: usize, size: usize, stamp: u64) -> Bytes {
    debug_assert!(size >= JSON_STAMP_BYTES);
    let mut buf = BytesMut::with_capacity(n * size);
    let head = format!("{{\"t\":\"{stamp:020}\",\"p\":\"");
    for _ in 0..n {
        buf.put_slice(head.as_bytes());
        buf.put_bytes(b'z', size - JSON_STAMP_BYTES);
        buf.put_slice(b"\"}");
    }
    buf.freeze()
}

/// The send time a payload carries (binary or JSON layout), or `None` if it has none.
pub fn stamp_of(payload: &[u8]) -> Option<u64> {
    if payload.starts_with(b"{\"t\":\"") {
        // Folded by hand: the consumer reads every message's stamp, and `str::parse` (with its
        // UTF-8 check) cost the load generator ~25 ns a message, CPU the broker shares.
        let digits = payload.get(6..26)?;
        return digits.iter().try_fold(0u64, |n, &d| {
            let digit = d.checked_sub(b'0').filter(|d| *d < 10)?;
            n.checked_mul(10)?.checked_add(u64::from(digit))
        });
    }
    let bytes: [u8; STAMP_BYTES] = payload.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Records the latency from a payload's stamp to now (at least 1 ns); ignores short payloads.
pub fn record_since_stamp(hist: &mut Histogram<u64>, start: Instant, payload: &[u8]) {
    if let Some(sent) = stamp_of(payload) {
        hist.saturating_record(ns_since(start).saturating_sub(sent).max(1));
    }
}

/// Nanoseconds as a short human figure: µs below 10 ms, ms above.
pub fn micros(ns: u64) -> String {
    if ns < 10_000_000 {
        format!("{} µs", ns / 1000)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    let mut until_comma = digits.len() % 3;
    for c in digits.chars() {
        if until_comma == 0 && !out.is_empty() {
            out.push(',');
        }
        until_comma = until_comma.checked_sub(1).unwrap_or(2);
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_are_json_and_carry_their_stamp() {
        let buf = stamped_json_batch(2, 40, 123_456);
        let one = payload_at(&buf, 1, 40);
        let value: serde_json::Value = serde_json::from_slice(&one).unwrap();
        assert_eq!(value["t"], "00000000000000123456");
        assert_eq!(stamp_of(&one), Some(123_456));
        let max = stamped_json_batch(1, 40, u64::MAX);
        assert_eq!(stamp_of(&max), Some(u64::MAX));
        // Not digits, or more than a u64 holds: no stamp.
        assert_eq!(
            stamp_of(b"{\"t\":\"0000000000000000012x\",\"p\":\"\"}"),
            None
        );
        assert_eq!(
            stamp_of(b"{\"t\":\"99999999999999999999\",\"p\":\"\"}"),
            None
        );
    }

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12345), "12,345");
    }

    #[test]
    fn a_stamped_payload_gives_its_stamp_back() {
        let batch = stamped_batch(3, 100, 42);
        assert_eq!(batch.len(), 300);
        let second = payload_at(&batch, 1, 100);
        assert_eq!(second.len(), 100);
        assert_eq!(stamp_of(&second), Some(42));
        assert_eq!(second[99], 0x5a);
    }

    #[test]
    fn a_payload_shorter_than_a_stamp_has_none() {
        assert_eq!(stamp_of(&[1, 2, 3]), None);
    }
}
