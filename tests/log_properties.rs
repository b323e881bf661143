//! Model test: random sequences of append / read / read_entries / truncate_after /
//! purge_before / sync / close-and-reopen against an in-memory model of the log.

use proptest::prelude::*;
use sluice_broker::log::{EntryId, Log, LogConfig, LogError};
use sluice_protocol::{BatchBuilder, RecordBatch};

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: u8,
        size: u8,
        control: bool,
    },
    NewTerm,
    Read {
        at: u8,
        max: u16,
    },
    ReadEntries {
        at: u8,
        max: u16,
    },
    TruncateAfter {
        back: u8,
    },
    PurgeBefore {
        at: u8,
    },
    Sync,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1..5u8, any::<u8>(), prop::bool::weighted(0.15))
            .prop_map(|(records, size, control)| Op::Append { records, size, control }),
        1 => Just(Op::NewTerm),
        3 => (any::<u8>(), any::<u16>()).prop_map(|(at, max)| Op::Read { at, max }),
        2 => (any::<u8>(), any::<u16>()).prop_map(|(at, max)| Op::ReadEntries { at, max }),
        1 => (0..6u8).prop_map(|back| Op::TruncateAfter { back }),
        1 => any::<u8>().prop_map(|at| Op::PurgeBefore { at }),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
    ]
}

/// The model: every batch ever kept (purging only raises the low-water mark).
#[derive(Debug, Default)]
struct Model {
    batches: Vec<RecordBatch>,
    low_water: u64,
    term: u64,
    /// Entries below this were purged with everything else (`purge_before(next_offset)`).
    floor: u64,
    /// The highest low-water mark a purge ever set (truncation may lower `low_water` later,
    /// which does not bring purged batches back).
    mark: u64,
    /// Next entry index at the last purge: later entries were never exposed to a purge.
    since_purge: u64,
}

impl Model {
    fn next_offset(&self) -> u64 {
        self.batches.last().map_or(0, |b| b.next_offset())
    }

    fn next_entry(&self) -> u64 {
        self.batches.last().map_or(0, |b| b.entry_index() + 1)
    }

    /// Picks a position in `first..=next` (mostly) from a random byte.
    fn pick(first: u64, next: u64, at: u8) -> u64 {
        let span = next - first + 3;
        (first + u64::from(at) % span).saturating_sub(1)
    }

