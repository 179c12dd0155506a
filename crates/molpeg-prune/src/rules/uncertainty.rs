//! Uncertainty scores of binary multi-task predictions (Coleman et al. ICLR 2020, "Selection via
//! proxy"): least confidence, entropy and margin, summed over the valid tasks of each sample. Every
//! score grows with uncertainty; the rules keep the largest.

use serde::{Deserialize, Serialize};

use super::{check_shape, Matrix, RuleError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Uncertainty {
    /// 1 − max(p, 1 − p) ∈ [0, 0.5].
    LeastConfidence,
    /// −p ln p − (1 − p) ln(1 − p) ∈ [0, ln 2] (natural log, 0 ln 0 = 0).
    Entropy,
    /// 1 − |p − (1 − p)| ∈ [0, 1]: one minus the margin between the two classes.
    Margin,
}

impl Uncertainty {
    pub fn name(self) -> &'static str {
        match self {
            Uncertainty::LeastConfidence => "least-confidence",
            Uncertainty::Entropy => "entropy",
            Uncertainty::Margin => "margin",
        }
    }

    /// The score of one task's predicted probability p of the positive class (clamped to [0, 1]; NaN
    /// stays NaN).
    pub fn of(self, p: f64) -> f64 {
        let p = p.clamp(0.0, 1.0);
        let q = 1.0 - p;
        match self {
            Uncertainty::LeastConfidence => 1.0 - p.max(q),
            Uncertainty::Entropy => {
                let xlnx = |x: f64| if x > 0.0 { x * x.ln() } else { 0.0 };
                if p.is_nan() {
                    f64::NAN
                } else {
                    -xlnx(p) - xlnx(q)
                }
            }
            Uncertainty::Margin => 1.0 - (p - q).abs(),
        }
    }
}

/// Per sample, the sum of `kind` over the tasks whose label is valid (`mask` true); NaN for a sample
/// with no valid task. `probs` and `mask` are both N×T.
pub fn uncertainty_scores(kind: Uncertainty, probs: Matrix<f32>, mask: Matrix<bool>) -> Result<Vec<f64>, RuleError> {
    check_shape("label mask", &mask, probs.rows(), Some(probs.cols()))?;
    Ok((0..probs.rows())
        .map(|i| {
            let valid = probs.row(i).iter().zip(mask.row(i)).filter(|(_, &v)| v);
            valid.fold(None, |acc: Option<f64>, (&p, _)| Some(acc.unwrap_or(0.0) + kind.of(p as f64))).unwrap_or(f64::NAN)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values_with_a_missing_label_excluded() {
        // Sample 0: p = 0.9 (valid), 0.5 (missing). Sample 1: p = 0.2, 0.5 both valid. Sample 2: none valid.
        let probs = [0.9f32, 0.5, 0.2, 0.5, 0.3, 0.3];
        let mask = [true, false, true, true, false, false];
        let (p, m) = (Matrix::new(&probs, 2).unwrap(), Matrix::new(&mask, 2).unwrap());
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;

        let lc = uncertainty_scores(Uncertainty::LeastConfidence, p, m).unwrap();
        assert!(close(lc[0], 0.1) && close(lc[1], 0.2 + 0.5), "{lc:?}");
        assert!(lc[2].is_nan());

        let h = uncertainty_scores(Uncertainty::Entropy, p, m).unwrap();
        let h09 = -(0.9f64 * 0.9f64.ln() + 0.1 * 0.1f64.ln()); // 0.325083
        let h02 = -(0.2f64 * 0.2f64.ln() + 0.8 * 0.8f64.ln()); // 0.500402
        assert!(close(h[0], h09) && close(h[0], 0.325083), "{h:?}");
        assert!(close(h[1], h02 + 2f64.ln()));

        let margin = uncertainty_scores(Uncertainty::Margin, p, m).unwrap();
        assert!(close(margin[0], 0.2) && close(margin[1], 0.4 + 1.0), "{margin:?}");

        // Certain predictions score 0; the fair coin is the maximum of each.
        assert_eq!(Uncertainty::Entropy.of(1.0), 0.0);
        assert_eq!(Uncertainty::Entropy.of(0.0), 0.0);
        assert_eq!(Uncertainty::LeastConfidence.of(0.5), 0.5);
        assert_eq!(Uncertainty::Margin.of(0.5), 1.0);
        assert!(Uncertainty::Entropy.of(f64::NAN).is_nan());
    }
}
