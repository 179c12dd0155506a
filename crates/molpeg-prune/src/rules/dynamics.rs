//! Scores from (early) training dynamics: forgetting events (Toneva et al. ICLR 2019), and GraNd and
//! EL2N (Paul et al. NeurIPS 2021). The rules keep the largest scores.
//!
//! GraNd and EL2N take one [`RunOutputs`] per seed (or per early epoch) and average the per-run scores,
//! as Paul et al. average over ten initialisations.

use super::{check_shape, Matrix, RuleError, RunOutputs};

/// Forgetting events per sample from its correctness at each epoch (`correct` is N×E, epochs in order):
/// the number of times a sample goes from correct at epoch t − 1 to incorrect at epoch t. A sample that
/// is never correct scores +∞, so it ranks as the most forgettable, as Toneva et al. do for examples
/// never learned. "Unforgettable" samples (learned, never forgotten) score 0 and are pruned first.
pub fn forgetting_scores(correct: Matrix<bool>) -> Vec<f64> {
    (0..correct.rows())
        .map(|i| {
            let row = correct.row(i);
            if !row.iter().any(|&c| c) {
                return f64::INFINITY;
            }
            row.windows(2).filter(|w| w[0] && !w[1]).count() as f64
        })
        .collect()
}

/// Whether each sample is classified correctly at threshold 0.5: every valid task's prediction
/// (p ≥ 0.5) matches its label (y ≥ 0.5). A sample with no valid task counts as correct (it has nothing
/// to get wrong, and contributes no loss), so it is never forgotten and never learned late.
/// Build one column of the forgetting rule's N×E matrix per epoch from this.
pub fn correctness(probs: Matrix<f32>, labels: Matrix<f32>, mask: Matrix<bool>) -> Result<Vec<bool>, RuleError> {
    check_labels(&probs, &labels, &mask)?;
    Ok((0..probs.rows())
        .map(|i| {
            let (p, y, m) = (probs.row(i), labels.row(i), mask.row(i));
            (0..p.len()).filter(|&t| m[t]).all(|t| (p[t] >= 0.5) == (y[t] >= 0.5))
        })
        .collect())
}

fn check_labels(probs: &Matrix<f32>, labels: &Matrix<f32>, mask: &Matrix<bool>) -> Result<(), RuleError> {
    check_shape("labels", labels, probs.rows(), Some(probs.cols()))?;
    check_shape("label mask", mask, probs.rows(), Some(probs.cols()))
}

/// Σ over valid tasks of (p − y)², or NaN with no valid task.
fn squared_error(p: &[f32], y: &[f32], m: &[bool]) -> f64 {
    let mut sum = None;
    for t in (0..p.len()).filter(|&t| m[t]) {
        let e = p[t] as f64 - y[t] as f64;
        sum = Some(sum.unwrap_or(0.0) + e * e);
    }
    sum.unwrap_or(f64::NAN)
}

/// EL2N of one run: ‖p − y‖₂ over the valid tasks of each sample; NaN for a sample with no valid task.
pub fn el2n_run(probs: Matrix<f32>, labels: Matrix<f32>, mask: Matrix<bool>) -> Result<Vec<f64>, RuleError> {
    check_labels(&probs, &labels, &mask)?;
    Ok((0..probs.rows()).map(|i| squared_error(probs.row(i), labels.row(i), mask.row(i)).sqrt()).collect())
}

/// GraNd of one run: the norm of the per-sample loss gradient w.r.t. the last (linear) layer. For a
/// sigmoid head z = W·h + b with BCE summed over the valid tasks, ∂L/∂z_t = p_t − y_t, so the gradient
/// is (p_t − y_t)·[h, 1] per valid task and its norm is ‖p − y‖_valid · √(‖h‖² + 1). NaN for a sample
/// with no valid task. `embeddings` (N×D) is the head's input h.
pub fn grand_run(probs: Matrix<f32>, embeddings: Matrix<f32>, labels: Matrix<f32>, mask: Matrix<bool>) -> Result<Vec<f64>, RuleError> {
    check_labels(&probs, &labels, &mask)?;
    check_shape("embeddings", &embeddings, probs.rows(), None)?;
    Ok((0..probs.rows())
        .map(|i| {
            let h2: f64 = embeddings.row(i).iter().map(|&x| x as f64 * x as f64).sum();
            (squared_error(probs.row(i), labels.row(i), mask.row(i)) * (h2 + 1.0)).sqrt()
        })
        .collect())
}

/// Element-wise mean of per-run scores (NaN where any run has NaN). Empty input gives an empty vector.
pub fn mean_over_runs(per_run: &[Vec<f64>]) -> Vec<f64> {
    let Some(first) = per_run.first() else { return Vec::new() };
    let mut mean = vec![0.0; first.len()];
    for run in per_run {
        assert_eq!(run.len(), mean.len(), "runs score different numbers of samples");
        mean.iter_mut().zip(run).for_each(|(m, s)| *m += s);
    }
    mean.iter_mut().for_each(|m| *m /= per_run.len() as f64);
    mean
}

fn check_runs(runs: &[RunOutputs]) -> Result<(), RuleError> {
    let Some(first) = runs.first() else { return Ok(()) };
    for (k, run) in runs.iter().enumerate() {
        check_shape(&format!("run {k}'s probabilities"), &run.probs, first.probs.rows(), Some(first.probs.cols()))?;
    }
    Ok(())
}

