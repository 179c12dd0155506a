//! Figures written next to stage outputs. Each function writes through a temporary file and renames
//! it, like every other output.
//!
//! - [`histogram`]: distribution of per-sample values (MolPeg scores) as PNG.
//! - [`curves`]: e.g. metric vs. training fraction on log axes, mean ± std error bars, fitted curves
//!   and horizontal reference lines, as PNG and SVG.

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

/// Histogram of `values` (NaNs skipped) with `bins` equal-width bins.
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
    atomically(path, |tmp| {
        let root = BitMapBackend::new(tmp, (900, 560)).into_drawing_area();
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
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
        if let Ok(keep) = std::env::var("MOLPEG_KEEP_TEST_PLOTS") {
            for f in ["h.png", "scaling.png"] {
                std::fs::copy(dir.path().join(f), Path::new(&keep).join(f)).unwrap();
            }
        }
    }
}
