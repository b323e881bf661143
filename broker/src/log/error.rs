//! The one error type of the log layer. Callers map it to wire codes; the log never panics on
//! what it reads from disk, it returns one of these.

use std::path::PathBuf;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A batch with no records was offered.
    #[error("batch holds no records")]
    EmptyBatch,
    /// A batch is larger than [`LogConfig::max_batch_bytes`](super::LogConfig).
    #[error("batch of {size} bytes exceeds the limit of {max}")]
    BatchTooLarge { size: usize, max: usize },
    /// A read asked for an offset outside `first..=next`.
    #[error("offset {offset} is out of range {first}..={next}")]
    OffsetOutOfRange { offset: u64, first: u64, next: u64 },
    /// A read or truncation named an entry index outside the log.
    #[error("entry {entry} is out of range {first}..={next}")]
    EntryOutOfRange { entry: u64, first: u64, next: u64 },
    /// A pre-stamped batch does not continue the log (wrong entry index or base offset).
    #[error("{field} {found} does not continue the log (expected {expected})")]
    NotContiguous {
        field: &'static str,
        expected: u64,
        found: u64,
    },
    /// An append carries a term lower than the last entry's.
    #[error("term {term} is lower than the last entry's term {last}")]
    TermRegression { term: u64, last: u64 },
    /// Data on disk is damaged where it cannot be a torn write: the partition must not open.
    #[error("{file}: corrupt at byte {position}: {reason}", file = file.display())]
    Corrupt {
        file: PathBuf,
        position: u64,
        reason: String,
    },
    /// The operating system refused a file operation.
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The log's writer has stopped (closed, or failed earlier with an I/O error).
    #[error("log is closed")]
    Closed,
}

impl LogError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A corruption report.
    pub(crate) fn corrupt(file: impl Into<PathBuf>, position: u64, reason: impl ToString) -> Self {
        Self::Corrupt {
            file: file.into(),
            position,
            reason: reason.to_string(),
        }
    }
}
