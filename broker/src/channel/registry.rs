//! The channel registry: name → channel, channel specs on disk, and partition tasks.
//!
//! Each channel lives in `<data_dir>/channels/<name>/`: a `channel.meta` file (its spec,
//! MessagePack, written atomically) and one directory per partition holding that partition's
//! log. Opening the broker reopens every channel found there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use sluice_protocol::types::{
    ChannelDescription, ChannelKind, ChannelSettings, FsyncPolicy as WireFsync, PartitionMeta,
    SubscriptionInfo,
};

use super::dead_letter::{self, MoveSink};
use super::error::ChannelError;
use super::partition::{
    self, DeadLetterPolicy, PartitionConfig, PartitionHandle, PartitionRequest,
};
use super::subscription::Lifetime;
use super::validation::Contract;
use crate::clock::SharedClock;
use crate::config::{BrokerConfig, ChannelDefaults, Fsync};
use crate::log::{FsyncPolicy, LogConfig};

/// The file holding a channel's spec.
const SPEC_FILE: &str = "channel.meta";
/// Most partitions a channel may have.
pub(crate) const MAX_PARTITIONS: u32 = 1024;
/// Bytes of recent batches each partition keeps in memory.
const CACHE_BYTES: usize = 64 << 20;

/// What a channel was created with; stored in its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSpec {
    /// Channel name.
    pub name: String,
    /// Queue or topic.
    pub kind: ChannelKind,
    /// Number of partitions.
    pub partitions: u32,
    /// Default lease, in milliseconds.
    pub lease_ms: u64,
    /// Everything else it was created with (dead letters, contract, expiry, dedupe).
    #[serde(default)]
    pub settings: ChannelSettings,
    /// Random, per creation: a channel deleted and created again under its name gets another,
    /// so the keys its moves are deduplicated on in other channels differ from its
    /// predecessor's (whose dead letters may still be inside a dead-letter queue's window).
    /// 0 for channels created before it existed.
    #[serde(default)]
    pub incarnation: u64,
}

/// An open channel: its spec and its partition tasks.
#[derive(Debug)]
pub struct Channel {
    /// What it was created with.
    pub spec: ChannelSpec,
    /// One handle per partition, indexed by partition number.
    pub partitions: Vec<PartitionHandle>,
    /// What its messages must look like.
    pub contract: Contract,
}

impl Channel {
    /// The handle of partition `id`.
    ///
    /// # Errors
    /// [`ChannelError::UnknownPartition`] when out of range.
    pub fn partition(&self, id: u32) -> Result<&PartitionHandle, ChannelError> {
        self.partitions
            .get(id as usize)
            .ok_or_else(|| ChannelError::UnknownPartition {
                channel: self.spec.name.clone(),
                partition: id,
                partitions: self.spec.partitions,
            })
    }

    /// Where each partition lives (this node, for now).
    pub fn partition_metas(&self, leader: &str) -> Vec<PartitionMeta> {
        (0..self.spec.partitions)
            .map(|id| PartitionMeta {
                id,
                leader: leader.to_owned(),
            })
            .collect()
    }

