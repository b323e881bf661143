//! The results file: machine, versions, the command, and one table row per (workload, system).
//!
//! Knows how to format measurements; does not run anything.

use std::fmt::Write;

use hdrhistogram::Histogram;
use sluice_bench_common::thousands;

use crate::workload::Measured;

/// One system under test as the table names it.
#[derive(Debug, Clone)]
pub struct System {
    /// Key on the command line (`sluice-always`, `nats`, ...).
    pub key: &'static str,
    /// Short name for the table and chart.
    pub label: &'static str,
    /// What a confirmation means on disk.
    pub durability: &'static str,
}

/// One cell: a workload on a system, measured or failed.
pub struct Row {
    /// Which workload.
    pub workload: String,
    /// Which system.
    pub system: System,
    /// The measurement, or why there is none.
    pub outcome: Result<Cell, String>,
}

/// A measured cell.
pub struct Cell {
    /// Client-side figures.
    pub measured: Measured,
    /// Server CPU seconds (user + system) during the cell.
    pub cpu_secs: f64,
    /// Server peak RSS during the cell, bytes.
    pub peak_rss: u64,
}

impl Cell {
    /// Publish rate, msgs/s.
    pub fn publish_rate(&self) -> f64 {
        self.measured.published as f64 / self.measured.publish_secs.max(1e-9)
    }

    /// Delivery rate over all subscriptions, msgs/s.
    pub fn deliver_rate(&self) -> f64 {
        self.measured.delivered as f64 / self.measured.deliver_secs.max(1e-9)
    }

    /// Server CPU seconds per million published messages.
    pub fn cpu_per_million(&self) -> f64 {
        self.cpu_secs / (self.measured.published.max(1) as f64 / 1e6)
    }
}

/// The markdown results page.
pub fn markdown(header: &str, rows: &[Row]) -> String {
    let mut out = String::from(header);
    out.push_str(
        "\n| workload | system | durability | publish msgs/s | deliver msgs/s | \
         publish→confirm p50 / p99 / p99.9 | publish→deliver p50 / p99 / p99.9 | \
         server CPU s per M msgs | server peak RSS |\n\
         | --- | --- | --- | ---: | ---: | --- | --- | ---: | ---: |\n",
    );
    for row in rows {
        let _ = write!(
            out,
            "| {} | {} | {} |",
            row.workload, row.system.label, row.system.durability
        );
        match &row.outcome {
            Ok(cell) => {
                let m = &cell.measured;
                let _ = writeln!(
                    out,
                    " {} | {} | {} | {} | {:.2} | {} MiB |",
                    thousands(cell.publish_rate() as u64),
                    delivered(cell),
                    quantiles(&m.confirm),
                    quantiles(&m.deliver),
                    cell.cpu_per_million(),
                    cell.peak_rss >> 20,
                );
            }
            Err(e) => {
                let _ = writeln!(out, " failed: {} | | | | | |", e.replace('|', "/"));
            }
        }
    }
    out
}

/// Delivery rate, with a note when messages went missing.
fn delivered(cell: &Cell) -> String {
    let m = &cell.measured;
    let rate = thousands(cell.deliver_rate() as u64);
    if m.delivered == 0 {
        "-".into()
    } else {
        rate
    }
}

/// "p50 / p99 / p99.9" in ms, or "-".
fn quantiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "-".into();
    }
    let ms = |q: f64| format!("{:.2}", h.value_at_quantile(q) as f64 / 1e6);
    format!("{} / {} / {} ms", ms(0.5), ms(0.99), ms(0.999))
}
