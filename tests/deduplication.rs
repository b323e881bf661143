//! Broker-side idempotent receiver: a message id stored within the dedupe window, or a batch
//! resent by a producer session, is answered `duplicate` with the original's offset and not
//! stored again, also after kill -9 and restart.

mod common;

use common::{eventually, next, ChildBroker, TestBroker, CHILD_SEGMENT_BYTES_ENV};
use sluice_broker::clock::ManualClock;
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Message, Outcome, Producer};
use sluice_protocol::types::partition_for_key;

child_broker_entry!();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_id_is_a_duplicate_even_after_kill_nine() {
    let dir = tempfile::tempdir().unwrap();
    let broker = ChildBroker::spawn(ENTRY, dir.path());
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        partitions: Some(3),
        ..ChannelSettings::default()
    };
    client
        .create_channel("pay", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client.producer("pay").build().await.unwrap();
    let first = producer
        .send(Message::new("charge").id([7; 16]))
        .await
        .unwrap();
    let Outcome::Stored { partition, offset } = first else {
        panic!("{first:?}")
    };
    let again = producer
        .send(Message::new("charge").id([7; 16]))
        .await
        .unwrap();
    assert_eq!(again, Outcome::Duplicate { partition, offset });
    // Duplicates inside one batch: only the first copy is stored.
    let batch = vec![
        Message::new("a").id([1; 16]).into_inner(),
        Message::new("a").id([1; 16]).into_inner(),
        Message::new("b").into_inner(),
    ];
    let outcomes = producer.send_batch(batch).await.unwrap();
    assert!(matches!(outcomes[0], Outcome::Stored { .. }));
    assert_eq!(
        outcomes[1],
        Outcome::Duplicate {
            partition: outcomes[0].partition(),
            offset: outcomes[0].offset()
        }
    );
    broker.kill9();

    let broker = ChildBroker::spawn(ENTRY, dir.path());
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let producer = client.producer("pay").build().await.unwrap();
    let after = producer
        .send(Message::new("charge").id([7; 16]))
        .await
        .unwrap();
    assert_eq!(after, Outcome::Duplicate { partition, offset });
    let d = client.describe_channel("pay").await.unwrap();
    assert_eq!(d.partitions.iter().map(|p| p.next_offset).sum::<u64>(), 3);
    broker.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_dedupe_window_stores_repeated_ids() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        dedupe_window_ms: Some(0),
        ..ChannelSettings::default()
    };
    client
        .create_channel("raw", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client.producer("raw").build().await.unwrap();
    for expected in 0..2 {
        let o = producer.send(Message::new("x").id([3; 16])).await.unwrap();
        assert_eq!(
            o,
            Outcome::Stored {
                partition: 0,
                offset: expected
            }
        );
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producer_gets_stored_outcomes_for_fresh_batches() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("seq", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    let producer = client.producer("seq").idempotent().build().await.unwrap();
    for expected in 0..5 {
        let o = producer
            .send(Message::new(format!("m{expected}")))
            .await
            .unwrap();
        assert_eq!(
            o,
            Outcome::Stored {
                partition: 0,
                offset: expected
            }
        );
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedupe_key_stands_for_the_id_and_finds_its_partition() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        partitions: Some(4),
        ..ChannelSettings::default()
    };
    client
        .create_channel("keyed", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client.producer("keyed").build().await.unwrap();
    let send = |message: Message| {
        let producer = producer.clone();
        async move { producer.send(message).await.unwrap() }
    };
    let first = send(Message::new("try 1").id([1; 16]).dedupe_key([9; 16])).await;
    assert!(matches!(first, Outcome::Stored { .. }), "{first:?}");
    // A retry with a fresh id but the same key is a duplicate: the key routes it to the
    // first's partition, where the ids alone would not.
    let elsewhere = (2..=255u8)
        .map(|b| [b; 16])
        .filter(|id| partition_for_key(id, 4) != first.partition());
    for retry in elsewhere.take(4) {
        let again = send(Message::new("retry").id(retry).dedupe_key([9; 16])).await;
        assert_eq!(
            again,
            Outcome::Duplicate {
                partition: first.partition(),
                offset: first.offset()
            }
        );
    }
    // The first message's id was not what it was deduplicated on: that id is still new.
    let same_id = send(Message::new("other").id([1; 16])).await;
    assert!(matches!(same_id, Outcome::Stored { .. }), "{same_id:?}");
    // Only telling if it went where the first is (ids [1; 16] and key [9; 16] share one).
    assert_eq!(same_id.partition(), first.partition());
    let d = client.describe_channel("keyed").await.unwrap();
    assert_eq!(d.partitions.iter().map(|p| p.next_offset).sum::<u64>(), 2);
    // The consumer gets the message with its own id.
    let mut consumer = client.consumer("keyed").subscribe().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let delivery = next(&mut consumer).await;
        ids.push(delivery.id());
        delivery.ack().await.unwrap();
    }
    assert_eq!(ids.iter().filter(|id| **id == [1; 16]).count(), 2);
    broker.stop().await;
}

/// A channel whose segments `retention_max_bytes` deletes, consumed or not, a few at a time.
fn small_retention() -> ChannelSettings {
    ChannelSettings {
        retention_max_bytes: Some(8192),
        ..ChannelSettings::default()
    }
}

/// A broker on `clock` whose segments hold 4 KiB (so a few hundred messages fill several), a
/// client, and a producer to its queue `pay`, created with `settings`.
async fn pay_on_small_segments(
    dir: &std::path::Path,
    clock: &ManualClock,
    settings: ChannelSettings,
) -> (TestBroker, Client, Producer) {
    let mut config = common::config_on(dir, clock);
    config.channel_defaults.segment_bytes = 4096;
    let broker = TestBroker::start_with(config).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("pay", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client.producer("pay").build().await.unwrap();
    (broker, client, producer)
}

/// Id number `i`, in an otherwise zero id.
fn id(i: u16) -> [u8; 16] {
    let mut id = [0; 16];
    id[..2].copy_from_slice(&i.to_le_bytes());
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_of_segments_retention_deleted_stay_duplicates_after_kill_nine() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(CHILD_SEGMENT_BYTES_ENV, "4096")];
    let broker = ChildBroker::spawn_with_env(ENTRY, dir.path(), &env);
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    client
        .create_channel("pay", ChannelKind::Queue, small_retention())
        .await
        .unwrap();
    let producer = client.producer("pay").build().await.unwrap();
    let mut stored = Vec::new();
    for i in 0..300u16 {
        let body = format!("charge {i:03} {}", "x".repeat(40));
        let outcome = producer.send(Message::new(body).id(id(i))).await.unwrap();
        stored.push((id(i), outcome.offset()));
    }
    // Retention passes unconsumed messages whose ids are still live: they go to the archive.
    eventually("retention to delete the oldest segments", || async {
        let d = client.describe_channel("pay").await.unwrap();
        d.partitions[0].first_offset > 100
    })
    .await;
    assert!(
        !archive_files(dir.path()).is_empty(),
        "the ids were archived"
    );
    broker.kill9();

    let broker = ChildBroker::spawn_with_env(ENTRY, dir.path(), &env);
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let producer = client.producer("pay").build().await.unwrap();
    for &(id, offset) in &stored {
        let again = producer.send(Message::new("again").id(id)).await.unwrap();
        assert_eq!(
            again,
            Outcome::Duplicate {
                partition: 0,
                offset
            }
        );
    }
    let d = client.describe_channel("pay").await.unwrap();
    assert_eq!(d.partitions[0].next_offset, 300, "nothing stored twice");
    broker.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_segments_stay_until_their_ids_leave_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let settings = ChannelSettings {
        dedupe_window_ms: Some(60_000),
        ..ChannelSettings::default()
    };
    let (broker, client, producer) = pay_on_small_segments(dir.path(), &clock, settings).await;
    let body = "x".repeat(100);
    // Offsets 0..100 without ids, 100..200 with.
    for i in 0..200 {
        let message = Message::new(body.clone());
        let message = if i < 100 { message } else { message.id(id(i)) };
        producer.send(message).await.unwrap();
    }
    let mut consumer = client.consumer("pay").subscribe().await.unwrap();
    for _ in 0..200 {
        next(&mut consumer).await.ack().await.unwrap();
    }
    eventually("consumed segments without ids to be deleted", || async {
        let d = client.describe_channel("pay").await.unwrap();
        d.partitions[0].first_offset > 50
    })
    .await;
    drop(consumer);
    let broker = broker.restart().await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let d = client.describe_channel("pay").await.unwrap();
    assert!(
        d.partitions[0].first_offset <= 100,
        "segments holding live ids are kept: first offset {}",
        d.partitions[0].first_offset
    );
    assert!(archive_files(dir.path()).is_empty(), "nothing was archived");
    let producer = client.producer("pay").build().await.unwrap();
    let again = producer.send(Message::new("again").id(id(100))).await;
    assert_eq!(
        again.unwrap(),
        Outcome::Duplicate {
            partition: 0,
            offset: 100
        }
    );

    clock.advance(std::time::Duration::from_secs(61));
    eventually(
        "the segments to go once their ids left the window",
        || async {
            let d = client.describe_channel("pay").await.unwrap();
            d.partitions[0].first_offset > 150
        },
    )
    .await;
    assert!(archive_files(dir.path()).is_empty(), "nothing was archived");
    let broker = broker.restart().await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let producer = client.producer("pay").build().await.unwrap();
    let after = producer.send(Message::new("after").id(id(100))).await;
    assert!(
        matches!(after.unwrap(), Outcome::Stored { .. }),
        "past the window the id is new again"
    );
    broker.stop().await;
}

/// The archive files of deleted segments, anywhere under `dir`.
fn archive_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "ids") {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_ids_are_forgotten_once_the_window_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let settings = ChannelSettings {
        dedupe_window_ms: Some(60_000),
        ..small_retention()
    };
    let (broker, _client, producer) = pay_on_small_segments(dir.path(), &clock, settings).await;
    let body = "x".repeat(100);
    for i in 0..200 {
        producer
            .send(Message::new(body.clone()).id(id(i)))
            .await
            .unwrap();
    }
    eventually(
        "retention to leave the deleted segments' ids in the archive",
        || async { !archive_files(dir.path()).is_empty() },
    )
    .await;
    let again = producer
        .send(Message::new("again").id(id(0)))
        .await
        .unwrap();
    assert_eq!(
        again,
        Outcome::Duplicate {
            partition: 0,
            offset: 0
        }
    );

    clock.advance(std::time::Duration::from_secs(61));
    eventually("the archive files to be deleted", || async {
        archive_files(dir.path()).is_empty()
    })
    .await;
    let broker = broker.restart().await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let producer = client.producer("pay").build().await.unwrap();
    let after = producer
        .send(Message::new("after").id(id(0)))
        .await
        .unwrap();
    assert!(
        matches!(after, Outcome::Stored { .. }),
        "past the window the id is new again: {after:?}"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_whose_id_archive_cannot_be_written_fails_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let (broker, client, producer) =
        pay_on_small_segments(dir.path(), &clock, ChannelSettings::default()).await;
    let body = "x".repeat(100);
    for i in 0..100 {
        let message = Message::new(body.clone()).id(id(i));
        producer.send(message).await.unwrap();
    }
    // A file where the archive directory belongs: creating it fails.
    let blocker = dir.path().join("channels/pay/0.ids");
    std::fs::write(&blocker, b"in the way").unwrap();

    let err = client.purge("pay", None).await.unwrap_err();
    assert!(err.to_string().contains("id archive"), "{err}");
    let d = client.describe_channel("pay").await.unwrap();
    assert_eq!(d.partitions[0].first_offset, 0, "no segment was deleted");

    std::fs::remove_file(&blocker).unwrap();
    let broker = broker.restart().await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let producer = client.producer("pay").build().await.unwrap();
    let again = producer.send(Message::new("again").id(id(0))).await;
    assert_eq!(
        again.unwrap(),
        Outcome::Duplicate {
            partition: 0,
            offset: 0
        }
    );
    broker.stop().await;
}
