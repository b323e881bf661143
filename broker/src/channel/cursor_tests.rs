//! Unit tests of the cursor: grants, acks, returns, leases.

use super::*;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);

fn offsets(grants: &[Grant]) -> Vec<u64> {
    grants.iter().flat_map(|g| g.start..g.end).collect()
}

#[test]
fn first_deliveries_go_out_in_offset_order_within_the_budget() {
    let now = Instant::now();
    let mut c = Cursor::new(0);
    let g = c.grant(1, 3, 10, now, now + LEASE);
    assert_eq!(
        g,
        vec![Grant {
            start: 0,
            end: 3,
            count: 1
        }]
    );
    assert_eq!(
        offsets(&c.grant(2, 100, 10, now, now + LEASE)),
        (3..10).collect::<Vec<_>>()
    );
    assert!(c.grant(1, 5, 10, now, now + LEASE).is_empty());
    assert_eq!(c.in_flight(), 10);
}

#[test]
fn acks_advance_the_floor_only_over_a_contiguous_prefix() {
    let now = Instant::now();
    let mut c = Cursor::new(0);
    c.grant(1, 10, 10, now, now + LEASE);
    c.apply_ack(2, 5);
    assert_eq!(c.ack_floor(), 0);
    assert_eq!(c.backlog(10), 7);
    c.apply_ack(0, 2);
    assert_eq!(c.ack_floor(), 5);
    assert_eq!(c.in_flight(), 5);
}

#[test]
fn a_return_redelivers_before_new_messages_with_a_higher_count() {
    let now = Instant::now();
    let mut c = Cursor::new(0);
    c.grant(1, 2, 5, now, now + LEASE);
    c.apply_return(&[1], now, now);
    let g = c.grant(2, 2, 5, now, now + LEASE);
    assert_eq!(
        g[0],
        Grant {
            start: 1,
            end: 2,
            count: 2
        }
    );
    assert_eq!(
        g[1],
        Grant {
            start: 2,
            end: 3,
            count: 1
        }
    );
}

#[test]
fn a_nack_delay_holds_the_message_back_until_it_passes() {
    let now = Instant::now();
    let mut c = Cursor::new(0);
    c.grant(1, 1, 1, now, now + LEASE);
    c.apply_return(&[0], now + Duration::from_secs(5), now);
    assert!(c.grant(1, 1, 1, now, now + LEASE).is_empty());
    assert_eq!(c.next_wakeup(), Some(now + Duration::from_secs(5)));
    let later = now + Duration::from_secs(5);
    assert_eq!(offsets(&c.grant(1, 1, 1, later, later + LEASE)), vec![0]);
}

#[test]
fn expired_leases_and_released_consumers_give_back_only_unacked_offsets() {
    let now = Instant::now();
    let mut c = Cursor::new(0);
    c.grant(1, 4, 8, now, now + LEASE);
    c.grant(2, 4, 8, now, now + 2 * LEASE);
    c.apply_ack(1, 2);
    assert_eq!(c.take_expired(now + LEASE), vec![0, 2, 3]);
    assert_eq!(c.release(2), vec![4, 5, 6, 7]);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn extend_moves_only_the_holders_deadline() {
    let now = Instant::now();
    let mut c = Cursor::new(0);
    c.grant(1, 3, 3, now, now + LEASE);
    assert_eq!(c.extend(2, &[1], now + 3 * LEASE), 0);
    assert_eq!(c.extend(1, &[1], now + 3 * LEASE), 1);
    assert_eq!(c.take_expired(now + LEASE), vec![0, 2]);
    assert_eq!(c.held_by(1, &[0, 1, 2]), vec![1]);
}

#[test]
fn a_grant_with_no_practical_limit_hands_out_everything_past_the_floor() {
    let now = Instant::now();
    let mut c = Cursor::new(0);
    c.apply_ack(0, 1);
    let g = c.grant(1, u64::MAX, 4, now, now + LEASE);
    assert_eq!(offsets(&g), vec![1, 2, 3]);
}

#[test]
fn replayed_state_redelivers_every_unacked_offset_with_its_count() {
    let now = Instant::now();
    let mut c = Cursor::new(0);
    c.apply_ack(0, 2);
    c.apply_return(&[3], now, now);
    c.apply_ack(4, 5);
    let g = c.grant(1, 10, 6, now, now + LEASE);
    let expected = vec![
        Grant {
            start: 2,
            end: 3,
            count: 1,
        },
        Grant {
            start: 3,
            end: 4,
            count: 2,
        },
        Grant {
            start: 5,
            end: 6,
            count: 1,
        },
    ];
    assert_eq!(g, expected);
}

#[test]
fn a_nack_delay_that_passed_leaves_the_wakeups_once_promoted() {
    let now = Instant::now();
    let delay = Duration::from_secs(5);
    let mut c = Cursor::new(0);
    c.grant(1, 1, 1, now, now + LEASE);
    c.take_held(1, &[0]);
    c.apply_return(&[0], now + delay, now);
    assert_eq!(c.next_wakeup(), Some(now + delay));
    // The delay passes while no consumer has credit: the partition's timer promotes the
    // return, so it does not fire again at once, and the return is ready for the next grant.
    c.promote_delayed(now + delay);
    assert_eq!(c.next_wakeup(), None);
    assert_eq!(c.deliverable(1, now + delay), 1);
    assert_eq!(
        offsets(&c.grant(2, 1, 1, now + delay, now + LEASE)),
        vec![0]
    );
}
