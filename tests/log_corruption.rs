//! Torn tails and corruption on real files: what recovery cuts, and what it refuses.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sluice_broker::log::{Log, LogConfig, LogError};
use sluice_protocol::{BatchBuilder, RecordBatch};

/// Every batch in these tests: one 100-byte record, so positions are easy to compute.
const BATCH_LEN: u64 = 72 + 4 + 100;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 10 * BATCH_LEN,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn batch(fill: u8) -> RecordBatch {
    let mut b = BatchBuilder::messages();
    b.push_raw(&[fill; 100]);
    b.finish().expect("one record")
}

/// A closed log of `n` batches, ten per segment.
async fn log_with(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = Log::open(dir.path(), config()).await.expect("open");
    for i in 0..n {
        let _durable = log.append(batch(i as u8), 1, 0).expect("append");
    }
    log.close().await.expect("close");
    dir
}

fn segment(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[at as usize] ^= 0x5a;
    fs::write(path, bytes).expect("write");
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_log_accepts_appends() {
    let dir = log_with(15).await;
    let active = segment(dir.path(), 10);
    let len = fs::metadata(&active).unwrap().len();
    let file = OpenOptions::new().write(true).open(&active).unwrap();
    file.set_len(len - 30).unwrap();
    let mut log = Log::open(dir.path(), config()).await.unwrap();
    assert_eq!(log.next_offset(), 14);
    assert_eq!(fs::metadata(&active).unwrap().len(), 4 * BATCH_LEN);
    let (a, durable) = log.append(batch(9), 1, 0).unwrap();
    durable.await.unwrap();
    assert_eq!(a.base_offset, 14);
    assert_eq!(log.read(0, usize::MAX).await.unwrap().len(), 15);
}

#[tokio::test]
async fn a_crc_failing_tail_is_cut() {
    let dir = log_with(15).await;
    let active = segment(dir.path(), 10);
    flip_byte(&active, 3 * BATCH_LEN + 100);
    let log = Log::open(dir.path(), config()).await.unwrap();
    assert_eq!(log.next_offset(), 13);
    assert_eq!(fs::metadata(&active).unwrap().len(), 3 * BATCH_LEN);
}

#[tokio::test]
async fn zeros_and_garbage_after_the_last_batch_are_cut() {
    let dir = log_with(12).await;
    let active = segment(dir.path(), 10);
    let mut file = OpenOptions::new().append(true).open(&active).unwrap();
    file.write_all(&[0u8; 4096]).unwrap();
    let log = Log::open(dir.path(), config()).await.unwrap();
    assert_eq!(log.next_offset(), 12);
    drop(log);
    let mut file = OpenOptions::new().append(true).open(&active).unwrap();
    file.write_all(&[0xff; 100]).unwrap();
    let log = Log::open(dir.path(), config()).await.unwrap();
    assert_eq!(log.next_offset(), 12);
}

#[tokio::test]
async fn a_corrupt_batch_inside_a_sealed_segment_refuses_to_open() {
    let dir = log_with(25).await;
    let sealed = segment(dir.path(), 10);
    flip_byte(&sealed, 4 * BATCH_LEN + 90);
    match Log::open(dir.path(), config()).await {
        Err(LogError::Corrupt { file, position, .. }) => {
            assert_eq!(file, sealed);
            assert_eq!(position, 4 * BATCH_LEN);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        fs::metadata(&sealed).unwrap().len(),
        10 * BATCH_LEN,
        "nothing was cut"
    );
}

#[tokio::test]
async fn a_damaged_stamp_outside_the_crc_is_caught_by_continuity() {
    let dir = log_with(25).await;
    let sealed = segment(dir.path(), 0);
    // Byte 0 of the sixth batch is its base offset, outside the CRC-covered area.
    flip_byte(&sealed, 5 * BATCH_LEN);
    let err = Log::open(dir.path(), config()).await.unwrap_err();
    assert!(
        matches!(&err, LogError::Corrupt { file, position, .. } if *file == sealed && *position == 5 * BATCH_LEN),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_middle_segment_refuses_to_open() {
    let dir = log_with(35).await;
    fs::remove_file(segment(dir.path(), 10)).unwrap();
    let err = Log::open(dir.path(), config()).await.unwrap_err();
    assert!(
        matches!(&err, LogError::Corrupt { file, .. } if *file == segment(dir.path(), 20)),
        "{err}"
    );
}

#[tokio::test]
async fn corruption_found_by_a_read_names_file_and_position() {
    let dir = log_with(25).await;
    let log = Log::open(dir.path(), config()).await.unwrap();
    let sealed = segment(dir.path(), 0);
    flip_byte(&sealed, 2 * BATCH_LEN + 80);
    match log.read(2, 1).await {
        Err(LogError::Corrupt { file, position, .. }) => {
            assert_eq!((file, position), (sealed, 2 * BATCH_LEN));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