    /// The channel's default lease of deliveries.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.spec.lease_ms)
    }

    /// Creates a subscription on every partition.
    ///
    /// # Errors
    /// [`ChannelError::WrongKind`] on a queue; `SubscriptionExists`; storage errors.
    pub async fn create_subscription(
        &self,
        name: &str,
        lifetime: Lifetime,
        lease: Option<Duration>,
    ) -> Result<(), ChannelError> {
        if self.spec.kind == ChannelKind::Queue {
            return Err(ChannelError::WrongKind(format!(
                "{} is a queue: it has exactly one subscription, its own",
                self.spec.name
            )));
        }
        check_name(name)?;
        let lease = lease.unwrap_or(self.lease());
        for p in &self.partitions {
            let name = name.to_owned();
            p.call(|done| PartitionRequest::CreateSubscription {
                name,
                lifetime,
                lease,
                done,
            })
            .await??;
        }
        Ok(())
    }

    /// Deletes a subscription on every partition.
    ///
    /// # Errors
    /// `UnknownSubscription`, `WrongKind` on a queue, storage errors.
    pub async fn delete_subscription(&self, name: &str) -> Result<(), ChannelError> {
        if self.spec.kind == ChannelKind::Queue {
            return Err(ChannelError::WrongKind(
                "a queue's own subscription cannot be deleted".into(),
            ));
        }
        for p in &self.partitions {
            let name = name.to_owned();
            p.call(|done| PartitionRequest::DeleteSubscription { name, done })
                .await??;
        }
        Ok(())
    }

    /// Purges every partition: drops the stored messages of `subscription` (or of every
    /// subscription) up to the committed offset, and deletes the segments below the new
    /// low-water mark. Consumers stay attached; dedupe state is kept.
    ///
    /// # Errors
    /// `UnknownSubscription`; storage errors; [`ChannelError::ShuttingDown`].
    pub async fn purge(&self, subscription: Option<&str>) -> Result<(), ChannelError> {
        for p in &self.partitions {
            let subscription = subscription.map(str::to_owned);
            p.call(|done| PartitionRequest::Purge { subscription, done })
                .await??;
        }
        Ok(())
    }

    /// Offsets, sizes and subscriptions of every partition, subscriptions summed over them.
    ///
    /// # Errors
    /// [`ChannelError::ShuttingDown`] when a partition has stopped.
    pub async fn describe(&self) -> Result<ChannelDescription, ChannelError> {
        let mut partitions = Vec::new();
        let mut subscriptions: Vec<SubscriptionInfo> = Vec::new();
        for p in &self.partitions {
            let snap = p.call(|done| PartitionRequest::Describe { done }).await?;
            partitions.push(snap.info);
            for s in snap.subscriptions {
                match subscriptions.iter_mut().find(|t| t.name == s.name) {
                    Some(t) => merge(t, &s),
                    None => subscriptions.push(s),
                }
            }
        }
        Ok(ChannelDescription {
            name: self.spec.name.clone(),
            kind: self.spec.kind,
            lease_ms: self.spec.lease_ms,
            partitions,
            subscriptions,
            settings: Box::new(self.spec.settings.clone()),
        })
    }

    async fn shutdown(&self) {
        for p in &self.partitions {
            let _ = p.call(|done| PartitionRequest::Shutdown { done }).await;
        }
    }
}

fn merge(total: &mut SubscriptionInfo, part: &SubscriptionInfo) {
    total.backlog += part.backlog;
    total.in_flight += part.in_flight;
    total.ack_floor += part.ack_floor;
    total.consumers = total.consumers.max(part.consumers);
    total.oldest_unacked_ms = total.oldest_unacked_ms.max(part.oldest_unacked_ms);
}

/// Every open channel, by name.
#[derive(Debug)]
pub struct Registry {
    /// `<data_dir>/channels`.
    dir: PathBuf,
    /// Settings channels get unless they set their own.
    defaults: ChannelDefaults,
    /// Open channels.
    channels: DashMap<String, Arc<Channel>>,
    /// Serialises create and delete so two of them never race on one directory.
    admin: tokio::sync::Mutex<()>,
    /// Where partitions send dead letters and invalid messages.
    mover: MoveSink,
    /// Where partitions get the time.
    clock: SharedClock,
}

impl Registry {
    /// Opens every channel under the configured data directory.
    ///
    /// # Errors
    /// [`ChannelError`] when a spec or a partition log cannot be opened.
    pub async fn open(config: &BrokerConfig) -> Result<Arc<Self>, ChannelError> {
        let dir = config.data_dir.join("channels");
        std::fs::create_dir_all(&dir).map_err(|e| meta_error(&dir, e))?;
        let (mover, moves) = tokio::sync::mpsc::unbounded_channel();
        let registry = Arc::new(Self {
            dir,
            defaults: config.channel_defaults.clone(),
            channels: DashMap::new(),
            admin: tokio::sync::Mutex::new(()),
            mover,
            clock: config.clock.clone(),
        });
        tokio::spawn(dead_letter::run_mover(Arc::downgrade(&registry), moves));
        for spec in registry.stored_specs()? {
            let channel = registry.start(spec).await?;
            registry.channels.insert(channel.spec.name.clone(), channel);
        }
        Ok(registry)
    }

