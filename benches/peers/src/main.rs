//! `sluice-peers`: Sluice side by side with NATS JetStream and RabbitMQ (quorum and classic
//! queues over AMQP, streams over the stream protocol) on one machine, in one run, with the same
//! client-side timing code (`sluice-bench-common`).
//!
//! Starts each server itself (temporary data directory, 127.0.0.1 only, stopped by pid at the
//! end or on failure), runs every workload against it through its [`driver`], reads the
//! server's CPU time and peak RSS from `/proc`, and writes `<out>/<date>.md` and
//! `<out>/<date>.svg`. `benches/peers.sh` installs the peers and runs this.
//!
//! ```text
//! sluice-peers --sluice-bin target/release/sluice --out-dir benches/results --duration 3s
//! ```

mod chart;
mod driver;
mod report;
mod server;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use driver::Driver;
use report::{Cell, Row, System};
use server::Server;
use workload::Workload;

/// Benchmark Sluice against NATS JetStream and RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "sluice-peers")]
struct Args {
    /// The Sluice broker binary.
    #[arg(long, default_value = "target/release/sluice")]
    sluice_bin: PathBuf,
    /// Where `<date>.md` and `<date>.svg` go.
    #[arg(long, default_value = "benches/results")]
    out_dir: PathBuf,
    /// Publishing time per cell.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    duration: Duration,
    /// Runs of every cell; tables and chart show the median of the runs. Each run goes through
    /// every workload in turn before the next starts, so slow spells of a shared machine are
    /// spread over workloads instead of hitting all runs of one.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Longest a cell may take before it counts as failed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "90s")]
    cell_timeout: Duration,
    /// Systems to run, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sluice-always,sluice-never,nats,rabbitmq-quorum,rabbitmq-quorum-multi-ack,rabbitmq-classic,rabbitmq-classic-multi-ack,rabbitmq-stream"
    )]
    systems: Vec<String>,
    /// Only workloads whose label contains one of these (comma separated); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Name of the output files (default: today's date, UTC).
    #[arg(long)]
    name: Option<String>,
}

/// Every system the harness knows, in table order.
const SYSTEMS: &[System] = &[
    System {
        key: "sluice-always",
        label: "sluice always",
        durability: "fdatasync before confirm (group commit)",
    },
    System {
        key: "sluice-never",
        label: "sluice never",
        durability: "no fsync (page cache)",
    },
    System {
        key: "nats",
        label: "nats js",
        durability: "no fsync per message (2.9 cannot; page cache, periodic sync)",
    },
    System {
        key: "rabbitmq-quorum",
        label: "rmq quorum",
        durability: "fsync before confirm (Raft log, batched)",
    },
    System {
        key: "rabbitmq-quorum-multi-ack",
        label: "rmq quorum multi-ack",
        durability: "as rmq quorum; consumer acks every half window with `multiple`",
    },
    System {
        key: "rabbitmq-classic",
        label: "rmq classic",
        durability: "persistent msgs, fsync before confirm (batched)",
    },
    System {
        key: "rabbitmq-classic-multi-ack",
        label: "rmq classic multi-ack",
        durability: "as rmq classic; consumer acks every half window with `multiple`",
    },
    System {
        key: "rabbitmq-stream",
        label: "rmq stream",
        durability: "no fsync (confirm once written to the segment file); ack = stored offset",
    },
];

fn workloads(duration: Duration) -> Vec<Workload> {
    let w = |label: &str, size, window, rate, subscriptions, phased| Workload {
        label: label.to_owned(),
        size,
        window,
        rate,
        subscriptions,
        phased,
        duration,
    };
    vec![
        w(
            "1: 100 B, window 1024, publish then drain",
            100,
            1024,
            0,
            1,
            true,
        ),
        w(
            "1: 1 KiB, window 1024, publish then drain",
            1024,
            1024,
            0,
            1,
            true,
        ),
        w("3: 100 B, window 1, live consumer", 100, 1, 0, 1, false),
        w(
            "2: 100 B, open loop 5k msgs/s",
            100,
            1 << 16,
            5_000,
            1,
            false,
        ),
        w(
            "2: 100 B, open loop 20k msgs/s",
            100,
            1 << 16,
            20_000,
            1,
            false,
        ),
        w(
            "4: 100 B, fan-out to 4, window 1024",
            100,
            1024,
            0,
            4,
            false,
        ),
    ]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let workloads: Vec<Workload> = workloads(args.duration)
        .into_iter()
        .filter(|w| args.only.is_empty() || args.only.iter().any(|o| w.label.contains(o.as_str())))
        .collect();
    let mut rows = Vec::new();
    for key in &args.systems {
        let system = SYSTEMS
            .iter()
            .find(|s| s.key == key)
            .with_context(|| format!("unknown system {key:?}"))?;
        rows.extend(run_system(&args, system, &workloads).await);
    }
    rows.sort_by_key(|r| {
        let w = workloads.iter().position(|w| w.label == r.workload);
        let s = SYSTEMS.iter().position(|s| s.key == r.system.key);
        (w, s)
    });
    write_results(&args, &rows)
}

