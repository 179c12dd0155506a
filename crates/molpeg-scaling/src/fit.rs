//! Scaling-law fits.
//!
//! - Power law `m = a·x^b`, fitted by ordinary least squares on `ln m = ln a + b·ln x` (the paper's
//!   form). R² is reported in the original units, so it is comparable with the saturating fit's.
//! - Saturating law `m = c − a·x^(−α)` with α > 0: as data grows the metric approaches the ceiling `c`.
//!   Fitted by Levenberg–Marquardt from the power-law solution.
//! - Confidence intervals: bootstrap over seeds. Each replicate redraws, at every fraction, the
//!   per-seed observations with replacement and refits; the interval is the 2.5–97.5 percentile range.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("a fit needs at least {needed} distinct fractions, got {got}")]
    TooFewPoints { needed: usize, got: usize },
    #[error("the log-log power-law fit needs positive fractions and metrics; got fraction {x}, metric {y}")]
    NonPositive { x: f64, y: f64 },
    #[error("all fractions are equal ({0}); the exponent is undetermined")]
    ZeroVariance(f64),
    #[error("non-finite value in the data (fraction {x}, metric {y})")]
    NonFinite { x: f64, y: f64 },
    #[error("the saturating fit did not converge: {0}")]
    NoConvergence(String),
}

/// `m = a·x^b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PowerLaw {
    pub a: f64,
    pub b: f64,
    pub r2: f64,
}

impl PowerLaw {
    pub fn eval(&self, x: f64) -> f64 {
        self.a * x.powf(self.b)
    }
}

/// `m = c − a·x^(−alpha)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Saturating {
    pub a: f64,
    pub alpha: f64,
    pub c: f64,
    pub r2: f64,
}

impl Saturating {
    pub fn eval(&self, x: f64) -> f64 {
        self.c - self.a * x.powf(-self.alpha)
    }
}

fn check_finite(points: &[(f64, f64)]) -> Result<(), FitError> {
    match points.iter().find(|(x, y)| !x.is_finite() || !y.is_finite()) {
        Some(&(x, y)) => Err(FitError::NonFinite { x, y }),
        None => Ok(()),
    }
}

fn distinct_fractions(points: &[(f64, f64)]) -> usize {
    let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs.len()
}

/// Coefficient of determination in the original units.
pub fn r_squared(points: &[(f64, f64)], model: impl Fn(f64) -> f64) -> f64 {
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let ss_tot: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    let ss_res: f64 = points.iter().map(|p| (p.1 - model(p.0)).powi(2)).sum();
    if ss_tot == 0.0 {
        if ss_res == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - ss_res / ss_tot
    }
}

/// Least-squares power law on log-log axes. Points are (fraction, metric); repeated fractions
/// (several seeds) are fine.
pub fn fit_power_law(points: &[(f64, f64)]) -> Result<PowerLaw, FitError> {
    check_finite(points)?;
    if let Some(&(x, y)) = points.iter().find(|(x, y)| *x <= 0.0 || *y <= 0.0) {
        return Err(FitError::NonPositive { x, y });
    }
    let distinct = distinct_fractions(points);
    if points.len() < 2 {
        return Err(FitError::TooFewPoints { needed: 2, got: distinct });
    }
    if distinct < 2 {
        return Err(FitError::ZeroVariance(points[0].0));
    }
    let n = points.len() as f64;
    let (lx, ly): (Vec<f64>, Vec<f64>) = points.iter().map(|(x, y)| (x.ln(), y.ln())).unzip();
    let mx = lx.iter().sum::<f64>() / n;
    let my = ly.iter().sum::<f64>() / n;
    let sxx: f64 = lx.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = lx.iter().zip(&ly).map(|(x, y)| (x - mx) * (y - my)).sum();
    let b = sxy / sxx;
    let a = (my - b * mx).exp();
    let r2 = r_squared(points, |x| a * x.powf(b));
    Ok(PowerLaw { a, b, r2 })
}