    fn stored_specs(&self) -> Result<Vec<ChannelSpec>, ChannelError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| meta_error(&self.dir, e))?;
        let mut specs = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| meta_error(&self.dir, e))?
                .path()
                .join(SPEC_FILE);
            if path.exists() {
                let bytes = std::fs::read(&path).map_err(|e| meta_error(&path, e))?;
                let spec = rmp_serde::from_slice(&bytes).map_err(|e| meta_error(&path, e))?;
                specs.push(spec);
            }
        }
        Ok(specs)
    }

    /// The channel called `name`.
    ///
    /// # Errors
    /// [`ChannelError::UnknownChannel`].
    pub fn get(&self, name: &str) -> Result<Arc<Channel>, ChannelError> {
        self.channels
            .get(name)
            .map(|c| Arc::clone(c.value()))
            .ok_or_else(|| ChannelError::UnknownChannel(name.to_owned()))
    }

    /// Every channel, sorted by name.
    pub fn list(&self) -> Vec<Arc<Channel>> {
        let mut all: Vec<_> = self
            .channels
            .iter()
            .map(|c| Arc::clone(c.value()))
            .collect();
        all.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        all
    }

    /// Creates a channel and starts its partitions.
    ///
    /// # Errors
    /// `InvalidName`, `ChannelExists`, `InvalidArgument`, storage errors.
    pub async fn create(
        &self,
        name: &str,
        kind: ChannelKind,
        settings: &ChannelSettings,
    ) -> Result<Arc<Channel>, ChannelError> {
        check_name(name)?;
        let _guard = self.admin.lock().await;
        if self.channels.contains_key(name) {
            return Err(ChannelError::ChannelExists(name.to_owned()));
        }
        let spec = self.spec_for(name, kind, settings)?;
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| meta_error(&dir, e))?;
        let bytes = rmp_serde::to_vec_named(&spec).expect("specs serialize");
        write_atomically(&dir.join(SPEC_FILE), &bytes)?;
        let channel = self.start(spec).await?;
        self.channels.insert(name.to_owned(), Arc::clone(&channel));
        tracing::info!(channel = name, %kind, partitions = channel.spec.partitions, "channel created");
        Ok(channel)
    }

    fn spec_for(
        &self,
        name: &str,
        kind: ChannelKind,
        settings: &ChannelSettings,
    ) -> Result<ChannelSpec, ChannelError> {
        let partitions = settings.partitions.unwrap_or(self.defaults.partitions);
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(ChannelError::InvalidArgument(format!(
                "partitions must be between 1 and {MAX_PARTITIONS}, not {partitions}"
            )));
        }
        let lease_ms = settings
            .lease_ms
            .unwrap_or(self.defaults.lease.as_millis() as u64);
        if lease_ms == 0 {
            return Err(ChannelError::InvalidArgument(
                "lease must be longer than 0".into(),
            ));
        }
        if settings.segment_bytes.is_some_and(|b| b < 4096) {
            return Err(ChannelError::InvalidArgument(
                "segment_bytes must be at least 4096".into(),
            ));
        }
        if let Some(0) = settings.max_deliveries {
            return Err(ChannelError::InvalidArgument(
                "max_deliveries must be at least 1".into(),
            ));
        }
        for (what, target) in [
            ("dead_letter_channel", &settings.dead_letter_channel),
            ("invalid_channel", &settings.invalid_channel),
        ] {
            match target {
                Some(t) if t == name => {
                    return Err(ChannelError::InvalidArgument(format!(
                        "{what} cannot be the channel itself"
                    )))
                }
                Some(t) => check_name(t)?,
                None => {}
            }
        }
        Ok(ChannelSpec {
            name: name.to_owned(),
            kind,
            partitions,
            lease_ms,
            settings: settings.clone(),
            incarnation: rand::random(),
        })
    }

    /// Stops a channel's partitions and deletes its data.
    ///
    /// # Errors
    /// `UnknownChannel`, or the directory could not be removed.
    pub async fn delete(&self, name: &str) -> Result<(), ChannelError> {
        let _guard = self.admin.lock().await;
        let (_, channel) = self
            .channels
            .remove(name)
            .ok_or_else(|| ChannelError::UnknownChannel(name.to_owned()))?;
        channel.shutdown().await;
        let dir = self.dir.join(name);
        std::fs::remove_dir_all(&dir).map_err(|e| meta_error(&dir, e))?;
        tracing::info!(channel = name, "channel deleted");
        Ok(())
    }

    /// Stops every partition: pending writes become durable, logs close.
    pub async fn shutdown(&self) {
        for channel in self.list() {
            channel.shutdown().await;
        }
    }

    async fn start(&self, spec: ChannelSpec) -> Result<Arc<Channel>, ChannelError> {
        let mut partitions = Vec::with_capacity(spec.partitions as usize);
        for id in 0..spec.partitions {
            let config = self.partition_config(&spec, id);
            let dir = self.dir.join(&spec.name).join(id.to_string());
            partitions.push(partition::open(config, dir).await?);
        }
        let s = &spec.settings;
        let contract = Contract {
            max_payload_bytes: s.max_payload_bytes,
            content_types: s.content_types.clone(),
            required_headers: s.required_headers.clone(),
            payload_format: s.payload_format,
        };
        Ok(Arc::new(Channel {
            spec,
            partitions,
            contract,
        }))
    }

    fn partition_config(&self, spec: &ChannelSpec, id: u32) -> PartitionConfig {
        let d = &self.defaults;
        let s = &spec.settings;
        let interval = s
            .fsync_interval_ms
            .map_or(d.fsync_interval, Duration::from_millis);
        let fsync = match s.fsync {
            Some(WireFsync::Always) => FsyncPolicy::Always,
            Some(WireFsync::Interval) => FsyncPolicy::Interval(interval),
            Some(WireFsync::Never) => FsyncPolicy::Never,
            None => match d.fsync {
                Fsync::Always => FsyncPolicy::Always,
                Fsync::Interval => FsyncPolicy::Interval(interval),
                Fsync::Never => FsyncPolicy::Never,
            },
        };
        let log = LogConfig {
            segment_bytes: s.segment_bytes.unwrap_or(d.segment_bytes),
            segment_max_age: d.segment_max_age,
            max_batch_bytes: d.max_batch_bytes,
            fsync,
            ..LogConfig::default()
        };
        PartitionConfig {
            channel: Arc::from(spec.name.as_str()),
            incarnation: spec.incarnation,
            id,
            kind: spec.kind,
            lease: Duration::from_millis(spec.lease_ms),
            max_batch_bytes: d.max_batch_bytes,
            log,
            cache_bytes: CACHE_BYTES,
            dead_letters: DeadLetterPolicy {
                max_deliveries: spec.settings.max_deliveries.unwrap_or(d.max_deliveries),
                channel: spec
                    .settings
                    .dead_letter_channel
                    .clone()
                    .unwrap_or_else(|| format!("{}.dlq", spec.name)),
                on_expiry: spec.settings.expired_to_dead_letter.unwrap_or(false),
                invalid_channel: spec.settings.invalid_channel.clone(),
                mover: self.mover.clone(),
            },
            max_age: spec.settings.max_age_ms.map(Duration::from_millis),
            dedupe_window: spec
                .settings
                .dedupe_window_ms
                .map_or(d.dedupe_window, Duration::from_millis),
            retention_max_age: spec
                .settings
                .retention_max_age_ms
                .map(Duration::from_millis)
                .or(d.retention_max_age),
            retention_max_bytes: spec.settings.retention_max_bytes.or(d.retention_max_bytes),
            clock: self.clock.clone(),
        }
    }
}

/// Channel and subscription names: 1–200 of `[A-Za-z0-9._-]`, not starting with `.`.
///
/// # Errors
/// [`ChannelError::InvalidName`].
pub fn check_name(name: &str) -> Result<(), ChannelError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.chars().all(ok_char);
    if ok {
        Ok(())
    } else {
        Err(ChannelError::InvalidName(name.to_owned()))
    }
}

fn meta_error(path: &Path, e: impl std::fmt::Display) -> ChannelError {
    ChannelError::Metadata {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file: temp file,
/// fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ChannelError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| meta_error(&tmp, e))?;
    file.write_all(bytes).map_err(|e| meta_error(&tmp, e))?;
    file.sync_all().map_err(|e| meta_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| meta_error(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| meta_error(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["orders", "a.b-c_d", "X9"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "sp ace", &"x".repeat(201)] {
            assert!(
                matches!(check_name(bad), Err(ChannelError::InvalidName(_))),
                "{bad}"
            );
        }
    }
}
