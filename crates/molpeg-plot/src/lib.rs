//! Figures written next to stage outputs. Each function writes through a temporary file and renames
//! it, like every other output.
//!
//! - [`histogram`]: distribution of per-sample values (MolPeg scores), PNG or SVG by the extension.
//! - [`curves`]: e.g. metric vs. training fraction on log axes, mean ± std error bars, fitted curves
//!   and horizontal reference lines, as PNG and SVG.
//! - [`lines`]: side-by-side panels of line series on linear axes (learning curves, score quantiles per
//!   epoch, metric vs. keep ratio with error bars and reference lines), as PNG and SVG.
//! - [`bars`]: grouped bars over named categories (coreset composition), as PNG and SVG.

use std::path::Path;

use molpeg_core::Error;
use plotters::coord::combinators::BindKeyPoints;
use plotters::prelude::*;

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid(path, format!("cannot draw figure: {e}"))
}

/// Renders into a temporary file beside `path` (keeping the extension, which picks the encoder),
/// then renames it into place; a failed drawing leaves nothing behind.
fn atomically(path: &Path, draw: impl FnOnce(&Path) -> Result<(), Error>) -> Result<(), Error> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("figure");
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("png");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp.{ext}", std::process::id()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    if let Err(e) = draw(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Histogram of `values` (NaNs skipped) with `bins` equal-width bins; `path`'s extension picks the
/// format (`.svg` gives SVG, anything else PNG).
pub fn histogram(path: &Path, values: &[f32], bins: usize, title: &str, x_label: &str) -> Result<(), Error> {
    let finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return Err(Error::invalid(path, "no finite values to plot"));
    }
    let lo = finite.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let hi = finite.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let width = ((hi - lo) / bins as f64).max(1e-12);
    let mut counts = vec![0u32; bins];
    for v in &finite {
        counts[(((*v as f64 - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let y_max = *counts.iter().max().unwrap_or(&1) as f64 * 1.05;
    macro_rules! draw_on {
        ($backend:expr) => {{
            let root = $backend.into_drawing_area();
            root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 24))
                .margin(16)
                .x_label_area_size(44)
                .y_label_area_size(64)
                .build_cartesian_2d(lo..lo + width * bins as f64, 0.0..y_max)
                .map_err(|e| plot_error(path, e))?;
            chart.configure_mesh().x_desc(x_label).y_desc("samples").draw().map_err(|e| plot_error(path, e))?;
            chart
                .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                    let x0 = lo + width * i as f64;
                    Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], BLUE.mix(0.6).filled())
                }))
                .map_err(|e| plot_error(path, e))?;
            root.present().map_err(|e| plot_error(path, e))
        }};
    }
    let svg = path.extension().is_some_and(|e| e == "svg");
    atomically(path, |tmp| if svg { draw_on!(SVGBackend::new(tmp, (900, 560))) } else { draw_on!(BitMapBackend::new(tmp, (900, 560))) })
}

/// One strategy's curve: mean ± std per fraction, and optionally a fitted model to draw.
pub struct Curve<'a> {
    pub label: String,
    /// (fraction, mean, std), fractions ascending.
    pub points: Vec<(f64, f64, f64)>,
    pub fitted: Option<&'a dyn Fn(f64) -> f64>,
}

/// A horizontal reference line (e.g. the full-data metric).
pub struct Reference {
    pub label: String,
    pub value: f64,
}

