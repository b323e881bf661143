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
        let digits: &[u8; 20] = payload.get(6..26)?.try_into().ok()?;
        return twenty_digits(digits);
    }
    let bytes: [u8; STAMP_BYTES] = payload.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// The number 20 decimal digits spell, if they are digits and it fits a `u64`.
///
/// Eight digits at a time as one word: the consumer reads every message's stamp, and a digit
/// at a time (`str::parse`, or a fold) cost the load generator 20–25 ns a message, CPU the
/// broker shares on a small machine, where a binary stamp costs nothing.
fn twenty_digits(digits: &[u8; 20]) -> Option<u64> {
    let (high, rest) = digits.split_at(4);
    let (middle, low) = rest.split_at(8);
    let high = high.iter().try_fold(0u64, |n, &d| {
        let digit = d.checked_sub(b'0').filter(|d| *d < 10)?;
        Some(n * 10 + u64::from(digit))
    })?;
    let middle = eight_digits(middle.try_into().ok()?)?;
    let low = eight_digits(low.try_into().ok()?)?;
    high.checked_mul(10u64.pow(16))?
        .checked_add(middle * 10u64.pow(8) + low)
}

/// The number eight decimal digits spell, or `None` if one is not a digit.
fn eight_digits(digits: &[u8; 8]) -> Option<u64> {
    // Each byte less '0': a digit leaves 0..=9, anything else more (below '0' wraps).
    let lanes = digits.map(|b| b.wrapping_sub(b'0'));
    if lanes.iter().any(|&d| d > 9) {
        return None;
    }
    let value = u64::from_le_bytes(lanes);
    // Pairs, then fours, then all eight; the first digit is the lowest byte.
    let value = (value * 10 + (value >> 8)) & 0x00ff_00ff_00ff_00ff;
    let value = (value * 100 + (value >> 16)) & 0x0000_ffff_0000_ffff;
    Some((value * 10_000 + (value >> 32)) & 0xffff_ffff)
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
    fn twenty_digits_read_as_str_parse_does() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..10_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let n = match i % 3 {
                0 => rng,
                1 => rng % 1_000_000_000,
                _ => i,
            };
            let text = format!("{n:020}");
            assert_eq!(twenty_digits(text.as_bytes().try_into().unwrap()), Some(n));
            // Any one byte that is not a digit spoils it.
            let mut bad = text.into_bytes();
            bad[(i % 20) as usize] = [b'/', b':', b'a', 0, 0xb0][(i % 5) as usize];
            let bad: &[u8; 20] = bad.as_slice().try_into().unwrap();
            assert_eq!(twenty_digits(bad), None, "{bad:?}");
        }
        assert_eq!(twenty_digits(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(twenty_digits(b"18446744073709551616"), None);
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
