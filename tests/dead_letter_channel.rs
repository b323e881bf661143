//! The dead-letter channel: a message that passes `max_deliveries` or is rejected moves to the
//! dead-letter queue with its id, key, headers and payload plus the death headers, exactly once.

mod common;

use std::time::Duration;

use common::{next, text, TestBroker};
use sluice_client::types::{ChannelKind, ChannelSettings};
use sluice_client::{Client, Delivery, ErrorCode, Message};

fn header(d: &Delivery, name: &str) -> String {
    d.header(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_past_max_deliveries_moves_to_the_default_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        max_deliveries: Some(2),
        ..ChannelSettings::default()
    };
    client
        .create_channel("jobs", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client.producer("jobs").build().await.unwrap();
    let message = Message::new("poison").key("k1").header("app", "yes");
    let stored = producer.send(message).await.unwrap();

    let mut consumer = client.consumer("jobs").subscribe().await.unwrap();
    for count in 1..=2 {
        let d = next(&mut consumer).await;
        assert_eq!(d.delivery_count(), count);
        d.nack(Duration::ZERO).await.unwrap();
    }
    let mut dlq = common::subscribe_when_ready(&client, "jobs.dlq").await;
    let dead = next(&mut dlq).await;
    assert_eq!(text(&dead), "poison");
    assert_eq!(dead.key().map(|k| k.to_vec()), Some(b"k1".to_vec()));
    assert_eq!(header(&dead, "app"), "yes");
    assert_eq!(header(&dead, "sluice-death-reason"), "max-deliveries");
    assert_eq!(header(&dead, "sluice-death-channel"), "jobs");
    assert_eq!(header(&dead, "sluice-death-subscription"), "jobs");
    assert_eq!(
        header(&dead, "sluice-death-partition"),
        stored.partition().to_string()
    );
    assert_eq!(
        header(&dead, "sluice-death-offset"),
        stored.offset().to_string()
    );
    assert_eq!(header(&dead, "sluice-death-count"), "2");
    assert!(!header(&dead, "sluice-death-first-time").is_empty());
    assert_eq!(
        header(&dead, "sluice-death-first-time"),
        header(&dead, "sluice-death-last-time")
    );
    dead.ack().await.unwrap();

    common::eventually("the source settles", || async {
        client.describe_channel("jobs").await.unwrap().subscriptions[0].backlog == 0
    })
    .await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_message_is_dead_lettered_and_redrive_brings_it_back_without_death_headers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        dead_letter_channel: Some("graveyard".into()),
        ..ChannelSettings::default()
    };
    client
        .create_channel("mail", ChannelKind::Queue, settings)
        .await
        .unwrap();
    let producer = client.producer("mail").build().await.unwrap();
    producer
        .send(Message::new("letter").header("to", "bob"))
        .await
        .unwrap();
    let mut consumer = client.consumer("mail").subscribe().await.unwrap();
    next(&mut consumer)
        .await
        .reject("no such address")
        .await
        .unwrap();

    let mut graveyard = common::subscribe_when_ready(&client, "graveyard").await;
    let dead = next(&mut graveyard).await;
    assert_eq!(header(&dead, "sluice-death-reason"), "rejected");
    assert_eq!(header(&dead, "sluice-death-error"), "no such address");
    assert_eq!(header(&dead, "sluice-death-count"), "1");
    dead.nack(Duration::ZERO).await.unwrap(); // leave it waiting for the redrive
    graveyard.close().await.unwrap();

    assert_eq!(client.redrive("graveyard", None, None).await.unwrap(), 1);
    let back = next(&mut consumer).await;
    assert_eq!(text(&back), "letter");
    assert_eq!(header(&back, "to"), "bob");
    assert!(back
        .headers()
        .iter()
        .all(|(name, _)| !name.starts_with("sluice-death-")));
    back.ack().await.unwrap();
    common::eventually("the dead-letter queue to drain", || async {
        client
            .describe_channel("graveyard")
            .await
            .unwrap()
            .subscriptions[0]
            .backlog
            == 0
    })
    .await;
    assert_eq!(client.redrive("graveyard", None, None).await.unwrap(), 0);
    broker.stop().await;
}