/// Title and axis labels of a figure.
pub struct Labels<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// Curves on log-log axes (e.g. metric vs. training fraction), written as PNG and SVG (`stem.png`,
/// `stem.svg`).
pub fn curves(stem: &Path, labels: &Labels, curves: &[Curve], references: &[Reference]) -> Result<(), Error> {
    let Labels { title, x: x_label, y: y_label } = *labels;
    let all: Vec<(f64, f64)> = curves.iter().flat_map(|c| c.points.iter().flat_map(|p| [(p.0, p.1 - p.2), (p.0, p.1 + p.2)])).collect();
    if all.is_empty() {
        return Err(Error::invalid(stem, "no points to plot"));
    }
    let x_lo = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_hi = all.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let values = all.iter().map(|p| p.1).chain(references.iter().map(|r| r.value)).filter(|v| *v > 0.0);
    let (y_lo, y_hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (y_lo, y_hi) = (y_lo * 0.97, y_hi * 1.03);
    let x_range = (x_lo * 0.8)..(x_hi * 1.25);
    // A metric spans far less than a decade, where log axes have no default ticks; the x ticks are the
    // data's own fractions.
    let y_ticks: Vec<f64> = (0..=8).map(|k| y_lo * (y_hi / y_lo).powf(k as f64 / 8.0)).collect();
    let mut x_ticks: Vec<f64> = all.iter().map(|p| p.0).collect();
    x_ticks.sort_by(f64::total_cmp);
    x_ticks.dedup();
    let palette = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK, &RGBColor(255, 140, 0), &RGBColor(128, 0, 128)];

    macro_rules! draw_on {
        ($root:expr) => {{
            let root = $root.into_drawing_area();
            root.fill(&WHITE).map_err(|e| plot_error(stem, e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 24))
                .margin(16)
                .x_label_area_size(44)
                .y_label_area_size(70)
                .build_cartesian_2d(x_range.clone().log_scale().with_key_points(x_ticks.clone()), (y_lo..y_hi).log_scale().with_key_points(y_ticks.clone()))
                .map_err(|e| plot_error(stem, e))?;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .x_labels(x_ticks.len().max(2))
                .y_labels(10)
                .x_label_formatter(&|x| format!("{x:.2}"))
                .y_label_formatter(&|y| format!("{y:.3}"))
                .draw()
                .map_err(|e| plot_error(stem, e))?;
            for (i, curve) in curves.iter().enumerate() {
                let color = palette[i % palette.len()];
                chart
                    .draw_series(curve.points.iter().map(|&(x, m, s)| {
                        ErrorBar::new_vertical(x, (m - s).max(y_lo), m, (m + s).min(y_hi), color.filled(), 6)
                    }))
                    .map_err(|e| plot_error(stem, e))?;
                chart
                    .draw_series(LineSeries::new(curve.points.iter().map(|&(x, m, _)| (x, m)), color.stroke_width(2)))
                    .map_err(|e| plot_error(stem, e))?
                    .label(curve.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                if let Some(f) = curve.fitted {
                    let xs = (0..=60).map(|k| x_lo * (x_hi / x_lo).powf(k as f64 / 60.0));
                    chart
                        .draw_series(DashedLineSeries::new(xs.map(|x| (x, f(x))), 6, 4, color.stroke_width(1)))
                        .map_err(|e| plot_error(stem, e))?;
                }
            }
            for (i, r) in references.iter().enumerate() {
                let color = palette[(curves.len() + i) % palette.len()];
                chart
                    .draw_series(DashedLineSeries::new([(x_range.start, r.value), (x_range.end, r.value)], 3, 3, color.stroke_width(1)))
                    .map_err(|e| plot_error(stem, e))?
                    .label(r.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(1)));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| plot_error(stem, e))?;
            root.present().map_err(|e| plot_error(stem, e))
        }};
    }
    atomically(&stem.with_extension("png"), |tmp| draw_on!(BitMapBackend::new(tmp, (960, 640))))?;
    atomically(&stem.with_extension("svg"), |tmp| draw_on!(SVGBackend::new(tmp, (960, 640))))
}

/// Distinct line colours: the first eight as before, then eight more (matplotlib's tab20 light and
/// dark companions) so a comparison of sixteen strategies repeats no colour.
const PALETTE: [RGBColor; 16] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(0, 0, 0),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(127, 127, 127),
    RGBColor(174, 199, 232),
    RGBColor(255, 152, 150),
    RGBColor(152, 223, 138),
    RGBColor(197, 176, 213),
    RGBColor(255, 187, 120),
];

/// A panel with more series than this gets its legend in a column beside the chart instead of over
/// the lines.
const LEGEND_INSIDE_MAX: usize = 6;
const LEGEND_COLUMN_PX: u32 = 240;

/// One line of a [`Panel`]: points (x, y), optionally a ± error per point (drawn as error bars).
/// Non-finite points are left out.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Same length as `points`: the half-height of each point's error bar (e.g. a std over seeds).
    pub errors: Option<Vec<f64>>,
    /// Dashed and without markers: a reference such as the full-data metric.
    pub dashed: bool,
}

