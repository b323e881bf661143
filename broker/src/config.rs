//! Broker configuration, layered: built-in defaults < TOML file < `SLUICE_*` environment <
//! command-line flags.
//!
//! The file is `config/sluice.toml` when it exists, or the one named by `--config`. Environment
//! variables use `__` between levels: `SLUICE_SERVER__MAX_CONNECTIONS=100`. Unknown keys and
//! invalid values stop startup with an error naming the key, except for the `SLUICE_*` variables
//! other Sluice programs read ([`NOT_CONFIG`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::channel::registry::MAX_PARTITIONS;
use crate::clock::SharedClock;

/// Where the default configuration file lives, relative to the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "config/sluice.toml";

/// `SLUICE_*` environment variables that are not broker configuration: `sluicectl`'s broker
/// address and the crash-test failpoint. Skipped, so that exporting `SLUICE_BROKER` for
/// `sluicectl` does not stop a broker started from the same shell.
pub const NOT_CONFIG: &[&str] = &["SLUICE_BROKER", "SLUICE_FAILPOINT"];

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file named with `--config` does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// A source could not be read or a value did not fit its key.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    /// A value parsed but makes no sense.
    #[error("invalid configuration: {key}: {problem}")]
    Value {
        /// Dotted key path.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// Everything a broker node needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Directory holding every partition's log.
    pub data_dir: PathBuf,
    /// Address the protocol listener binds.
    pub listen: SocketAddr,
    /// Address of the Prometheus `/metrics` endpoint.
    pub metrics_listen: SocketAddr,
    /// `tracing` filter when `RUST_LOG` is unset.
    pub log_level: String,
    /// Connection handling.
    pub server: ServerConfig,
    /// Settings a channel gets unless it sets its own.
    pub channel_defaults: ChannelDefaults,
    /// Where partitions get the time: the system clock, unless a test (or an embedding
    /// program) sets another. Not a configuration key.
    #[serde(skip)]
    pub clock: SharedClock,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9480)),
            log_level: "info".into(),
            server: ServerConfig::default(),
            channel_defaults: ChannelDefaults::default(),
            clock: SharedClock::system(),
        }
    }
}

/// Limits and timeouts of client connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Connections beyond this are refused with `TooManyConnections`.
    pub max_connections: usize,
    /// Largest frame accepted, header included.
    pub max_frame_bytes: usize,
    /// A connection that has not completed its handshake by then is closed.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection with no frame for this long and no attached consumer is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// On shutdown, in-flight requests get this long to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_frame_bytes: sluice_protocol::frame::DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// fdatasync before acknowledging (group commit). The default.
    Always,
    /// fdatasync every `fsync_interval`; a crash can lose acknowledged messages.
    Interval,
    /// Never fsync; the OS decides. A crash can lose acknowledged messages.
    Never,
}

/// Channel settings that apply unless a channel sets its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelDefaults {
    /// Partitions of a new channel.
    pub partitions: u32,
    /// Lease (ack deadline) of a delivery.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Durability of appends.
    pub fsync: Fsync,
    /// Period of `fsync = "interval"`.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// A segment rolls when it reaches this size.
    pub segment_bytes: u64,
    /// A segment rolls when its first batch is this old.
    #[serde(with = "humantime_serde")]
    pub segment_max_age: Duration,
    /// Largest record batch a producer may send.
    pub max_batch_bytes: usize,
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliveries: u32,
    /// A repeated message id within this window is answered `duplicate`.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
    /// Retention: segments whose messages are all older than this are deleted, consumed or
    /// not. Unset: kept until every subscription is past them.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention_max_age: Option<Duration>,
    /// Retention: a partition's oldest segments are deleted, consumed or not, while it holds
    /// more bytes than this. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_max_bytes: Option<u64>,
}

impl Default for ChannelDefaults {
    fn default() -> Self {
        Self {
            partitions: 1,
            lease: Duration::from_secs(30),
            fsync: Fsync::Always,
            fsync_interval: Duration::from_millis(100),
            segment_bytes: 128 << 20,
            segment_max_age: Duration::from_secs(7 * 24 * 3600),
            max_batch_bytes: 8 << 20,
            max_deliveries: 20,
            dedupe_window: Duration::from_secs(120),
            retention_max_age: None,
            retention_max_bytes: None,
        }
    }
}

/// Values given on the command line; they override every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
}

