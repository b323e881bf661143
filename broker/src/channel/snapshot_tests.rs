//! Unit tests of snapshots and of the export/import of cursor and dedupe state.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::*;
use crate::channel::dedupe::SessionVerdict;

const LEASE: Duration = Duration::from_secs(30);

fn cursor_with_history() -> Cursor {
    let now = Instant::now();
    let mut c = Cursor::new(0);
    c.grant(1, 20, 20, now, now + LEASE);
    c.apply_ack(0, 3);
    c.apply_ack(5, 7);
    c.apply_ack(10, 12);
    c.apply_return(&[3, 8], now, now);
    c.apply_return(&[8], now, now);
    c
}

#[test]
fn a_cursor_rebuilt_from_its_logged_state_has_the_same_floor_acks_and_counts() {
    let c = cursor_with_history();
    let logged = c.logged();
    assert_eq!(logged.ack_floor, 3);
    assert_eq!(logged.acked, vec![(5, 7), (10, 12)]);
    assert_eq!(logged.returns, vec![(3, 1), (8, 2)]);
    let back = Cursor::from_logged(&logged);
    assert_eq!(back.logged(), c.logged());
    assert_eq!(back.backlog(20), c.backlog(20));
    assert_eq!(back.in_flight(), 0);
    assert_eq!(back.delivery_count(8), 3);
    assert!(back.is_acked(6) && !back.is_acked(7));
}

#[test]
fn a_restored_cursor_merges_acked_ranges_that_touch_its_floor() {
    let c = Cursor::from_logged(&LoggedState {
        ack_floor: 4,
        acked: vec![(2, 9), (12, 13)],
        returns: vec![(5, 1), (10, 2)],
    });
    assert_eq!(c.ack_floor(), 9);
    let expected = LoggedState {
        ack_floor: 9,
        acked: vec![(12, 13)],
        returns: vec![(10, 2)],
    };
    assert_eq!(c.logged(), expected);
}

#[test]
fn restored_producer_sessions_give_the_same_verdicts() {
    let mut producers = ProducerState::new();
    producers.record(7, 2, 0, 5, 100);
    producers.record(7, 2, 5, 5, 105);
    producers.record(9, 0, 0, 1, 110);
    let mut back = ProducerState::new();
    back.restore(&producers.sessions());
    assert_eq!(back.sessions(), producers.sessions());
    for (pid, epoch, seq) in [(7, 2, 5), (7, 2, 10), (7, 1, 0), (7, 2, 3), (9, 0, 1)] {
        assert_eq!(
            back.check(pid, epoch, seq, 1),
            producers.check(pid, epoch, seq, 1)
        );
    }
    assert_eq!(
        back.check(7, 2, 5, 5),
        SessionVerdict::Duplicate { base_offset: 105 }
    );
}

#[test]
fn a_stored_snapshot_loads_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("0");
    let path = StateSnapshot::path_for(&log_dir);
    assert_eq!(path, dir.path().join("0.snapshot"));
    assert_eq!(StateSnapshot::load(&path).unwrap(), None);
    let mut subs = BTreeMap::new();
    let mut durable = Subscription::new(Lifetime::Durable, LEASE, 0);
    durable.cursor = cursor_with_history();
    subs.insert("d".to_owned(), durable);
    subs.insert(
        "e".to_owned(),
        Subscription::new(Lifetime::Ephemeral, LEASE, 0),
    );
    let mut producers = ProducerState::new();
    producers.record(7, 1, 0, 3, 40);
    let snapshot = StateSnapshot::capture(17, 42, subs.iter(), &producers);
    assert_eq!(snapshot.subscriptions.len(), 1, "only durable ones");
    snapshot.store(&path).unwrap();
    assert_eq!(StateSnapshot::load(&path).unwrap(), Some(snapshot.clone()));
    let sub = snapshot.subscriptions[0].to_subscription();
    assert_eq!(sub.cursor.logged(), cursor_with_history().logged());
    assert_eq!(sub.lease, LEASE);
}

#[test]
fn a_damaged_snapshot_is_an_error_not_an_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.snapshot");
    let snapshot = StateSnapshot::capture(1, 1, std::iter::empty(), &ProducerState::new());
    snapshot.store(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        StateSnapshot::load(&path),
        Err(ChannelError::Metadata { .. })
    ));
    std::fs::write(&path, b"ab").unwrap();
    assert!(StateSnapshot::load(&path).is_err());
}