/// Starts the system's server, runs every workload, stops the server.
async fn run_system(args: &Args, system: &System, workloads: &[Workload]) -> Vec<Row> {
    eprintln!("== {}", system.label);
    let started = match system.key {
        "sluice-always" => server::sluice(&args.sluice_bin, "always").await,
        "sluice-never" => server::sluice(&args.sluice_bin, "never").await,
        "nats" => server::nats().await,
        "rabbitmq-stream" => server::rabbitmq(true).await,
        _ => server::rabbitmq(false).await,
    };
    let server = match started {
        Ok(server) => server,
        Err(e) => return failed_all(system, workloads, &format!("{e:#}")),
    };
    let addr = server.addr.clone();
    match system.key {
        "sluice-always" | "sluice-never" => {
            let d = Arc::new(driver::sluice::Sluice { addr });
            cells(d, &server, args, system, workloads).await
        }
        "nats" => {
            let d = Arc::new(driver::nats::Nats { addr });
            cells(d, &server, args, system, workloads).await
        }
        "rabbitmq-stream" => {
            let Some((host, Ok(port))) = addr.rsplit_once(':').map(|(h, p)| (h, p.parse())) else {
                return failed_all(system, workloads, &format!("bad address {addr}"));
            };
            let host = host.to_owned();
            let d = Arc::new(driver::rabbitmq_stream::RabbitStream { host, port });
            cells(d, &server, args, system, workloads).await
        }
        key => {
            let uri = format!("amqp://guest:guest@{addr}/%2f");
            let queue_type = if key.contains("quorum") {
                "quorum"
            } else {
                "classic"
            };
            let multi_ack = key.ends_with("multi-ack");
            let d = Arc::new(driver::rabbitmq::RabbitMq {
                uri,
                queue_type,
                multi_ack,
            });
            cells(d, &server, args, system, workloads).await
        }
    }
}

/// Runs every workload `args.runs` times against one server, run by run.
async fn cells<D: Driver>(
    d: Arc<D>,
    server: &Server,
    args: &Args,
    system: &System,
    workloads: &[Workload],
) -> Vec<Row> {
    let mut rows: Vec<Row> = workloads
        .iter()
        .map(|w| Row::new(w.label.clone(), system.clone()))
        .collect();
    for run in 0..args.runs {
        for (i, (w, row)) in workloads.iter().zip(&mut rows).enumerate() {
            eprintln!("  {} (run {} of {}) ...", w.label, run + 1, args.runs);
            let dest = format!("peers{i}r{run}");
            match cell(&d, server, args, &dest, w).await {
                Ok(c) => {
                    eprintln!(
                        "    published {} ({:.0}/s), delivered {} ({:.0}/s), cpu {:.2} s",
                        c.measured.published,
                        c.publish_rate(),
                        c.measured.delivered,
                        c.deliver_rate().unwrap_or(0.0),
                        c.cpu_secs
                    );
                    row.cells.push(c);
                }
                Err(e) => {
                    eprintln!("    failed: {e}");
                    row.failures.push(e);
                }
            }
        }
    }
    rows
}

/// One run of one workload on destination `dest`, which is deleted afterwards.
async fn cell<D: Driver>(
    d: &Arc<D>,
    server: &Server,
    args: &Args,
    dest: &str,
    w: &Workload,
) -> Result<Cell, String> {
    server.reset_peak_rss();
    let cpu_before = server.cpu_seconds();
    let run = tokio::time::timeout(args.cell_timeout, workload::run(d.clone(), dest, w)).await;
    let outcome = match run {
        Ok(Ok(measured)) => Ok(Cell {
            measured,
            cpu_secs: server.cpu_seconds() - cpu_before,
            peak_rss: server.peak_rss(),
        }),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("timed out after {:?}", args.cell_timeout)),
    };
    clean(&**d, dest, w.subscriptions).await;
    outcome
}

