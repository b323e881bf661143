//! `ChannelError`: what can go wrong in the channel layer, and its wire code.

use sluice_protocol::{ErrorBody, ErrorCode};

use crate::log::LogError;

/// Errors of channels, partitions and subscriptions.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// No channel has this name.
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    /// A channel with this name exists.
    #[error("channel {0:?} exists already")]
    ChannelExists(String),
    /// A channel name that is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid channel name {0:?}: use 1 to 200 of A-Z a-z 0-9 . _ -, not starting with '.'"
    )]
    InvalidName(String),
    /// No such subscription on the channel.
    #[error("unknown subscription {name:?} on channel {channel:?}")]
    UnknownSubscription {
        /// Channel name.
        channel: String,
        /// Subscription name.
        name: String,
    },
    /// The subscription exists already.
    #[error("subscription {name:?} exists already on channel {channel:?}")]
    SubscriptionExists {
        /// Channel name.
        channel: String,
        /// Subscription name.
        name: String,
    },
    /// The partition number is out of range.
    #[error("channel {channel:?} has {partitions} partitions; there is no partition {partition}")]
    UnknownPartition {
        /// Channel name.
        channel: String,
        /// Requested partition.
        partition: u32,
        /// Partitions the channel has.
        partitions: u32,
    },
    /// The operation does not fit the channel's kind.
    #[error("{0}")]
    WrongKind(String),
    /// An argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A write of the partition failed earlier; it accepts no change until it is reopened.
    #[error("partition failed: {0}")]
    PartitionFailed(String),
    /// The broker failed in a way no request can cause (a background task panicked).
    #[error("internal error: {0}")]
    Internal(String),
    /// Publishing into another channel (a dead letter, an invalid copy, a redrive) was refused
    /// there.
    #[error("moving to {target}: {message}")]
    Moving {
        /// The channel published to.
        target: String,
        /// What it answered.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// A redrive published some messages and could not publish others, which wait in the
    /// dead-letter queue again.
    #[error("redrove {redriven}, {failed} could not be published: {cause}")]
    RedriveIncomplete {
        /// Messages published.
        redriven: u64,
        /// Messages not published.
        failed: u64,
        /// Why the first of them was not.
        cause: Box<ChannelError>,
    },
    /// A batch is larger than the channel allows.
    #[error("batch of {size} bytes exceeds the limit of {max}")]
    BatchTooLarge {
        /// Batch size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The consumer is not attached on this connection.
    #[error("unknown consumer {0}")]
    UnknownConsumer(u64),
    /// The consumer id is already attached on this connection.
    #[error("consumer {0} is attached already")]
    ConsumerExists(u64),
    /// A logged command could not be decoded.
    #[error("log entry {entry} holds an unreadable command: {detail}")]
    CorruptCommand {
        /// Entry index of the batch.
        entry: u64,
        /// Decoder message.
        detail: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The partition or broker is shutting down.
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// Channel metadata on disk could not be read or written.
    #[error("channel metadata {path}: {detail}")]
    Metadata {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        detail: String,
    },
}

impl ChannelError {
    /// A [`ChannelError::Metadata`] for `file` (a `what`: snapshot, id archive) from an error of
    /// the log's file helpers, naming the path the I/O error names when it has one.
    pub(crate) fn metadata(what: &str, file: &std::path::Path, e: LogError) -> Self {
        let (path, detail) = match e {
            LogError::Io { path, source } => (path, source.to_string()),
            other => (file.to_owned(), other.to_string()),
        };
        Self::Metadata {
            path,
            detail: format!("{what}: {detail}"),
        }
    }

    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownChannel(_) => ErrorCode::UnknownChannel,
            Self::ChannelExists(_) => ErrorCode::ChannelExists,
            Self::InvalidName(_) | Self::InvalidArgument(_) | Self::ConsumerExists(_) => {
                ErrorCode::InvalidArgument
            }
            Self::UnknownSubscription { .. } => ErrorCode::UnknownSubscription,
            Self::SubscriptionExists { .. } => ErrorCode::SubscriptionExists,
            Self::UnknownPartition { .. } => ErrorCode::UnknownPartition,
            Self::WrongKind(_) => ErrorCode::WrongKind,
            Self::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
            Self::UnknownConsumer(_) => ErrorCode::UnknownConsumer,
            Self::Log(_)
            | Self::CorruptCommand { .. }
            | Self::Metadata { .. }
            | Self::PartitionFailed(_) => ErrorCode::Storage,
            Self::Internal(_) => ErrorCode::Internal,
            Self::Moving { code, .. } => *code,
            Self::RedriveIncomplete { cause, .. } => cause.code(),
            Self::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }

    /// The error as it travels.
    pub fn to_wire(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_codes_of_failures_and_of_errors_met_elsewhere() {
        let moving = ChannelError::Moving {
            target: "orders.dlq".into(),
            code: ErrorCode::MessageTooLarge,
            message: "too big".into(),
        };
        let incomplete = |cause| ChannelError::RedriveIncomplete {
            redriven: 3,
            failed: 1,
            cause: Box::new(cause),
        };
        let cases = [
            (
                ChannelError::PartitionFailed("disk".into()),
                ErrorCode::Storage,
            ),
            (
                ChannelError::Internal("panicked".into()),
                ErrorCode::Internal,
            ),
            // An error met in another channel keeps its code, even wrapped twice.
            (moving, ErrorCode::MessageTooLarge),
            (
                incomplete(ChannelError::UnknownChannel("gone".into())),
                ErrorCode::UnknownChannel,
            ),
            (
                incomplete(ChannelError::Moving {
                    target: "t".into(),
                    code: ErrorCode::InvalidMessage,
                    message: "not json".into(),
                }),
                ErrorCode::InvalidMessage,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
            assert_eq!(error.to_wire().code, code);
        }
    }
}