/// Whether `filter` is a level or comma-separated `target=level` directives (empty ones, as
/// after a trailing comma, are ignored). tracing's own parser takes any word as a target name,
/// so `warning` or `verbose` would silence the broker instead of being refused; a bare target
/// (every level of it) is refused for the same reason, `target=trace` says the same.
fn is_log_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let known = |level: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level.trim()));
    let mut directives = filter
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .peekable();
    directives.peek().is_some()
        && directives.all(|d| known(d.rsplit_once('=').map_or(d, |(_, level)| level)))
        && tracing_subscriber::EnvFilter::try_new(filter).is_ok()
}

/// The environment as text. `std::env::vars` panics on a variable that is not Unicode, anyone's;
/// here such a name is skipped and such a value made lossy (a `SLUICE_*` one then fails to parse
/// and is named in the error).
fn unicode_env(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> impl Iterator<Item = (String, String)> {
    vars.filter_map(|(name, value)| {
        Some((
            name.into_string().ok()?,
            value.to_string_lossy().into_owned(),
        ))
    })
}

impl BrokerConfig {
    /// Loads the layers: defaults, `file` (or `config/sluice.toml` if present), `SLUICE_*`
    /// environment variables, then `overrides`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key or value that is wrong.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_with_env(file, unicode_env(std::env::vars_os()), overrides)
    }

    /// [`BrokerConfig::load`] with the environment given rather than read from the process.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key or value that is wrong.
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        // Matched without regard to case, as the `config` crate matches the prefix and keys.
        let ours = |name: &str| {
            name.get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("SLUICE_"))
                && !NOT_CONFIG.iter().any(|n| n.eq_ignore_ascii_case(name))
        };
        let env: config::Map<String, String> =
            env.into_iter().filter(|(name, _)| ours(name)).collect();
        let defaults = config::Config::try_from(&Self::default())?;
        let mut builder = config::Config::builder().add_source(defaults);
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => builder = builder.add_source(config::File::from(path)),
            None => {
                builder =
                    builder.add_source(config::File::with_name(DEFAULT_CONFIG_FILE).required(false))
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SLUICE")
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        );
        builder = apply_overrides(builder, overrides)?;
        let loaded: Self = builder.build()?.try_deserialize()?;
        loaded.validate()?;
        Ok(loaded)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, problem: &str| {
            Err(ConfigError::Value {
                key,
                problem: problem.into(),
            })
        };
        let d = &self.channel_defaults;
        if d.partitions == 0 || d.partitions > MAX_PARTITIONS {
            // A default no channel may have would fail every create that relies on it,
            // dead-letter queues made on first use included.
            let problem = format!("must be between 1 and {MAX_PARTITIONS}");
            return bad("channel_defaults.partitions", &problem);
        }
        if d.max_deliveries == 0 {
            return bad("channel_defaults.max_deliveries", "must be at least 1");
        }
        if d.lease.is_zero() {
            return bad("channel_defaults.lease", "must be longer than 0");
        }
        if d.segment_bytes < 4096 {
            return bad("channel_defaults.segment_bytes", "must be at least 4096");
        }
        if self.server.max_frame_bytes < 1024 {
            return bad("server.max_frame_bytes", "must be at least 1024");
        }
        if self.server.max_connections == 0 {
            return bad("server.max_connections", "must be at least 1");
        }
        if !is_log_filter(&self.log_level) {
            return bad(
                "log_level",
                "must be a level (off, error, warn, info, debug, trace) or directives such as \
                 `sluice_broker=debug,info`",
            );
        }
        if d.max_batch_bytes + 4096 > self.server.max_frame_bytes {
            return bad(
                "channel_defaults.max_batch_bytes",
                "must leave room for a frame header within server.max_frame_bytes",
            );
        }
        Ok(())
    }

    /// The effective configuration as TOML, for `--print-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

