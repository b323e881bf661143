//! Channel-level storage settings override the broker's `channel_defaults`.

mod common;

use common::TestBroker;
use sluice_client::types::{ChannelKind, ChannelSettings, FsyncPolicy};
use sluice_client::{Client, ErrorCode, Message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_rolls_segments_at_its_own_size_and_keeps_its_fsync_policy() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        segment_bytes: Some(4096),
        fsync: Some(FsyncPolicy::Never),
        ..ChannelSettings::default()
    };
    client
        .create_channel("small", ChannelKind::Queue, settings)
        .await
        .unwrap();
    client
        .create_channel("big", ChannelKind::Queue, ChannelSettings::default())
        .await
        .unwrap();
    for channel in ["small", "big"] {
        let producer = client.producer(channel).build().await.unwrap();
        for i in 0..60 {
            producer
                .send(Message::new(format!("{i:0>200}")))
                .await
                .unwrap();
        }
    }
    let small = client.describe_channel("small").await.unwrap();
    let big = client.describe_channel("big").await.unwrap();
    assert!(
        small.partitions[0].segments > 1,
        "{:?}",
        small.partitions[0]
    );
    assert_eq!(big.partitions[0].segments, 1);
    assert_eq!(small.settings.fsync, Some(FsyncPolicy::Never));
    assert_eq!(small.settings.segment_bytes, Some(4096));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_size_below_4_kib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await;
    let client = Client::connect(broker.addr.clone()).await.unwrap();
    let settings = ChannelSettings {
        segment_bytes: Some(100),
        ..ChannelSettings::default()
    };
    let err = client
        .create_channel("tiny", ChannelKind::Queue, settings)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument));
    broker.stop().await;
}
