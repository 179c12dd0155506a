//! The report of a sweep: fits per (axes, strategy), `fits.parquet` (schema in
//! `molpeg_core::schema::scaling_fits`), `fits.md`, and the figures `scaling.{png,svg}` (test metric vs.
//! fraction on log axes, mean ± std over seeds, fitted power laws) and, when a strategy's name
//! contains `molpeg`, `keep_ratio.{png,svg}` (its curve against the full-data line).
//!
//! Every strategy's curve includes the `full` cells (fraction 1) of the same axes: the full split is
//! the end point of every subset curve.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, UInt32Array};
use arrow::record_batch::RecordBatch;
use molpeg_core::parquet_io::write_batches;
use molpeg_core::schema::scaling_fits as col;
use molpeg_plot::{Curve, Labels, Reference};
use serde::Serialize;

use crate::config::FULL;
use crate::fit::{bootstrap, fit_power_law, fit_saturating, Interval, PowerLaw};
use crate::results::{Axes, CellResult};
use crate::Result;

pub const FITS_FILE: &str = "fits.parquet";
pub const FITS_MARKDOWN: &str = "fits.md";
pub const SCALING_FIGURE: &str = "scaling";
pub const KEEP_RATIO_FIGURE: &str = "keep_ratio";
/// Seed of the bootstrap resampling, so that a report is reproducible.
const BOOTSTRAP_SEED: u64 = 0;

/// One fitted parameter (a row of `fits.parquet`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitRow {
    pub axes: Axes,
    pub strategy: String,
    pub metric: String,
    /// `power` or `saturating`.
    pub form: &'static str,
    pub parameter: &'static str,
    pub value: f64,
    pub ci: Option<Interval>,
    pub r2: f64,
    pub points: u32,
    pub seeds: u32,
}

/// What the report wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub fits: Vec<FitRow>,
    /// Fits that could not be made, with the reason (too few fractions, non-positive metric, ...).
    pub failures: Vec<String>,
    pub files: Vec<PathBuf>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for row in self.fits.iter().filter(|r| r.form == "power") {
            if row.parameter == "b" {
                let ci = row.ci.map_or(String::new(), |ci| format!(" [{:.4}, {:.4}]", ci.low, ci.high));
                writeln!(f, "power law {} ({}): exponent b = {:.4}{ci}, R² {:.3}", row.strategy, row.axes, row.value, row.r2)?;
            }
        }
        for failure in &self.failures {
            writeln!(f, "no fit: {failure}")?;
        }
        let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        write!(f, "wrote {}", files.join(", "))
    }
}

/// (fraction, seed, test metric) of one curve.
type Points = Vec<(f64, u64, f64)>;

/// Curves by axes and strategy; the `full` cells are appended to every other strategy of their axes.
fn curves_of(rows: &[CellResult]) -> BTreeMap<Axes, BTreeMap<String, Points>> {
    let mut by_axes: BTreeMap<Axes, BTreeMap<String, Points>> = BTreeMap::new();
    for row in rows {
        if let Some(test) = row.test_metric.filter(|v| v.is_finite()) {
            by_axes.entry(row.key.axes()).or_default().entry(row.key.strategy.clone()).or_default().push((row.key.fraction, row.key.seed, test));
        }
    }
    for strategies in by_axes.values_mut() {
        let full = strategies.get(FULL).cloned().unwrap_or_default();
        if strategies.len() > 1 {
            strategies.remove(FULL);
            for points in strategies.values_mut() {
                points.extend(&full);
            }
        }
    }
    by_axes
}