/// Dead letters keep their id but are deduplicated on where they came from: two different
/// messages that share an id (here from two channels with one dead-letter queue) are both kept,
/// where deduplicating on the id stored the first and silently lost the second, whose source
/// the move had already settled. Redrive brings both back, with their id, although each source's
/// window still holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_sharing_an_id_are_all_kept_and_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let id = [7u8; 16];
    let mut consumers = Vec::new();
    for channel in ["a", "b"] {
        let settings = ChannelSettings {
            dead_letter_channel: Some("shared.dlq".into()),
            ..ChannelSettings::default()
        };
        client
            .create_channel(channel, ChannelKind::Queue, settings)
            .await
            .unwrap();
        let producer = client.producer(channel).build().await.unwrap();
        producer
            .send(Message::new(format!("from {channel}")).id(id))
            .await
            .unwrap();
        let mut consumer = client.consumer(channel).subscribe().await.unwrap();
        next(&mut consumer).await.reject("no").await.unwrap();
        consumers.push(consumer);
    }

    let mut dlq = common::subscribe_when_ready(&client, "shared.dlq").await;
    let mut dead = Vec::new();
    for _ in 0..2 {
        let d = next(&mut dlq).await;
        assert_eq!(d.id(), id);
        dead.push(text(&d));
        d.nack(Duration::ZERO).await.unwrap(); // leave it waiting for the redrive
    }
    dead.sort();
    assert_eq!(dead, ["from a", "from b"]);
    dlq.close().await.unwrap();

    assert_eq!(client.redrive("shared.dlq", None, None).await.unwrap(), 2);
    for (consumer, channel) in consumers.iter_mut().zip(["a", "b"]) {
        let back = next(consumer).await;
        assert_eq!(text(&back), format!("from {channel}"));
        assert_eq!(back.id(), id);
        back.ack().await.unwrap();
    }
    broker.stop().await;
}

child_broker_entry!();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_dead_letter_publish_and_settle_neither_loses_nor_doubles_it() {
    let dir = tempfile::tempdir().unwrap();
    let failpoint = [("SLUICE_FAILPOINT", "dead-letter-before-settle")];
    let broker = common::ChildBroker::spawn_with_env(ENTRY, dir.path(), &failpoint);
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        max_deliveries: Some(1),
        ..ChannelSettings::default()
    };
    client
        .create_channel("once", ChannelKind::Queue, settings)
        .await
        .unwrap();
    client
        .producer("once")
        .build()
        .await
        .unwrap()
        .send(Message::new("m"))
        .await
        .unwrap();
    let mut consumer = client.consumer("once").subscribe().await.unwrap();
    // The nack makes the next delivery the second: past max_deliveries, so it is dead-lettered,
    // and the broker dies right after the dead letter is stored, before the source is settled.
    let _ = next(&mut consumer).await.nack(Duration::ZERO).await;
    drop(consumer);
    drop(client);
    broker.wait_for_exit();

    let broker = common::ChildBroker::spawn(ENTRY, dir.path());
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    // Dispatch finds the message past max_deliveries again and moves it again; the copy's
    // derived id makes the dead-letter queue answer `duplicate`.
    let _consumer = client.consumer("once").subscribe().await.unwrap();
    common::eventually("the source to settle after restart", || async {
        let d = client.describe_channel("once").await.unwrap();
        d.subscriptions[0].backlog == 0
    })
    .await;
    let dlq = client.describe_channel("once.dlq").await.unwrap();
    let stored: u64 = dlq.partitions.iter().map(|p| p.next_offset).sum();
    assert_eq!(stored, 1, "the dead letter is stored exactly once");
    broker.kill9();
}

