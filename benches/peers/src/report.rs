//! The results file: machine, versions, the command, and one table row per (workload, system)
//! with the median of its runs and their min–max spread.
//!
//! Knows how to summarise and format measurements; does not run anything.

use std::fmt::Write;

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

/// One workload on one system: the runs that were measured and why the others failed.
pub struct Row {
    /// Which workload.
    pub workload: String,
    /// Which system.
    pub system: System,
    /// One per successful run.
    pub cells: Vec<Cell>,
    /// One per failed run: why.
    pub failures: Vec<String>,
}

/// One measured run of a cell.
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

    /// Delivery rate over all subscriptions, msgs/s; `None` when nothing was delivered.
    pub fn deliver_rate(&self) -> Option<f64> {
        (self.measured.delivered > 0)
            .then(|| self.measured.delivered as f64 / self.measured.deliver_secs.max(1e-9))
    }

    /// Server CPU seconds per million published messages.
    pub fn cpu_per_million(&self) -> f64 {
        self.cpu_secs / (self.measured.published.max(1) as f64 / 1e6)
    }

    /// Publish→confirm latency at quantile `q`, ms.
    pub fn confirm_ms(&self, q: f64) -> Option<f64> {
        let h = &self.measured.confirm;
        (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1e6)
    }

    /// Publish→deliver latency at quantile `q`, ms (`None` for phased runs).
    pub fn deliver_ms(&self, q: f64) -> Option<f64> {
        let h = &self.measured.deliver;
        (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1e6)
    }
}

/// A figure over the runs of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
    /// Runs it was computed from.
    pub runs: usize,
}

impl Stat {
    /// The median, min and max of `values`; `None` when there are none.
    pub fn of(mut values: Vec<f64>) -> Option<Stat> {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = match n {
            0 => return None,
            n if n % 2 == 1 => values[n / 2],
            n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        };
        Some(Stat {
            median,
            min: values[0],
            max: values[n - 1],
            runs: n,
        })
    }
}

impl Row {
    /// A row with no runs yet.
    pub fn new(workload: String, system: System) -> Row {
        Row {
            workload,
            system,
            cells: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// `f` over the successful runs.
    pub fn stat(&self, f: impl Fn(&Cell) -> Option<f64>) -> Option<Stat> {
        Stat::of(self.cells.iter().filter_map(f).collect())
    }

    /// The median of `f` over the successful runs.
    pub fn median(&self, f: impl Fn(&Cell) -> Option<f64>) -> Option<f64> {
        self.stat(f).map(|s| s.median)
    }
}

/// The markdown results page.
pub fn markdown(header: &str, rows: &[Row]) -> String {
    let mut out = String::from(header);
    out.push_str(
        "\n| workload | system | durability | runs | publish msgs/s | deliver msgs/s | \
         publish→confirm ms p50 / p99 / p99.9 | publish→deliver ms p50 / p99 / p99.9 | \
         server CPU s per M msgs | server peak RSS MiB |\n\
         | --- | --- | --- | --- | ---: | ---: | --- | --- | ---: | ---: |\n",
    );
    for row in rows {
        let _ = write!(
            out,
            "| {} | {} | {} | {} |",
            row.workload,
            row.system.label,
            row.system.durability,
            runs(row)
        );
        if row.cells.is_empty() {
            out.push_str(" | | | | | |\n");
            continue;
        }
        let mib = |c: &Cell| Some((c.peak_rss >> 20) as f64);
        let _ = writeln!(
            out,
            " {} | {} | {} | {} | {} | {} |",
            rate(row.stat(|c| Some(c.publish_rate()))),
            rate(row.stat(Cell::deliver_rate)),
            quantiles(row, Cell::confirm_ms),
            quantiles(row, Cell::deliver_ms),
            decimal(row.stat(|c| Some(c.cpu_per_million()))),
            decimal(row.stat(mib)),
        );
    }
    out
}

/// How many runs were measured, and why the others failed.
fn runs(row: &Row) -> String {
    let ok = row.cells.len();
    match row.failures.first() {
        None => ok.to_string(),
        Some(why) => format!(
            "{ok} of {} (failed: {})",
            ok + row.failures.len(),
            why.replace('|', "/")
        ),
    }
}

/// "707,237 (690k–720k)": the median in full, the spread short.
fn rate(stat: Option<Stat>) -> String {
    let Some(s) = stat else { return "-".into() };
    let median = thousands(s.median as u64);
    if s.runs < 2 {
        return median;
    }
    format!("{median} ({}–{})", short(s.min), short(s.max))
}

/// "1.23 (1.1–1.4)".
fn decimal(stat: Option<Stat>) -> String {
    let Some(s) = stat else { return "-".into() };
    if s.runs < 2 {
        return short(s.median);
    }
    format!("{} ({}–{})", short(s.median), short(s.min), short(s.max))
}

/// Median p50 / p99 / p99.9, each with its spread, or "-".
fn quantiles(row: &Row, f: impl Fn(&Cell, f64) -> Option<f64>) -> String {
    let parts: Vec<String> = [0.5, 0.99, 0.999]
        .iter()
        .map(|&q| decimal(row.stat(|c| f(c, q))))
        .collect();
    if parts.iter().all(|p| p == "-") {
        return "-".into();
    }
    parts.join(" / ")
}

/// Three significant digits or so: 1234567 → "1.23M", 45678 → "45.7k", 0.1234 → "0.123".
pub fn short(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.2}M", v / 1e6),
        a if a >= 1e5 => format!("{:.0}k", v / 1e3),
        a if a >= 1e3 => format!("{:.1}k", v / 1e3),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 0.01 || a == 0.0 => format!("{v:.2}"),
        _ => format!("{v:.4}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_an_odd_count_is_the_middle_value() {
        let s = Stat::of(vec![5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (3.0, 1.0, 5.0, 3));
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(Stat::of(vec![4.0, 1.0, 2.0, 10.0]).unwrap().median, 3.0);
    }

    #[test]
    fn no_values_give_no_stat() {
        assert_eq!(Stat::of(vec![]), None);
        assert_eq!(Stat::of(vec![f64::NAN]), None);
    }

    #[test]
    fn short_keeps_about_three_digits() {
        assert_eq!(short(1_234_567.0), "1.23M");
        assert_eq!(short(456_789.0), "457k");
        assert_eq!(short(45_678.0), "45.7k");
        assert_eq!(short(123.4), "123");
        assert_eq!(short(12.34), "12.3");
        assert_eq!(short(1.234), "1.23");
        assert_eq!(short(0.0012), "0.0012");
    }
}