    /// What a read should return; `first` is the log's first retained entry (checked separately
    /// against what purging may drop).
    fn expect(
        &self,
        first: u64,
        reached: impl Fn(&RecordBatch) -> bool,
        max: usize,
    ) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        let mut total = 0;
        for b in self
            .batches
            .iter()
            .filter(|b| b.entry_index() >= first && reached(b))
        {
            if total >= max && !out.is_empty() {
                break;
            }
            total += b.len();
            out.push(b.clone());
        }
        out
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

fn build(records: u8, size: u8, control: bool) -> RecordBatch {
    let mut b = if control {
        BatchBuilder::control()
    } else {
        BatchBuilder::messages()
    };
    for i in 0..records {
        b.push_raw(&vec![i ^ size; usize::from(size)]);
    }
    b.finish().expect("non-empty")
}

async fn step(
    log: &mut Log,
    model: &mut Model,
    op: Op,
    dir: &std::path::Path,
) -> Result<(), TestCaseError> {
    match op {
        Op::Append {
            records,
            size,
            control,
        } => {
            let (a, _durable) = log
                .append(build(records, size, control), model.term, 7)
                .unwrap();
            prop_assert_eq!(a.base_offset, model.next_offset());
            prop_assert_eq!(a.entry_index, model.next_entry());
            let stamped = log.read_entries(a.entry_index, 1).await.unwrap();
            model.batches.push(stamped[0].clone());
        }
        Op::NewTerm => model.term += 1,
        Op::Read { at, max } => {
            let from = Model::pick(model.low_water, model.next_offset(), at);
            let got = log.read(from, usize::from(max)).await;
            if from < model.low_water || from > model.next_offset() {
                let out_of_range = matches!(got, Err(LogError::OffsetOutOfRange { .. }));
                prop_assert!(out_of_range, "read({}) gave {:?}", from, got);
            } else if from == model.next_offset() {
                prop_assert!(got.unwrap().is_empty());
            } else {
                let reached = |b: &RecordBatch| b.next_offset() > from || b.base_offset() >= from;
                prop_assert_eq!(
                    got.unwrap(),
                    model.expect(log.first_entry(), reached, usize::from(max))
                );
            }
        }
        Op::ReadEntries { at, max } => {
            let first = log.first_entry();
            let from = Model::pick(first, model.next_entry(), at);
            let got = log.read_entries(from, usize::from(max)).await;
            if from < first || from > model.next_entry() {
                let out_of_range = matches!(got, Err(LogError::EntryOutOfRange { .. }));
                prop_assert!(out_of_range, "{:?}", got);
            } else {
                let reached = |b: &RecordBatch| b.entry_index() >= from;
                let want = match from == model.next_entry() {
                    true => Vec::new(),
                    false => model.expect(log.first_entry(), reached, usize::from(max)),
                };
                prop_assert_eq!(got.unwrap(), want);
            }
        }
        Op::TruncateAfter { back } => {
            let Some(last) = model.next_entry().checked_sub(1) else {
                return Ok(());
            };
            let entry = last.saturating_sub(u64::from(back));
            let got = log.truncate_after(entry).await;
            if entry + 1 < log.first_entry() {
                let out_of_range = matches!(got, Err(LogError::EntryOutOfRange { .. }));
                prop_assert!(out_of_range, "{:?}", got);
            } else {
                got.unwrap();
                model.batches.retain(|b| b.entry_index() <= entry);
                model.low_water = model.low_water.min(model.next_offset());
            }
        }
        Op::PurgeBefore { at } => {
            let offset = Model::pick(model.low_water, model.next_offset(), at);
            log.purge_before(offset).await.unwrap();
            model.low_water = model.low_water.max(offset.min(model.next_offset()));
            model.mark = model.mark.max(model.low_water);
            model.since_purge = model.next_entry();
            if model.low_water == model.next_offset() {
                // Purging up to the end may drop everything (a control-only tail may stay).
                model.floor = log.first_entry();
            }
        }
        Op::Sync => {
            log.sync().await.unwrap();
            prop_assert_eq!(log.durable_offset(), model.next_offset());
        }
        Op::Reopen => {
            let old = std::mem::replace(log, Log::open(dir.join("other"), config()).await.unwrap());
            old.close().await.unwrap();
            let other = std::mem::replace(log, Log::open(dir, config()).await.unwrap());
            other.close().await.unwrap();
        }
    }
    check_bounds(log, model)
}

fn check_bounds(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.next_offset(), model.next_offset());
    prop_assert_eq!(log.first_offset(), model.low_water);
    let last = model.batches.last().map(|b| EntryId {
        index: b.entry_index(),
        term: b.term(),
    });
    prop_assert_eq!(log.last_entry(), last);
    // Purging never drops a batch that a read from the low-water mark could return.
    let protected = model
        .batches
        .iter()
        .filter(|b| b.entry_index() >= model.floor)
        .find(|b| {
            let (mark, fresh) = (model.mark, b.entry_index() >= model.since_purge);
            fresh || b.next_offset() > mark || b.base_offset() >= mark
        });
    if let Some(b) = protected {
        prop_assert!(log.first_entry() <= b.entry_index());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_log_behaves_like_its_model(ops in prop::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Log::open(dir.path(), config()).await.unwrap();
            let mut model = Model { term: 1, ..Model::default() };
            for op in ops {
                step(&mut log, &mut model, op, dir.path()).await?;
            }
            log.close().await.unwrap();
            Ok::<(), TestCaseError>(())
        })?;
    }
}