/// Levenberg–Marquardt fit of `c − a·x^(−α)`, started from the power-law fit.
pub fn fit_saturating(points: &[(f64, f64)]) -> Result<Saturating, FitError> {
    check_finite(points)?;
    let distinct = distinct_fractions(points);
    if distinct < 3 {
        return Err(FitError::TooFewPoints { needed: 3, got: distinct });
    }
    if let Some(&(x, y)) = points.iter().find(|(x, _)| *x <= 0.0) {
        return Err(FitError::NonPositive { x, y });
    }
    let residual_ss = |p: [f64; 3]| -> f64 { points.iter().map(|(x, y)| (y - (p[2] - p[0] * x.powf(-p[1]))).powi(2)).sum() };
    let y_max = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let x_min = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let y_at_min = points.iter().filter(|p| p.0 == x_min).map(|p| p.1).sum::<f64>() / points.iter().filter(|p| p.0 == x_min).count() as f64;
    // Start: α = 0.5, c slightly above the best metric, a so that the curve passes the smallest fraction.
    let alpha0 = 0.5;
    let c0 = y_max + 0.01 * y_max.abs().max(1e-3);
    let a0 = ((c0 - y_at_min) / x_min.powf(-alpha0)).max(1e-6);
    let mut p = [a0, alpha0, c0];
    let mut cost = residual_ss(p);
    let mut lambda = 1e-3;
    for _ in 0..500 {
        // Normal equations J^T J δ = J^T r with the LM damping on the diagonal.
        let mut jtj = [[0.0f64; 3]; 3];
        let mut jtr = [0.0f64; 3];
        for &(x, y) in points {
            let pow = x.powf(-p[1]);
            let model = p[2] - p[0] * pow;
            let r = y - model;
            let grad = [-pow, p[0] * pow * x.ln(), 1.0]; // ∂model/∂(a, α, c)
            for i in 0..3 {
                jtr[i] += grad[i] * r;
                for j in 0..3 {
                    jtj[i][j] += grad[i] * grad[j];
                }
            }
        }
        let mut improved = false;
        for _ in 0..20 {
            let mut m = jtj;
            for (i, row) in m.iter_mut().enumerate() {
                row[i] += lambda * jtj[i][i].max(1e-12);
            }
            let Some(delta) = solve3(m, jtr) else {
                lambda *= 10.0;
                continue;
            };
            let candidate = [p[0] + delta[0], (p[1] + delta[1]).max(1e-6), p[2] + delta[2]];
            let candidate_cost = residual_ss(candidate);
            if candidate_cost.is_finite() && candidate_cost <= cost {
                let converged = (cost - candidate_cost) <= 1e-15 * cost.max(1e-30) + 1e-30;
                p = candidate;
                cost = candidate_cost;
                lambda = (lambda / 10.0).max(1e-12);
                improved = true;
                if converged {
                    let r2 = r_squared(points, |x| p[2] - p[0] * x.powf(-p[1]));
                    return Ok(Saturating { a: p[0], alpha: p[1], c: p[2], r2 });
                }
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    if !p.iter().all(|v| v.is_finite()) {
        return Err(FitError::NoConvergence(format!("parameters diverged to {p:?}")));
    }
    let r2 = r_squared(points, |x| p[2] - p[0] * x.powf(-p[1]));
    Ok(Saturating { a: p[0], alpha: p[1], c: p[2], r2 })
}

/// Solves a 3×3 system by Gaussian elimination with partial pivoting.
fn solve3(mut m: [[f64; 3]; 3], mut v: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-300 {
            return None;
        }
        m.swap(col, pivot);
        v.swap(col, pivot);
        for row in col + 1..3 {
            let f = m[row][col] / m[col][col];
            let pivot_row = m[col];
            for (value, pivot) in m[row].iter_mut().zip(pivot_row).skip(col) {
                *value -= f * pivot;
            }
            v[row] -= f * v[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        x[row] = (v[row] - (row + 1..3).map(|k| m[row][k] * x[k]).sum::<f64>()) / m[row][row];
    }
    Some(x)
}

/// A 95% percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, v: f64) -> bool {
        self.low <= v && v <= self.high
    }
}

/// Bootstrap over seeds: resamples, within every fraction, the observations with replacement, refits
/// with `fit`, and returns the 2.5–97.5 percentile interval of each parameter `fit` returns.
pub fn bootstrap<const P: usize>(
    points: &[(f64, f64)],
    replicates: usize,
    seed: u64,
    fit: impl Fn(&[(f64, f64)]) -> Result<[f64; P], FitError>,
) -> Result<[Interval; P], FitError> {
    let mut groups: Vec<(f64, Vec<f64>)> = Vec::new();
    for &(x, y) in points {
        match groups.iter_mut().find(|g| g.0 == x) {
            Some(g) => g.1.push(y),
            None => groups.push((x, vec![y])),
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draws: Vec<[f64; P]> = Vec::with_capacity(replicates);
    for _ in 0..replicates {
        let sample: Vec<(f64, f64)> = groups
            .iter()
            .flat_map(|(x, ys)| (0..ys.len()).map(|_| (*x, ys[rng.random_range(0..ys.len())])).collect::<Vec<_>>())
            .collect();
        if let Ok(params) = fit(&sample) {
            draws.push(params);
        }
    }
    if draws.len() < replicates / 2 {
        return Err(FitError::NoConvergence(format!("only {} of {replicates} bootstrap refits succeeded", draws.len())));
    }
    Ok(std::array::from_fn(|k| {
        let mut values: Vec<f64> = draws.iter().map(|d| d[k]).collect();
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
        Interval { low: at(0.025), high: at(0.975) }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRACTIONS: [f64; 9] = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0];

    #[test]
    fn power_law_recovers_known_parameters() {
        let points: Vec<(f64, f64)> = FRACTIONS.iter().map(|&x| (x, 0.85 * x.powf(0.06))).collect();
        let fit = fit_power_law(&points).unwrap();
        assert!((fit.a - 0.85).abs() < 1e-3 && (fit.b - 0.06).abs() < 1e-3, "{fit:?}");
        assert!(fit.r2 > 0.999999);
    }

    /// Deterministic pseudo-noise in [-1, 1].
    fn noise(seed: u64, i: usize) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 1000 + i as u64);
        rng.random_range(-1.0..1.0)
    }

    #[test]
    fn noisy_power_law_truth_lies_within_the_bootstrap_interval() {
        let points: Vec<(f64, f64)> =
            (0..5).flat_map(|s| FRACTIONS.iter().enumerate().map(move |(i, &x)| (x, 0.85 * x.powf(0.06) + 0.01 * noise(s, i)))).collect();
        let fit = fit_power_law(&points).unwrap();
        let [a, b] = bootstrap(&points, 400, 1, |p| fit_power_law(p).map(|f| [f.a, f.b])).unwrap();
        assert!(a.contains(0.85) && b.contains(0.06), "a {a:?} b {b:?} fit {fit:?}");
        assert!(a.contains(fit.a) && b.contains(fit.b));
        assert!(b.high - b.low < 0.05, "interval should be informative: {b:?}");
    }

    #[test]
    fn saturating_law_recovers_known_parameters() {
        let truth = Saturating { a: 0.02, alpha: 0.5, c: 0.82, r2: 1.0 };
        let points: Vec<(f64, f64)> = FRACTIONS.iter().map(|&x| (x, truth.eval(x))).collect();
        let fit = fit_saturating(&points).unwrap();
        assert!((fit.a - 0.02).abs() < 1e-4 && (fit.alpha - 0.5).abs() < 1e-3 && (fit.c - 0.82).abs() < 1e-4, "{fit:?}");
        assert!(fit.r2 > 0.99999);
    }

    #[test]
    fn degenerate_inputs_are_clear_errors() {
        assert_eq!(fit_power_law(&[(0.5, 0.7)]), Err(FitError::TooFewPoints { needed: 2, got: 1 }));
        assert_eq!(fit_power_law(&[(0.5, 0.7), (0.5, 0.8)]), Err(FitError::ZeroVariance(0.5)));
        let err = fit_power_law(&[(0.1, 0.7), (0.2, 0.0)]).unwrap_err();
        assert_eq!(err, FitError::NonPositive { x: 0.2, y: 0.0 });
        assert!(err.to_string().contains("positive"));
        assert!(matches!(fit_power_law(&[(0.1, f64::NAN), (0.2, 0.5)]), Err(FitError::NonFinite { .. })));
        assert_eq!(fit_saturating(&[(0.1, 0.5), (0.2, 0.6)]), Err(FitError::TooFewPoints { needed: 3, got: 2 }));
        assert_eq!(fit_saturating(&[(0.5, 0.7)]), Err(FitError::TooFewPoints { needed: 3, got: 1 }));
        assert_eq!(fit_saturating(&[(0.0, 0.5), (0.1, 0.6), (0.2, 0.7)]), Err(FitError::NonPositive { x: 0.0, y: 0.5 }));
        // Negative metrics are fine for the saturating form (it has an offset), not for the log fit.
        assert!(fit_saturating(&[(0.1, -0.5), (0.2, -0.4), (0.4, -0.35)]).is_ok());
        assert!(matches!(fit_power_law(&[(0.1, -0.5), (0.2, -0.4)]), Err(FitError::NonPositive { .. })));
    }

    #[test]
    fn saturating_bootstrap_intervals_cover_the_truth_in_most_noisy_replications() {
        // A 95% interval misses now and then, and with five seeds per fraction the bootstrap is a little
        // narrow, so one noisy data set proves little: count coverage over 20 independent ones.
        let truth = Saturating { a: 0.02, alpha: 0.5, c: 0.82, r2: 1.0 };
        let mut covered = [0; 3];
        for replication in 0..20u64 {
            let points: Vec<(f64, f64)> = (0..5)
                .flat_map(|s| FRACTIONS.iter().enumerate().map(move |(i, &x)| (x, truth.eval(x) + 0.002 * noise(100 + replication * 10 + s, i))))
                .collect();
            let intervals = bootstrap(&points, 200, replication, |p| fit_saturating(p).map(|f| [f.a, f.alpha, f.c])).unwrap();
            for (k, value) in [truth.a, truth.alpha, truth.c].into_iter().enumerate() {
                covered[k] += intervals[k].contains(value) as usize;
            }
            assert!(intervals[2].high - intervals[2].low < 0.01, "interval should be informative: {:?}", intervals[2]);
        }
        assert!(covered.iter().all(|&c| c >= 14), "coverage of (a, alpha, c) out of 20: {covered:?}");
    }
}
