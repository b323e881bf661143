//! Behaviour of the whole log on real files in a temporary directory.

use std::time::Duration;

use sluice_protocol::{BatchBuilder, RecordBatch};

use super::*;

fn batch(records: usize, size: usize) -> RecordBatch {
    let mut b = BatchBuilder::messages();
    for i in 0..records {
        b.push_raw(&vec![i as u8; size]);
    }
    b.finish().expect("non-empty")
}

fn control() -> RecordBatch {
    let mut b = BatchBuilder::control();
    b.push_raw(b"cmd");
    b.finish().expect("non-empty")
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

async fn append(log: &mut Log, records: usize) -> Appended {
    let (appended, durable) = log.append(batch(records, 20), 1, 1000).unwrap();
    durable.await.unwrap();
    appended
}

#[tokio::test]
async fn appends_get_consecutive_offsets_and_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).await.unwrap();
    assert_eq!(log.last_entry(), None);
    let a = append(&mut log, 3).await;
    let b = append(&mut log, 2).await;
    assert_eq!((a.base_offset, a.next_offset, a.entry_index), (0, 3, 0));
    assert_eq!((b.base_offset, b.next_offset, b.entry_index), (3, 5, 1));
    assert_eq!(log.last_entry(), Some(EntryId { index: 1, term: 1 }));
    assert_eq!(log.durable_offset(), 5);
}

#[tokio::test]
async fn control_batches_take_an_entry_but_no_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).await.unwrap();
    append(&mut log, 2).await;
    let (c, _) = log.append(control(), 1, 0).unwrap();
    let m = append(&mut log, 1).await;
    assert_eq!((c.base_offset, c.next_offset, c.entry_index), (2, 2, 1));
    assert_eq!((m.base_offset, m.entry_index), (2, 2));
    let read = log.read(2, 1).await.unwrap();
    assert_eq!(read.len(), 1);
    assert!(
        read[0].is_control(),
        "the control batch at offset 2 comes first"
    );
}

#[tokio::test]
async fn reads_see_unsynced_appends_and_stop_at_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).await.unwrap();
    let mut pending = Vec::new();
    for _ in 0..40 {
        pending.push(log.append(batch(2, 20), 1, 0).unwrap().1);
    }
    let all = log.read(0, usize::MAX).await.unwrap();
    assert_eq!(all.len(), 40);
    let one = log.read(5, 1).await.unwrap();
    assert_eq!((one.len(), one[0].base_offset()), (1, 4));
    for d in pending {
        d.await.unwrap();
    }
    assert!(log.stats().segments > 1, "rolled by size");
    let again = log.read(0, usize::MAX).await.unwrap();
    assert_eq!(again, all);
    let by_entry = log.read_entries(17, 1).await.unwrap();
    assert_eq!(by_entry[0].entry_index(), 17);
    assert!(log.read(80, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_input_gets_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_batch_bytes: 200,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config).await.unwrap();
    let err = log.append(batch(1, 500), 1, 0).unwrap_err();
    assert!(
        matches!(err, LogError::BatchTooLarge { max: 200, .. }),
        "{err}"
    );
    append(&mut log, 1).await;
    let err = log.read(2, 10).await.unwrap_err();
    assert!(matches!(
        err,
        LogError::OffsetOutOfRange {
            offset: 2,
            first: 0,
            next: 1
        }
    ));
    let err = log.read_entries(3, 10).await.unwrap_err();
    assert!(matches!(err, LogError::EntryOutOfRange { entry: 3, .. }));
    let err = log.truncate_after(5).await.unwrap_err();
    assert!(matches!(err, LogError::EntryOutOfRange { entry: 5, .. }));
    let err = log.append(batch(1, 1), 0, 0).unwrap_err();
    assert!(matches!(err, LogError::TermRegression { term: 0, last: 1 }));
    let stamped = log.read(0, 1).await.unwrap().remove(0);
    let err = log.append_stamped(stamped).unwrap_err();
    assert!(matches!(
        err,
        LogError::NotContiguous {
            expected: 1,
            found: 0,
            ..
        }
    ));
}