/// (fraction, mean, sample std) per fraction, ascending.
fn summarize(points: &Points) -> Vec<(f64, f64, f64)> {
    let mut by_fraction: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for &(x, _, y) in points {
        by_fraction.entry(x.to_bits()).or_default().push(y);
    }
    by_fraction
        .into_iter()
        .map(|(x, ys)| {
            let n = ys.len() as f64;
            let mean = ys.iter().sum::<f64>() / n;
            let var = if ys.len() > 1 { ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
            (f64::from_bits(x), mean, var.sqrt())
        })
        .collect()
}

/// Fits both forms to every curve, writes the tables and figures into `out_dir`.
pub fn write(rows: &[CellResult], out_dir: &Path, replicates: usize) -> Result<Report> {
    let metric = rows.first().map_or_else(|| "metric".to_string(), |r| r.metric.clone());
    let curves = curves_of(rows);
    let mut fits = Vec::new();
    let mut failures = Vec::new();
    let mut power_laws: BTreeMap<(Axes, String), PowerLaw> = BTreeMap::new();
    for (axes, strategies) in &curves {
        for (strategy, points) in strategies {
            let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.2)).collect();
            let seeds = {
                let mut s: Vec<u64> = points.iter().map(|p| p.1).collect();
                s.sort_unstable();
                s.dedup();
                s.len() as u32
            };
            let mut push = |form: &'static str, params: &[(&'static str, f64)], cis: Option<Vec<Interval>>, r2: f64| {
                for (k, &(parameter, value)) in params.iter().enumerate() {
                    let ci = cis.as_ref().map(|c| c[k]);
                    fits.push(FitRow { axes: axes.clone(), strategy: strategy.clone(), metric: metric.clone(), form, parameter, value, ci, r2, points: xy.len() as u32, seeds });
                }
            };
            match fit_power_law(&xy) {
                Ok(fit) => {
                    let cis = bootstrap(&xy, replicates, BOOTSTRAP_SEED, |p| fit_power_law(p).map(|f| [f.a, f.b])).ok().map(Vec::from);
                    push("power", &[("a", fit.a), ("b", fit.b)], cis, fit.r2);
                    power_laws.insert((axes.clone(), strategy.clone()), fit);
                }
                Err(e) => failures.push(format!("{strategy} ({axes}) power law: {e}")),
            }
            match fit_saturating(&xy) {
                Ok(fit) => {
                    let cis = bootstrap(&xy, replicates, BOOTSTRAP_SEED, |p| fit_saturating(p).map(|f| [f.a, f.alpha, f.c])).ok().map(Vec::from);
                    push("saturating", &[("a", fit.a), ("alpha", fit.alpha), ("c", fit.c)], cis, fit.r2);
                }
                Err(e) => failures.push(format!("{strategy} ({axes}) saturating law: {e}")),
            }
        }
    }

    let mut files = vec![write_fits(&out_dir.join(FITS_FILE), &fits)?];
    let markdown = markdown(&metric, &curves, &fits, &failures, replicates);
    let md_path = out_dir.join(FITS_MARKDOWN);
    molpeg_core::atomic::write_atomic(&md_path, markdown.as_bytes())?;
    files.push(md_path);
    files.extend(figures(out_dir, rows, &metric, &curves, &power_laws)?);
    Ok(Report { fits, failures, files })
}

fn write_fits(path: &Path, fits: &[FitRow]) -> Result<PathBuf> {
    let strings = |f: &dyn Fn(&FitRow) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(fits.iter().map(f))) };
    let columns: Vec<ArrayRef> = vec![
        strings(&|r| &r.axes.dataset),
        strings(&|r| &r.axes.split),
        strings(&|r| &r.axes.model),
        strings(&|r| &r.axes.pretrained),
        Arc::new(UInt32Array::from_iter_values(fits.iter().map(|r| r.axes.layers))),
        Arc::new(UInt32Array::from_iter_values(fits.iter().map(|r| r.axes.width))),
        strings(&|r| &r.strategy),
        strings(&|r| &r.metric),
        strings(&|r| r.form),
        strings(&|r| r.parameter),
        Arc::new(Float64Array::from_iter_values(fits.iter().map(|r| r.value))),
        Arc::new(Float64Array::from_iter(fits.iter().map(|r| r.ci.map(|c| c.low)))),
        Arc::new(Float64Array::from_iter(fits.iter().map(|r| r.ci.map(|c| c.high)))),
        Arc::new(Float64Array::from_iter_values(fits.iter().map(|r| r.r2))),
        Arc::new(UInt32Array::from_iter_values(fits.iter().map(|r| r.points))),
        Arc::new(UInt32Array::from_iter_values(fits.iter().map(|r| r.seeds))),
    ];
    let batch = RecordBatch::try_new(col::schema(), columns).map_err(|e| molpeg_core::Error::arrow(path, e))?;
    Ok(write_batches(path, col::schema(), col::KIND, &BTreeMap::new(), &[batch])?)
}