/// A redrive that cannot publish says why and loses nothing: a `--to` channel that does not exist
/// (or is the dead-letter queue itself) is refused before anything is taken; a letter whose
/// source channel is gone is skipped, the redrive moves past it to the next one, reports how
/// many it moved and how many it could not, and the skipped letter waits again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_that_cannot_publish_says_why_and_leaves_the_letters_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        dead_letter_channel: Some("graveyard".into()),
        ..ChannelSettings::default()
    };
    for channel in ["temp", "keep", "retry"] {
        client
            .create_channel(channel, ChannelKind::Queue, settings.clone())
            .await
            .unwrap();
    }
    for (channel, text) in [("temp", "orphan"), ("keep", "kept")] {
        let producer = client.producer(channel).build().await.unwrap();
        producer.send(Message::new(text)).await.unwrap();
        let mut consumer = client.consumer(channel).subscribe().await.unwrap();
        next(&mut consumer).await.reject("no").await.unwrap();
        common::eventually("the dead letter to be stored", || async {
            let d = client.describe_channel("graveyard").await;
            d.is_ok_and(|d| d.partitions[0].next_offset == 1 + u64::from(channel == "keep"))
        })
        .await;
    }

    for (to, code) in [
        ("nowhere", ErrorCode::UnknownChannel),
        ("graveyard", ErrorCode::InvalidArgument),
    ] {
        let err = client
            .redrive("graveyard", Some(to), None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(code), "{err}");
    }

    client.delete_channel("temp").await.unwrap();
    let err = client
        .redrive("graveyard", None, Some(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownChannel), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("redrove 1, 1 could not be published"),
        "{message}"
    );
    assert!(message.contains("temp"), "{message}");
    let mut keep = client.consumer("keep").subscribe().await.unwrap();
    assert_eq!(text(&next(&mut keep).await), "kept");

    assert_eq!(
        client
            .redrive("graveyard", Some("retry"), None)
            .await
            .unwrap(),
        1
    );
    let mut retry = client.consumer("retry").subscribe().await.unwrap();
    assert_eq!(text(&next(&mut retry).await), "orphan");
    broker.stop().await;
}

/// A channel deleted and created again under its name starts its offsets again. Its moves are
/// deduplicated in the dead-letter queue on keys that include which creation it is, so the new
/// channel's dead letter at offset 0 is not taken for the old one's (which would settle the
/// new message without storing its copy: lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_created_again_under_its_name_dead_letters_anew() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        dead_letter_channel: Some("shared.dlq".into()),
        ..ChannelSettings::default()
    };
    for life in ["first", "second"] {
        client
            .create_channel("jobs", ChannelKind::Queue, settings.clone())
            .await
            .unwrap();
        let producer = client.producer("jobs").build().await.unwrap();
        let stored = producer.send(Message::new(life)).await.unwrap();
        assert_eq!(stored.offset(), 0);
        let mut consumer = client.consumer("jobs").subscribe().await.unwrap();
        next(&mut consumer).await.reject("no").await.unwrap();
        common::eventually("the source to settle", || async {
            client.describe_channel("jobs").await.unwrap().subscriptions[0].backlog == 0
        })
        .await;
        drop(consumer);
        drop(producer);
        client.delete_channel("jobs").await.unwrap();
    }
    let mut dlq = client.consumer("shared.dlq").subscribe().await.unwrap();
    assert_eq!(text(&next(&mut dlq).await), "first");
    assert_eq!(text(&next(&mut dlq).await), "second");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_one_key_go_to_the_partition_their_key_picks() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let four = ChannelSettings {
        partitions: Some(4),
        ..ChannelSettings::default()
    };
    client
        .create_channel("orders", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    client
        .create_channel("orders.dlq", ChannelKind::Queue, four)
        .await
        .unwrap();
    let producer = client.producer("orders").build().await.unwrap();
    let key = "customer-7";
    for i in 0..6u8 {
        // Ids that alone would spread the copies over three of the four partitions.
        let message = Message::new(format!("m{i}")).key(key).id([i; 16]);
        producer.send(message).await.unwrap();
    }
    let mut consumer = client.consumer("orders").subscribe().await.unwrap();
    for _ in 0..6 {
        next(&mut consumer).await.reject("bad").await.unwrap();
    }
    let home = sluice_protocol::types::partition_for_key(key.as_bytes(), 4) as usize;
    common::eventually("all six dead letters in the key's partition", || async {
        let d = client.describe_channel("orders.dlq").await.unwrap();
        let counts: Vec<u64> = d.partitions.iter().map(|p| p.next_offset).collect();
        counts[home] == 6 && counts.iter().sum::<u64>() == 6
    })
    .await;
    // And in the order they were published.
    let mut dlq = client.consumer("orders.dlq").subscribe().await.unwrap();
    for i in 0..6 {
        let dead = next(&mut dlq).await;
        assert_eq!(text(&dead), format!("m{i}"));
        dead.ack().await.unwrap();
    }
    broker.stop().await;
}
