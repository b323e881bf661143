//! Unit and property tests of [`super`] (dedupe.rs).

use super::*;
use proptest::prelude::*;
use SessionVerdict::*;

const ID: [u8; 16] = [7; 16];
const OTHER: [u8; 16] = [8; 16];

fn window() -> IdWindow {
    IdWindow::new(Duration::from_millis(100))
}

#[test]
fn an_id_stored_within_the_window_is_a_duplicate_of_its_offset() {
    let mut w = window();
    w.insert(ID, 42, 1_000);
    assert_eq!(w.lookup(&ID, 1_000), Some(42));
    assert_eq!(w.lookup(&ID, 1_099), Some(42));
    assert_eq!(w.lookup(&OTHER, 1_000), None);
}

#[test]
fn an_id_is_forgotten_once_the_window_has_passed() {
    let mut w = window();
    w.insert(ID, 42, 1_000);
    assert_eq!(w.lookup(&ID, 1_100), None);
    w.expire(1_099);
    assert_eq!(w.len(), 1);
    w.expire(1_100);
    assert!(w.is_empty());
}

#[test]
fn the_first_writer_of_a_live_id_wins() {
    let mut w = window();
    w.insert(ID, 1, 1_000);
    w.insert(ID, 2, 1_050);
    assert_eq!(w.lookup(&ID, 1_060), Some(1));
    assert_eq!(
        w.lookup(&ID, 1_100),
        None,
        "the second insert did not extend the window"
    );
}

#[test]
fn an_expired_id_stored_again_starts_a_new_window() {
    let mut w = window();
    w.insert(ID, 1, 1_000);
    w.insert(ID, 2, 1_100);
    w.expire(1_150);
    assert_eq!(w.lookup(&ID, 1_150), Some(2));
    assert_eq!(w.len(), 1);
    w.expire(1_200);
    assert!(w.is_empty());
}

#[test]
fn a_restored_id_window_answers_the_same_duplicates() {
    let mut ids = IdWindow::new(Duration::from_secs(60));
    ids.insert([1; 16], 10, 1_000);
    ids.insert([2; 16], 11, 2_000);
    ids.insert([1; 16], 12, 3_000);
    let mut back = IdWindow::new(Duration::from_secs(60));
    back.restore(&ids.entries_in(0..u64::MAX, 3_000).collect::<Vec<_>>());
    for id in [[1; 16], [2; 16], [3; 16]] {
        assert_eq!(back.lookup(&id, 5_000), ids.lookup(&id, 5_000));
    }
    assert_eq!(back.lookup(&[1; 16], 5_000), Some(10));
    back.expire(61_500);
    assert_eq!(back.lookup(&[1; 16], 61_500), None);
    assert_eq!(back.lookup(&[2; 16], 61_500), Some(11));
}

#[test]
fn entries_in_a_range_are_the_live_ones_in_offset_order_and_restore_to_the_same_answers() {
    let mut w = window();
    w.insert([1; 16], 10, 1_000);
    w.insert([2; 16], 11, 1_050);
    w.insert([1; 16], 12, 1_060); // still live: not stored again
    w.insert([3; 16], 13, 1_080);
    w.insert([1; 16], 14, 1_120); // the first one expired: replaces it
    assert_eq!(
        w.entries_in(0..14, 1_099).collect::<Vec<_>>(),
        vec![
            ([1; 16], 10, 1_000),
            ([2; 16], 11, 1_050),
            ([3; 16], 13, 1_080)
        ]
    );
    assert_eq!(
        w.entries_in(11..12, 1_100).collect::<Vec<_>>(),
        vec![([2; 16], 11, 1_050)]
    );
    let all = w.entries_in(0..u64::MAX, 1_100).collect::<Vec<_>>();
    assert_eq!(all.len(), 3, "{all:?}");
    let mut back = window();
    back.restore(&w.entries_in(0..u64::MAX, 1_000).collect::<Vec<_>>());
    for id in [[1; 16], [2; 16], [3; 16], [4; 16]] {
        assert_eq!(back.lookup(&id, 1_130), w.lookup(&id, 1_130), "{id:?}");
    }
    assert_eq!(back.lookup(&[1; 16], 1_130), Some(14));
}

#[test]
fn sequence_numbers_wrap_around() {
    let mut w = window();
    w.head = u32::MAX - 2;
    for i in 0..6u8 {
        w.insert([i; 16], u64::from(i), 1_000 + i64::from(i) * 10);
    }
    for i in 0..6u8 {
        assert_eq!(w.lookup(&[i; 16], 1_090), Some(u64::from(i)), "{i}");
    }
    w.expire(1_125);
    assert_eq!(w.len(), 3);
    assert_eq!(w.lookup(&[2; 16], 1_125), None);
    assert_eq!(w.lookup(&[3; 16], 1_125), Some(3));
    w.insert([3; 16], 99, 1_200); // expired at 1_130: replaced, past the wrap
    assert_eq!(w.lookup(&[3; 16], 1_200), Some(99));
    w.expire(1_300);
    assert!(w.is_empty());
}

