//! The Prometheus exporter: the process-wide metrics recorder and the `/metrics` HTTP endpoint.
//!
//! The recorder (`metrics-exporter-prometheus`) is installed once per process, before any
//! partition opens, because partitions cache their metric handles when they start. The endpoint
//! is a small HTTP/1.1 responder of our own rather than the exporter's listener, so that it can
//! bind port 0 (tests learn the real address), and stop with the broker's shutdown token.
//!
//! Knows metric names, descriptions and buckets; nothing about channels or frames.

use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Histogram buckets of every `*_seconds` metric: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// Longest a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read; a scrape is one short line and a few headers.
const MAX_REQUEST: usize = 8 * 1024;

/// The installed recorder, shared by every endpoint of the process.
static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's global recorder, once; later calls return
/// the same handle.
///
/// # Errors
/// When another recorder was installed first (the message says so).
pub fn install() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .map_err(|e| e.to_string())?;
            let handle = builder.install_recorder().map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
}

/// Counters the broker records, with their `# HELP` text.
const COUNTERS: &[(&str, &str)] = &[
    (
        "sluice_messages_published_total",
        "Messages stored by publishes.",
    ),
    (
        "sluice_published_bytes_total",
        "Bytes of published batches.",
    ),
    (
        "sluice_messages_delivered_total",
        "Deliveries to consumers, redeliveries included.",
    ),
    (
        "sluice_messages_redelivered_total",
        "Deliveries with a delivery count above 1.",
    ),
    (
        "sluice_messages_acked_total",
        "Offsets acknowledged by consumers.",
    ),
    (
        "sluice_messages_nacked_total",
        "Deliveries returned by their consumer (nack).",
    ),
    (
        "sluice_messages_returned_total",
        "Deliveries taken back by the broker, by reason: lease_expired, consumer_detached.",
    ),
    (
        "sluice_messages_dead_lettered_total",
        "Messages sent to the dead-letter channel, by reason: max_deliveries, rejected, expired.",
    ),
    (
        "sluice_messages_expired_total",
        "Messages that expired before being acked.",
    ),
    (
        "sluice_messages_invalid_total",
        "Messages that broke the channel's contract (source=publish) or were rejected as \
         invalid by a consumer (source=consumer).",
    ),
    (
        "sluice_messages_deduplicated_total",
        "Published messages dropped as duplicates.",
    ),
    (
        "sluice_messages_purged_total",
        "Unacked messages a subscription lost to purge or to retention.",
    ),
    (
        "sluice_retention_failures_total",
        "Retention checks that failed (archiving ids, a snapshot or deleting segments); each \
         is retried a second later, and the log grows meanwhile.",
    ),
    (
        "sluice_connections_accepted_total",
        "Client connections accepted.",
    ),
    (
        "sluice_connections_refused_total",
        "Connections turned away at the limit.",
    ),
    (
        "sluice_request_errors_total",
        "Requests answered with an error, by code (refused frames included).",
    ),
    (
        "sluice_protocol_errors_total",
        "Frames refused, closing their connection (unparsable, bad handshake), by code.",
    ),
];

/// Gauges the broker records, with their `# HELP` text.
const GAUGES: &[(&str, &str)] = &[
    (
        "sluice_subscription_backlog_messages",
        "Messages not yet acked, in flight included.",
    ),
    (
        "sluice_subscription_in_flight_messages",
        "Messages out with consumers.",
    ),
    ("sluice_subscription_consumers", "Consumers attached."),
    (
        "sluice_oldest_unacked_age_seconds",
        "Age of the oldest message not acked (0 when none), measured every 5 s.",
    ),
    ("sluice_log_bytes", "Bytes of the partition's log segments."),
    (
        "sluice_log_segments",
        "Segment files of the partition's log.",
    ),
    (
        "sluice_connections_active",
        "Client connections being served.",
    ),
];

