//! The SVG chart: one bar panel per headline figure, one bar per system.
//!
//! Knows only panels of named values; the caller picks the figures.

use std::path::Path;

use plotters::prelude::*;

/// One panel: a title, a unit and a value per system (`None` when the cell failed).
pub struct Panel {
    /// Shown above the panel.
    pub title: String,
    /// Y-axis description.
    pub unit: String,
    /// (system, value) in display order.
    pub bars: Vec<(String, Option<f64>)>,
}

/// Draws the panels side by side into an SVG file.
///
/// # Errors
/// When the file cannot be written.
pub fn draw(path: &Path, panels: &[Panel]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (420 * panels.len() as u32, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    panel: &Panel,
) -> anyhow::Result<()> {
    let n = panel.bars.len();
    let max = panel
        .bars
        .iter()
        .filter_map(|b| b.1)
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(70)
        .y_label_area_size(70)
        .build_cartesian_2d((0..n).into_segmented(), 0f64..max)
        .map_err(plot_error)?;
    let names: Vec<String> = panel.bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_style(("sans-serif", 11))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc(panel.unit.as_str())
        .y_label_formatter(&|v| short(*v))
        .draw()
        .map_err(plot_error)?;
    let bars = panel.bars.iter().enumerate().filter_map(|(i, (_, v))| {
        let v = (*v)?;
        let corners = [
            (SegmentValue::Exact(i), 0.0),
            (SegmentValue::Exact(i + 1), v),
        ];
        let mut bar = Rectangle::new(corners, Palette99::pick(i).filled());
        bar.set_margin(0, 0, 8, 8);
        Some(bar)
    });
    chart.draw_series(bars).map_err(plot_error)?;
    let labels = panel.bars.iter().enumerate().filter_map(|(i, (_, v))| {
        let v = (*v)?;
        Some(Text::new(
            short(v),
            (SegmentValue::CenterOf(i), v),
            ("sans-serif", 11),
        ))
    });
    chart.draw_series(labels).map_err(plot_error)?;
    Ok(())
}

/// 1234567 → "1.23M", 0.00123 → "0.0012".
pub fn short(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e4 => format!("{:.0}k", v / 1e3),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v if v >= 10.0 => format!("{v:.0}"),
        v if v >= 0.1 => format!("{v:.2}"),
        0.0 => "0".into(),
        v => format!("{v:.4}"),
    }
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e:?}")
}
