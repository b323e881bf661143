//! Tuning knobs of one partition log: segment size and age, batch size limit, fsync policy and
//! index density. Plain data; the log reads it, nothing here touches files.

use std::time::Duration;

use serde::Deserialize;

/// How a partition log sizes its segments and when it makes writes durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is sealed and a new one started once it would grow past this many bytes.
    pub segment_bytes: u64,
    /// A segment is sealed once its first batch is this old (by the append timestamps).
    pub segment_max_age: Duration,
    /// Largest batch `append` accepts; bounds memory per read and per recovery step.
    pub max_batch_bytes: usize,
    /// When appended batches are forced to stable storage.
    pub fsync: FsyncPolicy,
    /// One sparse index entry per this many bytes of batches.
    pub index_interval_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 128 * 1024 * 1024,
            segment_max_age: Duration::from_secs(7 * 24 * 3600),
            max_batch_bytes: 16 * 1024 * 1024,
            fsync: FsyncPolicy::Always,
            index_interval_bytes: 4096,
        }
    }
}

/// When appended batches reach stable storage.
///
/// In configuration files: `"always"`, `"never"` or `{ interval_ms = 50 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "FsyncRepr")]
pub enum FsyncPolicy {
    /// Every append completes only after an `fdatasync` that covers it (group commit).
    #[default]
    Always,
    /// Appends complete once written to the OS; the writer syncs at most this long after.
    Interval(Duration),
    /// Appends complete once written to the OS; the OS decides when data reaches the disk.
    Never,
}

/// The configuration-file spelling of [`FsyncPolicy`].
#[derive(Deserialize)]
#[serde(untagged)]
enum FsyncRepr {
    /// `"always"` or `"never"`.
    Name(String),
    /// `{ interval_ms = N }`.
    Interval { interval_ms: u64 },
}

impl TryFrom<FsyncRepr> for FsyncPolicy {
    type Error = String;

    fn try_from(repr: FsyncRepr) -> Result<Self, String> {
        match repr {
            FsyncRepr::Name(name) if name == "always" => Ok(Self::Always),
            FsyncRepr::Name(name) if name == "never" => Ok(Self::Never),
            FsyncRepr::Name(name) => Err(format!("unknown fsync policy {name:?}")),
            FsyncRepr::Interval { interval_ms } => {
                Ok(Self::Interval(Duration::from_millis(interval_ms)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        fsync: FsyncPolicy,
    }

    fn parse(toml: &str) -> Result<FsyncPolicy, config::ConfigError> {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()?
            .try_deserialize::<Holder>()
            .map(|h| h.fsync)
    }

    #[test]
    fn fsync_policy_reads_its_three_spellings() {
        assert_eq!(parse("fsync = 'always'").unwrap(), FsyncPolicy::Always);
        assert_eq!(parse("fsync = 'never'").unwrap(), FsyncPolicy::Never);
        assert_eq!(
            parse("fsync = { interval_ms = 50 }").unwrap(),
            FsyncPolicy::Interval(Duration::from_millis(50))
        );
        assert!(parse("fsync = 'sometimes'").is_err());
    }

    #[test]
    fn default_config_syncs_every_append() {
        let config = LogConfig::default();
        assert_eq!(config.fsync, FsyncPolicy::Always);
        assert_eq!(config.index_interval_bytes, 4096);
    }
}
