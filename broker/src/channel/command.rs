//! Commands: the state changes of a partition that go through its log.
//!
//! Every change to durable cursor state is appended as a control batch and applied only once
//! committed, in log order, so replaying the log (or, later, a follower applying replicated
//! entries) rebuilds the same state. Only first deliveries and lease timers are not logged.

use serde::{Deserialize, Serialize};
use sluice_protocol::{BatchBuilder, RecordBatch};

use super::error::ChannelError;

/// One logged state change of a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A durable subscription starts at `start`.
    CreateSubscription {
        /// Subscription name.
        name: String,
        /// First offset it receives.
        start: u64,
        /// Default lease of its deliveries, in milliseconds.
        lease_ms: u64,
    },
    /// A durable subscription and its cursor are gone.
    DeleteSubscription {
        /// Subscription name.
        name: String,
    },
    /// Offsets are done for a subscription.
    Ack {
        /// Subscription name.
        subscription: String,
        /// `[from, to)` ranges.
        ranges: Vec<(u64, u64)>,
    },
    /// Offsets are done for a subscription without being acked: dead-lettered, moved to the
    /// invalid channel, or expired.
    Settle {
        /// Subscription name.
        subscription: String,
        /// The offsets.
        offsets: Vec<u64>,
        /// What happened to them (`dead-lettered`, `invalid`, `expired`).
        outcome: String,
    },
    /// Offsets go back to a subscription (nack, expired lease, detached consumer).
    Return {
        /// Subscription name.
        subscription: String,
        /// The offsets.
        offsets: Vec<u64>,
        /// Redeliver no sooner than this, in milliseconds after the command is applied.
        delay_ms: u64,
    },
    /// Every offset below `to` is done for one subscription, or for all (purge, retention).
    Purge {
        /// The subscription, or `None` for every subscription of the partition.
        subscription: Option<String>,
        /// The committed offset when the purge was asked.
        to: u64,
    },
}

impl Command {
    /// The command as a one-record control batch.
    pub fn to_batch(&self) -> RecordBatch {
        let body = rmp_serde::to_vec(self).expect("commands always serialize");
        let mut builder = BatchBuilder::control();
        builder.push_raw(&body);
        builder.finish().expect("one record")
    }

    /// The commands of a control batch.
    ///
    /// # Errors
    /// [`ChannelError::CorruptCommand`] when a record is not a command: the log's CRC passed,
    /// so this means a bug or an incompatible format, never a torn write.
    pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ChannelError> {
        batch
            .raw_records()
            .map(|record| {
                rmp_serde::from_slice(&record).map_err(|e| ChannelError::CorruptCommand {
                    entry: batch.entry_index(),
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// The subscription the command is about; `None` when it is about all of them.
    pub fn subscription(&self) -> Option<&str> {
        match self {
            Self::CreateSubscription { name, .. } | Self::DeleteSubscription { name } => Some(name),
            Self::Ack { subscription, .. }
            | Self::Return { subscription, .. }
            | Self::Settle { subscription, .. } => Some(subscription),
            Self::Purge { subscription, .. } => subscription.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_control_batches() {
        let commands = [
            Command::CreateSubscription {
                name: "s".into(),
                start: 4,
                lease_ms: 30_000,
            },
            Command::DeleteSubscription { name: "s".into() },
            Command::Ack {
                subscription: "s".into(),
                ranges: vec![(1, 5), (7, 9)],
            },
            Command::Return {
                subscription: "s".into(),
                offsets: vec![3],
                delay_ms: 10,
            },
            Command::Purge {
                subscription: Some("s".into()),
                to: 12,
            },
            Command::Purge {
                subscription: None,
                to: 40,
            },
        ];
        for command in commands {
            let batch = command.to_batch();
            assert!(batch.is_control());
            assert_eq!(Command::from_batch(&batch).unwrap(), vec![command]);
        }
    }

    #[test]
    fn a_record_that_is_not_a_command_is_a_typed_error() {
        let mut builder = BatchBuilder::control();
        builder.push_raw(b"\xc1 not msgpack");
        let err = Command::from_batch(&builder.finish().unwrap()).unwrap_err();
        assert!(matches!(err, ChannelError::CorruptCommand { .. }));
    }
}