fn markdown(metric: &str, curves: &BTreeMap<Axes, BTreeMap<String, Points>>, fits: &[FitRow], failures: &[String], replicates: usize) -> String {
    let mut md = format!(
        "# Scaling fits\n\nTest {metric} against the fraction x of the training split. Power law m = a·x^b (least squares on \
         log-log axes) and saturating law m = c − a·x^(−alpha) (Levenberg–Marquardt); 95% intervals from {replicates} bootstrap \
         resamples of the seeds at each fraction. {}\n",
        if curves.values().flat_map(|s| s.values()).flatten().any(|p| p.0 >= 1.0) {
            "Every curve includes the full-split cells (x = 1)."
        } else {
            "No cell trained on the full split (x = 1): the fits extrapolate there."
        }
    );
    for (axes, strategies) in curves {
        md.push_str(&format!("\n## {axes}\n\n| strategy | form | parameters (95% CI) | R² | points | seeds |\n|---|---|---|---|---|---|\n"));
        for strategy in strategies.keys() {
            for form in ["power", "saturating"] {
                let rows: Vec<&FitRow> = fits.iter().filter(|r| &r.axes == axes && &r.strategy == strategy && r.form == form).collect();
                let Some(first) = rows.first() else { continue };
                let params: Vec<String> = rows
                    .iter()
                    .map(|r| match r.ci {
                        Some(ci) => format!("{} = {:.4} [{:.4}, {:.4}]", r.parameter, r.value, ci.low, ci.high),
                        None => format!("{} = {:.4}", r.parameter, r.value),
                    })
                    .collect();
                md.push_str(&format!("| {strategy} | {form} | {} | {:.4} | {} | {} |\n", params.join(", "), first.r2, first.points, first.seeds));
            }
        }
        let names: Vec<&String> = strategies.keys().collect();
        md.push_str(&format!("\nTest {metric}, mean ± std over seeds:\n\n| fraction | {} |\n|---|{}\n", names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" | "), "---|".repeat(names.len())));
        let summaries: Vec<Vec<(f64, f64, f64)>> = strategies.values().map(summarize).collect();
        let mut fractions: Vec<f64> = summaries.iter().flatten().map(|p| p.0).collect();
        fractions.sort_by(f64::total_cmp);
        fractions.dedup();
        for x in fractions {
            let cells: Vec<String> = summaries
                .iter()
                .map(|s| s.iter().find(|p| p.0 == x).map_or("".into(), |&(_, mean, std)| format!("{mean:.4} ± {std:.4}")))
                .collect();
            md.push_str(&format!("| {x} | {} |\n", cells.join(" | ")));
        }
    }
    if !failures.is_empty() {
        md.push_str("\n## Fits that could not be made\n\n");
        for f in failures {
            md.push_str(&format!("- {f}\n"));
        }
    }
    md
}