#[test]
fn a_prepared_id_is_checked_like_any_other_and_preparing_changes_nothing() {
    let mut w = window();
    w.insert(ID, 1, 1_000);
    let (id, other) = (w.prepare(ID), w.prepare(OTHER));
    assert_eq!(w.len(), 1);
    assert_eq!(w.lookup(&OTHER, 1_000), None);
    assert_eq!(w.check_and_insert_prepared(id, 5, 1_010), Some(1));
    assert_eq!(w.check_and_insert_prepared(other, 6, 1_010), None);
    assert_eq!(w.lookup(&OTHER, 1_020), Some(6));
}

#[test]
fn a_zero_window_remembers_nothing() {
    let mut w = IdWindow::new(Duration::ZERO);
    w.insert(ID, 1, 1_000);
    assert_eq!(w.lookup(&ID, 1_000), None);
    assert!(w.is_empty());
}

#[test]
fn extreme_times_do_not_overflow() {
    let mut w = IdWindow::new(Duration::MAX);
    w.insert(ID, 1, 0);
    assert_eq!(w.lookup(&ID, i64::MAX - 1), Some(1));
    w.insert(OTHER, 2, i64::MIN);
    assert_eq!(w.lookup(&OTHER, i64::MAX), None);
    w.expire(i64::MAX - 1);
    assert_eq!(w.lookup(&ID, i64::MAX - 1), Some(1));
    let mut w = window();
    w.insert(ID, 1, i64::MAX);
    assert_eq!(
        w.lookup(&ID, i64::MIN),
        Some(1),
        "stored in the future is still live"
    );
    w.expire(i64::MIN);
    assert_eq!(w.len(), 1);
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u64),
    Lookup(u8),
    Advance(i64),
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..8, any::<u64>()).prop_map(|(id, o)| Op::Insert(id, o)),
        (0u8..8).prop_map(Op::Lookup),
        (0i64..60).prop_map(Op::Advance),
        Just(Op::Expire),
    ]
}

proptest! {
    /// The model never forgets: it keeps every id's current entry and judges by time alone.
    #[test]
    fn id_window_matches_a_model_that_never_expires(ops in prop::collection::vec(op(), 0..200)) {
        let mut w = window();
        let mut model: HashMap<[u8; 16], (u64, i64)> = HashMap::new();
        let mut now = 0i64;
        let live = |t: i64, now: i64| now - t < 100;
        for op in ops {
            match op {
                Op::Insert(id, offset) => {
                    w.insert([id; 16], offset, now);
                    match model.get(&[id; 16]) {
                        Some(&(_, t)) if live(t, now) => {}
                        _ => {
                            model.insert([id; 16], (offset, now));
                        }
                    }
                }
                Op::Lookup(id) => {
                    let want = model.get(&[id; 16]).filter(|e| live(e.1, now)).map(|e| e.0);
                    prop_assert_eq!(w.lookup(&[id; 16], now), want);
                }
                Op::Advance(ms) => now += ms,
                Op::Expire => {
                    w.expire(now);
                    let count = model.values().filter(|e| live(e.1, now)).count();
                    prop_assert_eq!(w.len(), count);
                }
            }
        }
    }
}

#[test]
fn producer_zero_has_no_session_and_is_always_new() {
    let mut s = ProducerState::new();
    s.record(0, 0, 0, 10, 0);
    assert_eq!(s.check(0, 0, 0, 10), New);
    assert_eq!(s.check(0, 3, 77, 1), New);
    assert_eq!(s.epoch(0), None);
}

#[test]
fn an_unknown_producer_must_start_at_sequence_zero() {
    let s = ProducerState::new();
    assert_eq!(s.check(9, 0, 0, 5), New);
    assert_eq!(s.check(9, 2, 0, 5), New);
    assert_eq!(
        s.check(9, 0, 5, 5),
        OutOfOrder {
            expected: 0,
            got: 5
        }
    );
}

#[test]
fn the_next_sequence_is_new() {
    let mut s = ProducerState::new();
    s.record(9, 0, 0, 5, 100);
    assert_eq!(s.check(9, 0, 5, 3), New);
}

#[test]
fn a_retried_batch_is_a_duplicate_of_its_base_offset() {
    let mut s = ProducerState::new();
    s.record(9, 0, 0, 5, 100);
    s.record(9, 0, 5, 3, 200);
    assert_eq!(s.check(9, 0, 0, 5), Duplicate { base_offset: 100 });
    assert_eq!(s.check(9, 0, 5, 3), Duplicate { base_offset: 200 });
}