/// EL2N averaged over runs (seeds / early epochs).
pub fn el2n_scores(runs: &[RunOutputs], labels: Matrix<f32>, mask: Matrix<bool>) -> Result<Vec<f64>, RuleError> {
    check_runs(runs)?;
    let per_run = runs.iter().map(|r| el2n_run(r.probs, labels, mask)).collect::<Result<Vec<_>, _>>()?;
    Ok(mean_over_runs(&per_run))
}

/// GraNd averaged over runs; every run must carry its embeddings.
pub fn grand_scores(runs: &[RunOutputs], labels: Matrix<f32>, mask: Matrix<bool>) -> Result<Vec<f64>, RuleError> {
    check_runs(runs)?;
    let per_run = runs
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let h = r.embeddings.ok_or_else(|| RuleError::MissingInput { rule: "grand".into(), input: if k == 0 { "run 0's embeddings" } else { "every run's embeddings" } })?;
            grand_run(r.probs, h, labels, mask)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(mean_over_runs(&per_run))
}

#[cfg(test)]
mod tests {
    use super::super::tests::keep;
    use super::super::{RuleInputs, StaticRule};
    use super::*;

    #[test]
    fn forgetting_counts_scripted_events() {
        let (t, f) = (true, false);
        #[rustfmt::skip]
        let seq = [
            f, t, t, t, t, t, // learned once, never forgotten: 0
            t, f, t, f, t, f, // forgotten three times: 3
            f, f, t, f, f, t, // one event: 1
            f, f, f, f, f, f, // never learned: ∞
            t, t, f, f, t, t, // one event: 1
        ];
        let scores = forgetting_scores(Matrix::new(&seq, 6).unwrap());
        assert_eq!(scores, vec![0.0, 3.0, 1.0, f64::INFINITY, 1.0]);
        let inputs = RuleInputs { correctness: Some(Matrix::new(&seq, 6).unwrap()), ..RuleInputs::default() };
        let rows: Vec<usize> = StaticRule::Forgetting.select(&inputs, keep(1.0), 0).unwrap().iter().map(|p| p.index).collect();
        assert_eq!(rows, vec![3, 1, 2, 4, 0]);
    }

    #[test]
    fn correctness_thresholds_valid_tasks_only() {
        let probs = [0.9f32, 0.1, 0.4, 0.6, 0.2, 0.2];
        let labels = [1.0f32, 1.0, 0.0, 1.0, 1.0, 1.0];
        let mask = [true, false, true, true, false, false];
        let c = correctness(Matrix::new(&probs, 2).unwrap(), Matrix::new(&labels, 2).unwrap(), Matrix::new(&mask, 2).unwrap()).unwrap();
        assert_eq!(c, vec![true, true, true]);
        let mask = [true, true, true, true, false, false];
        let c = correctness(Matrix::new(&probs, 2).unwrap(), Matrix::new(&labels, 2).unwrap(), Matrix::new(&mask, 2).unwrap()).unwrap();
        assert_eq!(c, vec![false, true, true]);
    }

    #[test]
    fn el2n_and_grand_on_hand_computed_values() {
        // Sample 0: errors (0.6, −0.8) on two valid tasks → 1.0; sample 1: task 1 missing → |0.5|;
        // sample 2: no valid task → NaN.
        let probs_a = [0.6f32, 0.2, 0.5, 0.9, 0.5, 0.5];
        let probs_b = [0.3f32, 1.0, 0.1, 0.0, 0.5, 0.5];
        let labels = [0.0f32, 1.0, 1.0, 0.0, 0.0, 0.0];
        let mask = [true, true, true, false, false, false];
        let emb = [3.0f32, 4.0, 0.0, 0.0, 1.0, 1.0]; // ‖h‖² = 25, 0, 2
        let (l, m) = (Matrix::new(&labels, 2).unwrap(), Matrix::new(&mask, 2).unwrap());
        let h = Matrix::new(&emb, 2).unwrap();
        let runs = [
            RunOutputs { probs: Matrix::new(&probs_a, 2).unwrap(), embeddings: Some(h) },
            RunOutputs { probs: Matrix::new(&probs_b, 2).unwrap(), embeddings: Some(h) },
        ];
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;

        let a = el2n_run(runs[0].probs, l, m).unwrap();
        assert!(close(a[0], 1.0) && close(a[1], 0.5) && a[2].is_nan(), "{a:?}");
        // Run b: sample 0 errors (0.3, 0) → 0.3; sample 1: 0.9. Mean: 0.65, 0.7.
        let e = el2n_scores(&runs, l, m).unwrap();
        assert!(close(e[0], 0.65) && close(e[1], 0.7) && e[2].is_nan(), "{e:?}");

        let g = grand_run(runs[0].probs, h, l, m).unwrap();
        assert!(close(g[0], 1.0 * 26f64.sqrt()) && close(g[1], 0.5), "{g:?}");
        let g = grand_scores(&runs, l, m).unwrap();
        assert!(close(g[0], (1.0 + 0.3) / 2.0 * 26f64.sqrt()) && close(g[1], 0.7), "{g:?}");
        assert!(g[2].is_nan());

        let no_h = [RunOutputs { probs: runs[0].probs, embeddings: None }];
        assert!(matches!(grand_scores(&no_h, l, m), Err(RuleError::MissingInput { .. })));
    }
}