#[tokio::test]
async fn truncate_after_drops_newer_entries_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).await.unwrap();
    for _ in 0..30 {
        append(&mut log, 2).await;
    }
    log.truncate_after(9).await.unwrap();
    assert_eq!(log.next_offset(), 20);
    assert_eq!(log.last_entry(), Some(EntryId { index: 9, term: 1 }));
    let a = append(&mut log, 1).await;
    assert_eq!((a.base_offset, a.entry_index), (20, 10));
    log.close().await.unwrap();
    let log = Log::open(dir.path(), small_segments()).await.unwrap();
    assert_eq!(log.next_offset(), 21);
    assert_eq!(log.read(0, usize::MAX).await.unwrap().len(), 11);
}

#[tokio::test]
async fn purge_before_deletes_whole_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).await.unwrap();
    for _ in 0..30 {
        append(&mut log, 2).await;
    }
    let before = log.stats().segments;
    log.purge_before(31).await.unwrap();
    assert_eq!(log.first_offset(), 31);
    assert!(log.stats().segments < before);
    assert!(matches!(
        log.read(30, 1).await,
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.read(31, 1).await.unwrap()[0].base_offset(), 30);
    log.purge_before(1000).await.unwrap();
    assert_eq!(log.first_offset(), 60);
    assert_eq!(log.stats().bytes, 0);
    drop(log);
    let mut log = Log::open(dir.path(), small_segments()).await.unwrap();
    assert_eq!((log.first_offset(), log.next_offset()), (60, 60));
    assert_eq!(log.last_entry(), Some(EntryId { index: 29, term: 1 }));
    let a = append(&mut log, 1).await;
    assert_eq!((a.base_offset, a.entry_index), (60, 30));
}

#[tokio::test]
async fn purge_segments_before_also_drops_a_segment_whose_successor_starts_at_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).await.unwrap();
    for _ in 0..30 {
        append(&mut log, 2).await;
    }
    let segments = log.segments();
    assert!(segments.len() > 2);
    assert_eq!(segments[0].base_offset, 0);
    assert_eq!(segments[0].end_offset, segments[1].base_offset);
    assert!(segments.iter().all(|s| s.first_timestamp == Some(1000)));
    let mark = segments[1].base_offset;
    log.purge_before(mark).await.unwrap();
    assert_eq!(
        log.segments()[0].base_offset,
        0,
        "kept: control batches may sit at the mark"
    );
    log.purge_segments_before(mark).await.unwrap();
    assert_eq!(log.segments()[0].base_offset, mark);
    assert_eq!(log.first_offset(), mark);
    let total: u64 = log.segments().iter().map(|s| s.bytes).sum();
    assert_eq!(total, log.stats().bytes);
}

#[tokio::test]
async fn segments_roll_by_age_of_their_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_max_age: Duration::from_secs(60),
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config).await.unwrap();
    let _ = log.append(batch(1, 1), 1, 1_000).unwrap();
    let _ = log.append(batch(1, 1), 1, 59_000).unwrap();
    assert_eq!(log.stats().segments, 1);
    let _ = log.append(batch(1, 1), 1, 61_000).unwrap();
    assert_eq!(log.stats().segments, 2);
    log.sync().await.unwrap();
}

#[tokio::test]
async fn meta_is_saved_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).await.unwrap();
    let meta = Meta {
        vote: Some((2, 7)),
        committed: Some(4),
    };
    log.save_meta(meta.clone()).await.unwrap();
    log.close().await.unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).await.unwrap();
    assert_eq!(log.meta(), &meta);
}

#[tokio::test]
async fn a_missing_or_damaged_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_segments()).await.unwrap();
    for _ in 0..30 {
        append(&mut log, 2).await;
    }
    log.close().await.unwrap();
    let (_, index) = segment::paths(dir.path(), 0);
    let good = std::fs::read(&index).unwrap();
    std::fs::write(&index, b"garbage").unwrap();
    let log = Log::open(dir.path(), small_segments()).await.unwrap();
    assert_eq!(std::fs::read(&index).unwrap(), good);
    assert_eq!(log.read_entries(3, 1).await.unwrap()[0].entry_index(), 3);
    drop(log);
    std::fs::remove_file(&index).unwrap();
    Log::open(dir.path(), small_segments()).await.unwrap();
    assert_eq!(std::fs::read(&index).unwrap(), good);
}

#[tokio::test]
async fn every_fsync_policy_completes_appends() {
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::Never,
        FsyncPolicy::Interval(Duration::from_millis(5)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            fsync,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config).await.unwrap();
        append(&mut log, 3).await;
        log.close().await.unwrap();
    }
}