/// One chart of a [`lines`] figure.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    pub title: String,
    pub x: String,
    pub y: String,
    pub series: Vec<Series>,
}

fn finite_points(s: &Series) -> Vec<(f64, f64, f64)> {
    s.points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| (x, y, s.errors.as_ref().and_then(|e| e.get(i).copied()).filter(|e| e.is_finite()).unwrap_or(0.0)))
        .filter(|(x, y, _)| x.is_finite() && y.is_finite())
        .collect()
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if hi > lo {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    } else {
        // One value (e.g. a comparison at a single keep ratio): a range wide enough for readable ticks.
        let pad = lo.abs().max(0.1) * 0.5;
        (lo - pad, hi + pad)
    }
}

/// Tick labels with as many decimals as ticks about a tenth of `span` apart need, so neighbouring
/// ticks never print alike (a 0.1-wide axis: 0.06, 0.08, …, not 0.1, 0.1, …).
fn tick_formatter(span: f64) -> impl Fn(&f64) -> String {
    let decimals = if span > 0.0 && span.is_finite() { (-(span / 10.0).log10()).ceil().clamp(0.0, 8.0) as usize } else { 2 };
    move |v: &f64| format!("{:.*}", decimals, v + 0.0)
}

/// Panels of line series on linear axes, side by side, under one title; written as `stem.png` and
/// `stem.svg`. A panel without any finite point is drawn empty with "no data" in its title.
pub fn lines(stem: &Path, title: &str, panels: &[Panel]) -> Result<(), Error> {
    if panels.is_empty() {
        return Err(Error::invalid(stem, "no panels to plot"));
    }
    let drawn = |p: &Panel| p.series.iter().filter(|s| !finite_points(s).is_empty()).count();
    let legend_column = panels.iter().any(|p| drawn(p) > LEGEND_INSIDE_MAX);
    let extra = if legend_column { LEGEND_COLUMN_PX as usize * panels.len() } else { 0 };
    let tallest = panels.iter().map(drawn).max().unwrap_or(0);
    let height = if legend_column { (60 + 20 * tallest).max(420) as u32 } else { 420 };
    let size = ((520 * panels.len()).max(640) + extra) as u32;
    let size = (size, height);
    macro_rules! draw_on {
        ($backend:expr) => {{
            let root = $backend.into_drawing_area();
            root.fill(&WHITE).map_err(|e| plot_error(stem, e))?;
            let root = root.titled(title, ("sans-serif", 22)).map_err(|e| plot_error(stem, e))?;
            for (panel, area) in panels.iter().zip(root.split_evenly((1, panels.len()))) {
                let (area, legend_area) = if legend_column {
                    let (w, _) = area.dim_in_pixel();
                    let (chart, legend) = area.split_horizontally(w.saturating_sub(LEGEND_COLUMN_PX));
                    (chart, Some(legend))
                } else {
                    (area, None)
                };
                let pts: Vec<Vec<(f64, f64, f64)>> = panel.series.iter().map(finite_points).collect();
                let all: Vec<(f64, f64, f64)> = pts.iter().flatten().copied().collect();
                let (x_lo, x_hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
                let (y_lo, y_hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1 - p.2), b.max(p.1 + p.2)));
                let empty = all.is_empty();
                let (x_lo, x_hi) = if empty { (0.0, 1.0) } else { padded(x_lo, x_hi) };
                let (y_lo, y_hi) = if empty { (0.0, 1.0) } else { padded(y_lo, y_hi) };
                let caption = if empty { format!("{} (no data)", panel.title) } else { panel.title.clone() };
                let mut chart = ChartBuilder::on(&area)
                    .caption(caption, ("sans-serif", 17))
                    .margin(12)
                    .x_label_area_size(40)
                    .y_label_area_size(60)
                    .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
                    .map_err(|e| plot_error(stem, e))?;
                let (x_fmt, y_fmt) = (tick_formatter(x_hi - x_lo), tick_formatter(y_hi - y_lo));
                chart
                    .configure_mesh()
                    .x_desc(panel.x.as_str())
                    .y_desc(panel.y.as_str())
                    .x_label_formatter(&x_fmt)
                    .y_label_formatter(&y_fmt)
                    .draw()
                    .map_err(|e| plot_error(stem, e))?;
                for (i, (series, points)) in panel.series.iter().zip(&pts).enumerate() {
                    if points.is_empty() {
                        continue;
                    }
                    let color = PALETTE[i % PALETTE.len()];
                    if series.dashed {
                        let ends = if points.len() == 1 { vec![(x_lo, points[0].1), (x_hi, points[0].1)] } else { points.iter().map(|p| (p.0, p.1)).collect() };
                        chart
                            .draw_series(DashedLineSeries::new(ends, 6, 4, color.stroke_width(2)))
                            .map_err(|e| plot_error(stem, e))?
                            .label(series.label.clone())
                            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                        continue;
                    }
                    if series.errors.is_some() {
                        chart
                            .draw_series(points.iter().map(|&(x, y, e)| ErrorBar::new_vertical(x, y - e, y, y + e, color.filled(), 6)))
                            .map_err(|e| plot_error(stem, e))?;
                    }
                    chart
                        .draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1)), color.stroke_width(2)).point_size(if points.len() < 30 { 3 } else { 0 }))
                        .map_err(|e| plot_error(stem, e))?
                        .label(series.label.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                }
                if let Some(legend) = &legend_area {
                    for (row, (i, series)) in panel.series.iter().enumerate().filter(|(_, s)| !finite_points(s).is_empty()).enumerate() {
                        let color = PALETTE[i % PALETTE.len()];
                        let y = 50 + 20 * row as i32;
                        let sample = if series.dashed {
                            vec![(6, y), (12, y), (18, y), (24, y)]
                        } else {
                            vec![(4, y), (26, y)]
                        };
                        legend.draw(&PathElement::new(sample, color.stroke_width(3))).map_err(|e| plot_error(stem, e))?;
                        legend
                            .draw(&Text::new(series.label.clone(), (32, y - 7), ("sans-serif", 13).into_font()))
                            .map_err(|e| plot_error(stem, e))?;
                    }
                } else if !empty {
                    chart
                        .configure_series_labels()
                        .position(SeriesLabelPosition::LowerRight)
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK)
                        .label_font(("sans-serif", 13))
                        .draw()
                        .map_err(|e| plot_error(stem, e))?;
                }
            }
            root.present().map_err(|e| plot_error(stem, e))
        }};
    }
    atomically(&stem.with_extension("png"), |tmp| draw_on!(BitMapBackend::new(tmp, size)))?;
    atomically(&stem.with_extension("svg"), |tmp| draw_on!(SVGBackend::new(tmp, size)))
}

