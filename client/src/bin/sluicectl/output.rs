//! How `sluicectl` prints: aligned tables for people, JSON for programs.

use std::io::Write;

use serde::Serialize;
use serde_json::json;
use sluice_client::types::{ChannelDescription, ChannelSummary, SubscriptionInfo};

/// The output mode of one run.
pub struct Out {
    /// JSON instead of tables.
    pub json: bool,
}

impl Out {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Prints a value as one JSON line.
    pub fn json_line(&self, value: &impl Serialize) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, value)?;
        writeln!(stdout)?;
        Ok(())
    }

    /// Confirms an action.
    pub fn done(&self, what: &str) -> anyhow::Result<()> {
        if self.json {
            return self.json_line(&json!({ "ok": true }));
        }
        println!("{what}");
        Ok(())
    }

    pub fn channels(&self, channels: &[ChannelSummary]) -> anyhow::Result<()> {
        if self.json {
            return self.json_line(&channels);
        }
        let rows = channels
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.kind.to_string(),
                    c.partitions.to_string(),
                    c.messages.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["NAME", "KIND", "PARTITIONS", "MESSAGES"], rows)
        );
        Ok(())
    }

    pub fn description(&self, d: &ChannelDescription) -> anyhow::Result<()> {
        if self.json {
            return self.json_line(d);
        }
        let lease = humantime::format_duration(ms(d.lease_ms)).to_string();
        let mut facts = vec![
            ("channel", d.name.clone()),
            ("kind", d.kind.to_string()),
            ("lease", lease),
        ];
        facts.extend(crate::settings::described(&d.settings));
        let width = facts
            .iter()
            .map(|(label, _)| label.len())
            .max()
            .unwrap_or(0);
        for (label, value) in &facts {
            println!("{label:<width$}  {value}");
        }
        println!();
        let rows = d
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.id.to_string(),
                    p.first_offset.to_string(),
                    p.next_offset.to_string(),
                    p.committed_offset.to_string(),
                    p.segments.to_string(),
                    p.bytes.to_string(),
                ]
            })
            .collect();
        let head = [
            "PARTITION",
            "FIRST",
            "NEXT",
            "COMMITTED",
            "SEGMENTS",
            "BYTES",
        ];
        print!("{}", table(&head, rows));
        println!();
        self.subscriptions(&d.subscriptions)
    }

    pub fn subscriptions(&self, subs: &[SubscriptionInfo]) -> anyhow::Result<()> {
        if self.json {
            return self.json_line(&subs);
        }
        let rows = subs
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    if s.durable { "yes" } else { "no" }.to_owned(),
                    s.backlog.to_string(),
                    s.in_flight.to_string(),
                    s.consumers.to_string(),
                    s.oldest_unacked_ms.map_or("-".to_owned(), |t| {
                        humantime::format_duration(ms(t)).to_string()
                    }),
                ]
            })
            .collect();
        let head = [
            "SUBSCRIPTION",
            "DURABLE",
            "BACKLOG",
            "IN FLIGHT",
            "CONSUMERS",
            "OLDEST UNACKED",
        ];
        print!("{}", table(&head, rows));
        Ok(())
    }
}

fn ms(millis: u64) -> std::time::Duration {
    std::time::Duration::from_millis(millis)
}

/// Left-aligned columns, two spaces apart.
pub fn table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let head: Vec<String> = head.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&head).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![vec!["orders".into(), "queue".into()]];
        assert_eq!(
            table(&["NAME", "KIND"], rows),
            "NAME    KIND\norders  queue\n"
        );
    }
}