/// Deletes a cell's destination and flushes the page cache to disk, so the next cell starts
/// from an empty server and an idle disk. A failure is reported, not fatal: the next cell uses
/// a new name anyway.
async fn clean<D: Driver>(d: &D, dest: &str, subscriptions: usize) {
    let deleted = tokio::time::timeout(Duration::from_secs(60), d.delete(dest, subscriptions));
    match deleted.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("    deleting {dest} failed: {e:#}"),
        Err(_) => eprintln!("    deleting {dest} timed out"),
    }
    // SAFETY: sync(2) has no preconditions.
    let _ = tokio::task::spawn_blocking(|| unsafe { libc::sync() }).await;
}

fn failed_all(system: &System, workloads: &[Workload], error: &str) -> Vec<Row> {
    eprintln!("  could not start: {error}");
    workloads
        .iter()
        .map(|w| {
            let mut row = Row::new(w.label.clone(), system.clone());
            row.failures.push(format!("server did not start: {error}"));
            row
        })
        .collect()
}

/// Writes `<date>.md` and `<date>.svg`.
fn write_results(args: &Args, rows: &[Row]) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)?;
    let name = args.name.clone().unwrap_or_else(today);
    let md = args.out_dir.join(format!("{name}.md"));
    let svg = args.out_dir.join(format!("{name}.svg"));
    chart::draw(&svg, &panels(rows))?;
    let header = header(args, &name);
    std::fs::write(&md, report::markdown(&header, rows))?;
    eprintln!("wrote {} and {}", md.display(), svg.display());
    Ok(())
}

/// The chart's panels: the headline figures per system, medians of the runs.
fn panels(rows: &[Row]) -> Vec<chart::Panel> {
    let pick =
        |workload: &str, title: &str, unit: &str, f: &dyn Fn(&Cell) -> Option<f64>| chart::Panel {
            title: title.to_owned(),
            unit: unit.to_owned(),
            bars: rows
                .iter()
                .filter(|r| r.workload.starts_with(workload))
                .map(|r| (r.system.label.to_owned(), r.median(f)))
                .collect(),
        };
    vec![
        pick("1: 100 B", "publish, 100 B, window 1024", "msgs/s", &|c| {
            Some(c.publish_rate())
        }),
        pick("1: 100 B", "drain, 100 B, window 1024", "msgs/s", &|c| {
            c.deliver_rate()
        }),
        pick(
            "2: 100 B, open loop 20k",
            "p99 publish→deliver at 20k msgs/s",
            "ms",
            &|c| c.deliver_ms(0.99),
        ),
        pick("1: 100 B", "server CPU per M msgs (100 B)", "CPU s", &|c| {
            Some(c.cpu_per_million())
        }),
    ]
}

fn header(args: &Args, name: &str) -> String {
    format!(
        "# Sluice vs NATS JetStream vs RabbitMQ, {name}\n\n\
         Machine: {}. Same machine for clients and servers; each server started fresh by the \
         harness under a temporary directory on 127.0.0.1. Versions: {}. {} of publishing per \
         cell, {} runs of each cell (every run goes through all workloads before the next; no \
         warm-up). Figures are medians of the runs, with the min–max spread in parentheses; \
         the chart shows the medians.\n\n\
         Reproduce: `benches/peers.sh` (installs nats-server and rabbitmq-server with apt if \
         missing, builds, runs everything).\n\n\
         Latencies are timed from each message's scheduled send (open loop: no coordinated \
         omission). Workloads 1 publish first, then drain with one consumer; the others publish \
         and consume at once. Every consumer acks every message individually (RabbitMQ streams: \
         stores its offset after every message); fan-out delivery \
         rates count all 4 subscriptions; CPU is per published message. Each cell uses a new \
         destination, deleted after the cell (then `sync`), so each starts from an empty server. Peak RSS is the \
         server's (incl. its children) during the cell.\n",
        machine(),
        versions(),
        humantime::format_duration(args.duration),
        args.runs,
    )
}

/// CPU model, cores, memory, kernel.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb >> 20);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} vCPU {model}, {mem_gib} GiB RAM, Linux {}",
        kernel.trim()
    )
}

/// Server versions.
fn versions() -> String {
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let rabbit = std::fs::read_dir("/usr/lib/rabbitmq/lib")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .replace("rabbitmq_server-", "RabbitMQ ")
        })
        .unwrap_or_default();
    format!(
        "Sluice {}, {}, {}",
        run("git", &["rev-parse", "--short", "HEAD"]),
        run("nats-server", &["--version"]),
        rabbit
    )
}

/// Today's date, UTC, as YYYY-MM-DD.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