/// Grouped bars: for each category (x), one bar per group (e.g. "training split", "coreset"), values
/// in `groups[g].1[category]`; written as `stem.png` and `stem.svg`. Non-finite values are not drawn.
pub fn bars(stem: &Path, labels: &Labels, categories: &[String], groups: &[(String, Vec<f64>)]) -> Result<(), Error> {
    if categories.is_empty() || groups.is_empty() {
        return Err(Error::invalid(stem, "no bars to plot"));
    }
    let Labels { title, x: x_label, y: y_label } = *labels;
    let y_max = groups.iter().flat_map(|g| g.1.iter().copied()).filter(|v| v.is_finite()).fold(0.0f64, f64::max).max(1e-9) * 1.15;
    let n = categories.len();
    let width = 1.0 / (groups.len() as f64 + 1.0);
    let size = ((140 * n + 200).clamp(640, 1400) as u32, 460u32);
    let cats: Vec<String> = categories.to_vec();
    macro_rules! draw_on {
        ($backend:expr) => {{
            let root = $backend.into_drawing_area();
            root.fill(&WHITE).map_err(|e| plot_error(stem, e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(14)
                .x_label_area_size(50)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..y_max)
                .map_err(|e| plot_error(stem, e))?;
            let cats = &cats;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .x_labels(n * 2 + 1)
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cats.len() { cats[i as usize].clone() } else { String::new() }
                })
                .draw()
                .map_err(|e| plot_error(stem, e))?;
            for (g, (name, values)) in groups.iter().enumerate() {
                let color = PALETTE[g % PALETTE.len()];
                let offset = -0.5 + width * (g as f64 + 1.0) - width / 2.0;
                chart
                    .draw_series(values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, &v)| {
                        let x0 = i as f64 + offset;
                        Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v)], color.mix(0.8).filled())
                    }))
                    .map_err(|e| plot_error(stem, e))?
                    .label(name.clone())
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.mix(0.8).filled()));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| plot_error(stem, e))?;
            root.present().map_err(|e| plot_error(stem, e))
        }};
    }
    atomically(&stem.with_extension("png"), |tmp| draw_on!(BitMapBackend::new(tmp, size)))?;
    atomically(&stem.with_extension("svg"), |tmp| draw_on!(SVGBackend::new(tmp, size)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn histogram_and_curves_write_valid_files() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("h.png");
        let values: Vec<f32> = (0..500).map(|i| ((i * 37) % 101) as f32 / 100.0).chain([f32::NAN]).collect();
        histogram(&png, &values, 30, "scores", "score").unwrap();
        assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");

        let fit = |x: f64| 0.8 * x.powf(0.05);
        let curve = Curve { label: "random".into(), points: vec![(0.1, 0.71, 0.01), (0.5, 0.77, 0.02), (1.0, 0.8, 0.01)], fitted: Some(&fit) };
        let stem = dir.path().join("scaling");
        curves(&stem, &Labels { title: "HIV", x: "fraction of training data", y: "ROC-AUC" }, &[curve], &[Reference { label: "full data".into(), value: 0.8 }]).unwrap();
        assert_eq!(&std::fs::read(stem.with_extension("png")).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("random"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "no temporary files left");
        histogram(&dir.path().join("h.svg"), &values, 30, "scores", "score").unwrap();
        assert!(std::fs::read_to_string(dir.path().join("h.svg")).unwrap().contains("<svg"));

        let series = |label: &str, dashed| Series { label: label.into(), points: vec![(1.0, 0.5), (2.0, f64::NAN), (3.0, 0.7)], errors: Some(vec![0.1, 0.1, 0.05]), dashed };
        let panels = [Panel { title: "loss".into(), x: "epoch".into(), y: "loss".into(), series: vec![series("train", false), series("full", true)] }, Panel::default()];
        lines(&dir.path().join("curves"), "run", &panels).unwrap();
        assert!(std::fs::read_to_string(dir.path().join("curves.svg")).unwrap().contains("no data"), "an empty panel says so");
        // Sixteen strategies at one keep ratio (one seed of the baselines experiment): sixteen
        // colours, every label in a legend column beside the chart, an x axis around the one value.
        let many: Vec<Series> = (0..16).map(|i| Series { label: format!("strategy-{i}"), points: vec![(0.1, 0.6 + 0.01 * i as f64)], ..Series::default() }).collect();
        lines(&dir.path().join("many"), "comparison", &[Panel { title: "test".into(), x: "keep".into(), y: "auc".into(), series: many }]).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("many.svg")).unwrap();
        assert!((0..16).all(|i| svg.contains(&format!(">\nstrategy-{i}\n<"))), "every label drawn");
        let colours: HashSet<String> = PALETTE.iter().map(|c| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)).filter(|hex| svg.contains(hex.as_str())).collect();
        assert_eq!(colours.len(), 16, "{colours:?}");
        assert!(svg.contains(&format!("width=\"{}\"", 640 + LEGEND_COLUMN_PX)), "legend column widens the figure");
        assert!(svg.contains(">\n0.10\n<") && svg.contains(">\n0.12\n<"), "a single x value still gets distinct ticks");
        bars(&dir.path().join("bars"), &Labels { title: "share", x: "", y: "fraction" }, &["a".into(), "b".into()], &[("train".into(), vec![0.2, 0.5]), ("coreset".into(), vec![0.3, f64::NAN])]).unwrap();
        assert_eq!(&std::fs::read(dir.path().join("bars.png")).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 10, "no temporary files left");
        if let Ok(keep) = std::env::var("MOLPEG_KEEP_TEST_PLOTS") {
            for f in ["h.png", "scaling.png"] {
                std::fs::copy(dir.path().join(f), Path::new(&keep).join(f)).unwrap();
            }
        }
    }
}