/// Histograms the broker records (all in seconds), with their `# HELP` text.
const HISTOGRAMS: &[(&str, &str)] = &[
    (
        "sluice_append_duration_seconds",
        "From appending a published batch to it being durable.",
    ),
    (
        "sluice_log_fsync_duration_seconds",
        "Time per fdatasync of a log segment.",
    ),
    (
        "sluice_log_write_duration_seconds",
        "Time per group write (writev) of a log.",
    ),
    (
        "sluice_request_duration_seconds",
        "From a decoded request to its answer or its admission by the partition, by opcode.",
    ),
];

/// `# HELP` lines for every metric the broker records.
fn describe() {
    for &(name, help) in COUNTERS {
        metrics::describe_counter!(name, help);
    }
    for &(name, help) in GAUGES {
        metrics::describe_gauge!(name, help);
    }
    for &(name, help) in HISTOGRAMS {
        metrics::describe_histogram!(name, Unit::Seconds, help);
    }
}

/// The `/metrics` endpoint, bound but not yet serving.
#[derive(Debug)]
pub struct MetricsEndpoint {
    /// The bound listener.
    listener: TcpListener,
    /// Its actual address (the port is chosen by the OS when configured as 0).
    local_addr: SocketAddr,
    /// What to render.
    handle: PrometheusHandle,
}

impl MetricsEndpoint {
    /// Installs the recorder (if not yet) and binds `addr`.
    ///
    /// # Errors
    /// When the address cannot be bound, or another recorder is installed.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let handle = install().map_err(io::Error::other)?;
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            handle,
        })
    }

    /// The address scrapers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Answers scrapes until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut upkeep = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = upkeep.tick() => self.handle.run_upkeep(),
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(stream, self.handle.clone()));
                    }
                    Err(error) => tracing::warn!(%error, "metrics accept failed"),
                },
            }
        }
    }

    /// Runs the endpoint in a task of the current runtime until `shutdown` is cancelled.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }
}

/// Reads one request and answers it; the connection closes after the answer.
async fn answer(mut stream: TcpStream, handle: PrometheusHandle) {
    let response = match timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => respond(&head, &handle),
        Ok(Err(_)) | Err(_) => return,
    };
    if let Err(error) = stream.write_all(&response).await {
        tracing::debug!(%error, "writing a metrics answer");
    }
    let _ = stream.shutdown().await;
}

/// The request line and headers, up to the blank line.
async fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return Err(io::ErrorKind::InvalidData.into());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}

/// The full HTTP response to a request head.
fn respond(head: &[u8], handle: &PrometheusHandle) -> Vec<u8> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next().unwrap_or_default());
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (Some(b"GET"), b"/metrics") => http(
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &handle.render(),
        ),
        (Some(b"GET"), _) => http("404 Not Found", "text/plain", "try /metrics\n"),
        _ => http("405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

fn http(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_on_the_grafana_dashboard_is_one_the_broker_records() {
        let dashboard = include_str!("../../config/grafana-dashboard.json");
        let known: Vec<&str> = [COUNTERS, GAUGES, HISTOGRAMS]
            .iter()
            .flat_map(|list| list.iter().map(|(name, _)| *name))
            .collect();
        let mut rest = dashboard;
        while let Some(at) = rest.find("sluice_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len());
            let used = &tail[..end];
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| used.strip_suffix(suffix))
                .filter(|base| HISTOGRAMS.iter().any(|(name, _)| name == base))
                .unwrap_or(used);
            assert!(known.contains(&base), "{used} is not a broker metric");
            rest = &tail[end..];
        }
    }

    #[test]
    fn a_request_head_is_routed_by_method_and_path() {
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let ok = respond(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", &handle);
        assert!(ok.starts_with(b"HTTP/1.1 200 OK\r\n"));
        let missing = respond(b"GET / HTTP/1.1\r\n\r\n", &handle);
        assert!(missing.starts_with(b"HTTP/1.1 404"));
        let post = respond(b"POST /metrics HTTP/1.1\r\n\r\n", &handle);
        assert!(post.starts_with(b"HTTP/1.1 405"));
    }
}