#[test]
fn only_the_last_five_batches_are_remembered() {
    let mut s = ProducerState::new();
    for i in 0..6u32 {
        s.record(9, 0, i * 2, 2, u64::from(i) * 10);
    }
    assert_eq!(
        s.check(9, 0, 0, 2),
        OutOfOrder {
            expected: 12,
            got: 0
        }
    );
    assert_eq!(s.check(9, 0, 2, 2), Duplicate { base_offset: 10 });
}

#[test]
fn a_gap_or_a_sequence_inside_a_batch_is_out_of_order() {
    let mut s = ProducerState::new();
    s.record(9, 0, 0, 5, 100);
    assert_eq!(
        s.check(9, 0, 7, 1),
        OutOfOrder {
            expected: 5,
            got: 7
        }
    );
    assert_eq!(
        s.check(9, 0, 2, 1),
        OutOfOrder {
            expected: 5,
            got: 2
        }
    );
}

#[test]
fn a_lower_epoch_is_fenced() {
    let mut s = ProducerState::new();
    s.record(9, 3, 0, 1, 0);
    assert_eq!(s.check(9, 2, 1, 1), Fenced { current_epoch: 3 });
    assert_eq!(s.check(9, 2, 0, 1), Fenced { current_epoch: 3 });
}

#[test]
fn a_higher_epoch_resets_the_sequence_to_zero() {
    let mut s = ProducerState::new();
    s.record(9, 0, 0, 5, 100);
    assert_eq!(s.check(9, 1, 0, 2), New);
    assert_eq!(
        s.check(9, 1, 5, 2),
        OutOfOrder {
            expected: 0,
            got: 5
        }
    );
    s.record(9, 1, 0, 2, 300);
    assert_eq!(s.epoch(9), Some(1));
    assert_eq!(s.check(9, 1, 2, 1), New);
    assert_eq!(s.check(9, 1, 0, 2), Duplicate { base_offset: 300 });
    assert_eq!(s.check(9, 0, 5, 1), Fenced { current_epoch: 1 });
}

#[test]
fn recording_an_older_epoch_changes_nothing() {
    let mut s = ProducerState::new();
    s.record(9, 2, 0, 1, 0);
    s.record(9, 1, 0, 50, 10);
    assert_eq!(s.epoch(9), Some(2));
    assert_eq!(s.check(9, 2, 1, 1), New);
}

#[test]
fn sequences_wrap_around() {
    let mut s = ProducerState::new();
    s.record(9, 0, u32::MAX - 1, 3, 0);
    assert_eq!(s.check(9, 0, 1, 1), New);
}

#[test]
fn producers_are_independent() {
    let mut s = ProducerState::new();
    s.record(9, 4, 0, 5, 0);
    assert_eq!(s.check(10, 0, 0, 1), New);
    assert_eq!(s.epoch(10), None);
    assert_eq!(s.epoch(9), Some(4));
}

#[test]
fn check_and_insert_answers_like_lookup_then_insert() {
    let mut w = window();
    assert_eq!(w.check_and_insert([1; 16], 10, 1_000), None);
    assert_eq!(w.check_and_insert([1; 16], 11, 1_050), Some(10));
    assert_eq!(w.lookup(&[1; 16], 1_050), Some(10));
    // Past the (100 ms) window the id is new again, at its new offset.
    let later = 1_000 + 100;
    assert_eq!(w.check_and_insert([1; 16], 12, later), None);
    assert_eq!(w.lookup(&[1; 16], later), Some(12));
    w.expire(later + 1);
    assert_eq!(
        w.lookup(&[1; 16], later + 1),
        Some(12),
        "the replaced entry survives expiry"
    );
}

#[test]
fn a_batch_is_checked_with_offsets_that_skip_its_duplicates() {
    let mut w = IdWindow::new(Duration::from_secs(60));
    let [a, b, c, d] = [[1; 16], [2; 16], [3; 16], [4; 16]];
    let batch = |w: &IdWindow, ids: &[[u8; 16]]| -> Vec<(u32, Prepared)> {
        (0..).zip(ids).map(|(i, id)| (i, w.prepare(*id))).collect()
    };
    // a b a c: the second a is a duplicate of the first; c is stored right after b.
    let first = batch(&w, &[a, b, a, c]);
    assert_eq!(w.check_batch(&first, 10, 1_000), vec![(2, 10)]);
    assert_eq!(w.lookup(&c, 1_000), Some(12));
    // c d: c was stored at 12; d takes the batch's first offset, as c is not stored.
    let second = batch(&w, &[c, d]);
    assert_eq!(w.check_batch(&second, 13, 1_001), vec![(0, 12)]);
    assert_eq!(w.lookup(&d, 1_001), Some(13));
    assert_eq!(w.lookup(&b, 1_001), Some(11));
}