fn figures(
    out_dir: &Path,
    rows: &[CellResult],
    metric: &str,
    curves: &BTreeMap<Axes, BTreeMap<String, Points>>,
    power_laws: &BTreeMap<(Axes, String), PowerLaw>,
) -> Result<Vec<PathBuf>> {
    // A legend names only the axis values that tell the curves apart (e.g. the model).
    let all_axes: Vec<&Axes> = curves.keys().collect();
    let label = |strategy: &str, axes: &Axes| match axes.distinguishing(&all_axes) {
        d if d.is_empty() => strategy.to_string(),
        d => format!("{strategy} ({d})"),
    };
    // Full-data line of each axes: mean test metric of its `full` cells.
    let references: Vec<Reference> = curves
        .keys()
        .filter_map(|axes| {
            let full: Vec<f64> = rows.iter().filter(|r| &r.key.axes() == axes && r.key.strategy == FULL).filter_map(|r| r.test_metric).collect();
            (!full.is_empty()).then(|| Reference { label: label("full data", axes), value: full.iter().sum::<f64>() / full.len() as f64 })
        })
        .collect();
    type Model = Box<dyn Fn(f64) -> f64>;
    let fitted: Vec<(&(Axes, String), Model)> = power_laws.iter().map(|(k, &fit)| (k, Box::new(move |x: f64| fit.eval(x)) as Model)).collect();
    let y_label = format!("test {metric}");
    let mut files = Vec::new();

    let mut draw = |name: &str, title: &str, x: &str, drawn: &[Curve]| -> Result<()> {
        if !drawn.is_empty() {
            let stem = out_dir.join(name);
            molpeg_plot::curves(&stem, &Labels { title, x, y: &y_label }, drawn, &references)?;
            files.extend([stem.with_extension("png"), stem.with_extension("svg")]);
        }
        Ok(())
    };
    let each = || curves.iter().flat_map(|(axes, strategies)| strategies.iter().map(move |(s, points)| (axes, s, points)));
    let scaling: Vec<Curve> = each()
        .map(|(axes, strategy, points)| Curve {
            label: label(strategy, axes),
            points: summarize(points),
            fitted: fitted.iter().find(|(k, _)| &k.0 == axes && &k.1 == strategy).map(|(_, f)| f.as_ref()),
        })
        .collect();
    draw(SCALING_FIGURE, "Scaling: test metric vs. training data (dashed: power-law fits)", "fraction of the training split", &scaling)?;
    // MolPeg's own points (below fraction 1, where the full cells are), against the full-data line.
    let molpeg: Vec<Curve> = each()
        .filter(|(_, strategy, _)| strategy.contains("molpeg"))
        .map(|(axes, strategy, points)| {
            let own: Points = points.iter().filter(|p| p.0 < 1.0).copied().collect();
            Curve { label: label(strategy, axes), points: summarize(&own), fitted: None }
        })
        .filter(|c| !c.points.is_empty())
        .collect();
    draw(KEEP_RATIO_FIGURE, "MolPeg: test metric vs. keep ratio (dashed: full data)", "keep ratio", &molpeg)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::CellKey;

    fn row(strategy: &str, fraction: f64, seed: u64, test: f64) -> CellResult {
        CellResult {
            key: CellKey {
                dataset: "d".into(),
                split: "scaffold".into(),
                model: "gin".into(),
                pretrained: "scratch".into(),
                layers: 2,
                width: 16,
                strategy: strategy.into(),
                fraction,
                seed,
            },
            n_train: 1,
            best_epoch: 1,
            metric: "roc_auc".into(),
            valid_metric: Some(test),
            test_metric: Some(test),
            samples_seen: 1,
            seconds: 0.1,
            settings_hash: "h".into(),
        }
    }

    #[test]
    fn report_recovers_a_planted_power_law_and_writes_every_file() {
        let mut rows = Vec::new();
        for seed in 0..3u64 {
            let wiggle = [0.002, -0.001, -0.001][seed as usize];
            for &x in &[0.05, 0.1, 0.2, 0.4] {
                rows.push(row("random", x, seed, 0.85 * f64::powf(x, 0.06) + wiggle));
                rows.push(row("dynamic:molpeg", x, seed, 0.86 * f64::powf(x, 0.04) + wiggle));
            }
            rows.push(row(FULL, 1.0, seed, 0.85 + wiggle));
        }
        let dir = tempfile::tempdir().unwrap();
        let report = write(&rows, dir.path(), 200).unwrap();
        let b = report.fits.iter().find(|f| f.strategy == "random" && f.form == "power" && f.parameter == "b").unwrap();
        assert!((b.value - 0.06).abs() < 2e-3, "{b:?}");
        assert!(b.ci.unwrap().contains(0.06), "{b:?}");
        assert_eq!((b.points, b.seeds), (15, 3), "four fractions and the full cells, three seeds");
        assert!(!report.fits.iter().any(|f| f.strategy == FULL), "full is part of every curve, not a curve of its own");
        let md = std::fs::read_to_string(dir.path().join(FITS_MARKDOWN)).unwrap();
        assert!(md.contains("| random | power | a = ") && md.contains("| dynamic:molpeg | saturating |"), "{md}");
        for name in ["fits.parquet", "scaling.png", "scaling.svg", "keep_ratio.png", "keep_ratio.svg"] {
            assert!(report.files.contains(&dir.path().join(name)), "{name} missing from {:?}", report.files);
        }
    }

    #[test]
    fn unfittable_curves_are_reported_not_fatal() {
        // Two fractions: a power law fits, the three-parameter saturating law cannot.
        let rows = vec![row("random", 0.5, 0, 0.7), row(FULL, 1.0, 0, 0.8)];
        let dir = tempfile::tempdir().unwrap();
        let report = write(&rows, dir.path(), 50).unwrap();
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert!(report.failures[0].contains("saturating") && report.failures[0].contains("at least 3 distinct fractions"));
        assert!(std::fs::read_to_string(dir.path().join(FITS_MARKDOWN)).unwrap().contains("could not be made"));
    }
}