fn apply_overrides(
    mut builder: config::ConfigBuilder<config::builder::DefaultState>,
    o: &Overrides,
) -> Result<config::ConfigBuilder<config::builder::DefaultState>, ConfigError> {
    if let Some(dir) = &o.data_dir {
        builder = builder.set_override("data_dir", dir.to_string_lossy().into_owned())?;
    }
    if let Some(addr) = o.listen {
        builder = builder.set_override("listen", addr.to_string())?;
    }
    if let Some(addr) = o.metrics_listen {
        builder = builder.set_override("metrics_listen", addr.to_string())?;
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn a_named_config_file_that_does_not_exist_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("none.toml");
        let err = BrokerConfig::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn file_values_override_defaults_and_flags_override_the_file() {
        let file = file_with("data_dir = \"/tmp/x\"\n[channel_defaults]\nlease = \"5s\"\n");
        let flags = Overrides {
            data_dir: Some("/tmp/y".into()),
            ..Overrides::default()
        };
        let config = BrokerConfig::load(Some(file.path()), &flags).unwrap();
        assert_eq!(config.channel_defaults.lease, Duration::from_secs(5));
        assert_eq!(config.data_dir, PathBuf::from("/tmp/y"));
        assert_eq!(config.listen, BrokerConfig::default().listen);
    }

    #[test]
    fn sluice_variables_configure_except_those_of_other_programs() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let none = Overrides::default();
        let loaded = BrokerConfig::load_with_env(
            None,
            env(&[
                ("SLUICE_BROKER", "127.0.0.1:7601"),
                ("SLUICE_FAILPOINT", "dead-letter-before-settle"),
                ("sluice_broker", "127.0.0.1:7602"),
                ("SLUICE_CHANNEL_DEFAULTS__LEASE", "7s"),
                ("sluice_server__max_connections", "5"),
                ("PATH", "/usr/bin"),
            ]),
            &none,
        )
        .unwrap();
        assert_eq!(loaded.channel_defaults.lease, Duration::from_secs(7));
        assert_eq!(loaded.server.max_connections, 5, "lower case is read too");
        let err =
            BrokerConfig::load_with_env(None, env(&[("SLUICE_DATADIR", "/x")]), &none).unwrap_err();
        assert!(err.to_string().contains("datadir"), "{err}");
    }

    #[test]
    fn variables_that_are_not_unicode_do_not_stop_the_broker() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let vars = vec![
            (OsString::from_vec(b"X\xff".to_vec()), OsString::from("1")),
            (
                OsString::from("OTHER"),
                OsString::from_vec(b"\xff".to_vec()),
            ),
            (
                OsString::from("SLUICE_CHANNEL_DEFAULTS__LEASE"),
                OsString::from("9s"),
            ),
        ];
        let env: Vec<_> = unicode_env(vars.into_iter()).collect();
        assert_eq!(env.len(), 2);
        let loaded = BrokerConfig::load_with_env(None, env, &Overrides::default()).unwrap();
        assert_eq!(loaded.channel_defaults.lease, Duration::from_secs(9));
    }

    #[test]
    fn an_unknown_key_is_named_in_the_error() {
        let file = file_with("[server]\nmax_conections = 5\n");
        let err = BrokerConfig::load(Some(file.path()), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("max_conections"), "{err}");
    }

    #[test]
    fn an_invalid_value_is_named_in_the_error() {
        let file = file_with("[channel_defaults]\npartitions = 0\n");
        let err = BrokerConfig::load(Some(file.path()), &Overrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("channel_defaults.partitions"),
            "{err}"
        );
        let file = file_with("[channel_defaults]\nfsync = \"sometimes\"\n");
        let err = BrokerConfig::load(Some(file.path()), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
        for (toml, key) in [
            (
                "[channel_defaults]\npartitions = 5000\n",
                "channel_defaults.partitions",
            ),
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            ("log_level = \"verbose\"\n", "log_level"),
            ("log_level = \"warning\"\n", "log_level"),
            ("log_level = \"debug=[[[\"\n", "log_level"),
            ("log_level = \" , \"\n", "log_level"),
        ] {
            let file = file_with(toml);
            let err = BrokerConfig::load(Some(file.path()), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(key), "{toml}: {err}");
        }
        for level in ["warn", "DEBUG", "sluice_broker=debug,info", "off", "info,"] {
            let file = file_with(&format!("log_level = \"{level}\"\n"));
            BrokerConfig::load(Some(file.path()), &Overrides::default()).unwrap();
        }
    }

    #[test]
    fn retention_is_unset_by_default_and_read_from_the_file() {
        assert_eq!(
            BrokerConfig::default().channel_defaults.retention_max_age,
            None
        );
        let file = file_with(
            "[channel_defaults]\nretention_max_age = \"2h\"\nretention_max_bytes = 1048576\n",
        );
        let config = BrokerConfig::load(Some(file.path()), &Overrides::default()).unwrap();
        let d = &config.channel_defaults;
        assert_eq!(d.retention_max_age, Some(Duration::from_secs(7200)));
        assert_eq!(d.retention_max_bytes, Some(1 << 20));
        let printed = config.to_toml();
        let file = file_with(&printed);
        let back = BrokerConfig::load(Some(file.path()), &Overrides::default()).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn printed_config_loads_back_to_the_same_values() {
        let printed = BrokerConfig::default().to_toml();
        let file = file_with(&printed);
        let config = BrokerConfig::load(Some(file.path()), &Overrides::default()).unwrap();
        assert_eq!(config, BrokerConfig::default());
    }
}
