//! Evaluation metrics in pure Rust, matching scikit-learn (ties included):
//! [`roc_auc`] like `roc_auc_score` (trapezoidal ROC, a tie counts one half),
//! [`average_precision`] like `average_precision_score` (step-wise, no interpolation), and
//! [`mae`]/[`rmse`]. Multi-task versions skip missing labels (NaN) and average over the tasks where
//! the metric is defined (both classes present, for the binary ones), as Hu et al. do.

use crate::data::TaskKind;

pub const ROC_AUC: &str = "roc_auc";
pub const AVERAGE_PRECISION: &str = "average_precision";
pub const MAE: &str = "mae";
pub const RMSE: &str = "rmse";
pub const LOSS: &str = "loss";
/// Number of training samples in an epoch's plan (a `train` row of `metrics.parquet`).
pub const KEPT: &str = "kept";

/// Whether a larger value of the named metric is better.
pub fn higher_is_better(metric: &str) -> bool {
    matches!(metric, ROC_AUC | AVERAGE_PRECISION)
}

/// Indices of `scores` sorted by decreasing score, then the end of each group of tied scores.
fn tie_groups(scores: &[f32]) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut ends = Vec::new();
    for k in 1..=order.len() {
        if k == order.len() || scores[order[k]] != scores[order[k - 1]] {
            ends.push(k);
        }
    }
    (order, ends)
}

/// Area under the ROC curve; `None` unless both classes are present. `positive[i]` is the label.
pub fn roc_auc(positive: &[bool], scores: &[f32]) -> Option<f64> {
    assert_eq!(positive.len(), scores.len());
    let (order, ends) = tie_groups(scores);
    let (mut tp, mut fp, mut start) = (0u64, 0u64, 0);
    // Twice the area in units of (1 positive × 1 negative): exact integer arithmetic.
    let mut area2: u128 = 0;
    for end in ends {
        let group_tp = order[start..end].iter().filter(|&&i| positive[i]).count() as u64;
        let group_fp = (end - start) as u64 - group_tp;
        area2 += group_fp as u128 * (2 * tp as u128 + group_tp as u128);
        tp += group_tp;
        fp += group_fp;
        start = end;
    }
    (tp > 0 && fp > 0).then(|| area2 as f64 / (2.0 * tp as f64 * fp as f64))
}

/// Average precision `Σ (R_k − R_{k−1}) P_k` over decreasing distinct thresholds; `None` without
/// positives (or without negatives, for symmetry with [`roc_auc`] in multi-task averaging).
pub fn average_precision(positive: &[bool], scores: &[f32]) -> Option<f64> {
    assert_eq!(positive.len(), scores.len());
    let total_pos = positive.iter().filter(|&&p| p).count();
    if total_pos == 0 || total_pos == positive.len() {
        return None;
    }
    let (order, ends) = tie_groups(scores);
    let (mut tp, mut start, mut ap) = (0usize, 0usize, 0f64);
    for end in ends {
        let group_tp = order[start..end].iter().filter(|&&i| positive[i]).count();
        if group_tp > 0 {
            let precision = (tp + group_tp) as f64 / end as f64;
            ap += group_tp as f64 / total_pos as f64 * precision;
        }
        tp += group_tp;
        start = end;
    }
    Some(ap)
}

pub fn mae(y: &[f32], pred: &[f32]) -> Option<f64> {
    (!y.is_empty()).then(|| y.iter().zip(pred).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>() / y.len() as f64)
}

pub fn rmse(y: &[f32], pred: &[f32]) -> Option<f64> {
    (!y.is_empty()).then(|| (y.iter().zip(pred).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>() / y.len() as f64).sqrt())
}

/// Mean of the defined values; `None` if none is defined.
fn mean_defined(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let defined: Vec<f64> = values.flatten().collect();
    (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
}

/// The metrics of one split: `labels` and `outputs` are `rows × tasks`, row-major, labels NaN where
/// missing; outputs are logits (binary) or predictions in original units (regression).
/// Returns `(name, value)` pairs in a fixed order; a value is `None` where no task defines it.
pub fn evaluate(kind: TaskKind, tasks: usize, labels: &[f32], outputs: &[f32]) -> Vec<(&'static str, Option<f64>)> {
    assert_eq!(labels.len(), outputs.len());
    let rows = labels.len().checked_div(tasks).unwrap_or(0);
    let column = |j: usize| -> (Vec<f32>, Vec<f32>) {
        (0..rows).map(|i| (labels[i * tasks + j], outputs[i * tasks + j])).filter(|(y, _)| !y.is_nan()).unzip()
    };
    let columns: Vec<(Vec<f32>, Vec<f32>)> = (0..tasks).map(column).collect();
    match kind {
        TaskKind::Binary => {
            let pos: Vec<Vec<bool>> = columns.iter().map(|(y, _)| y.iter().map(|&v| v > 0.5).collect()).collect();
            vec![
                (ROC_AUC, mean_defined(columns.iter().zip(&pos).map(|((_, s), p)| roc_auc(p, s)))),
                (AVERAGE_PRECISION, mean_defined(columns.iter().zip(&pos).map(|((_, s), p)| average_precision(p, s)))),
            ]
        }
        TaskKind::Regression => vec![
            (MAE, mean_defined(columns.iter().map(|(y, p)| mae(y, p)))),
            (RMSE, mean_defined(columns.iter().map(|(y, p)| rmse(y, p)))),
        ],
    }
}

/// One task's metrics on one split, and why a metric is undefined when it is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskMetrics {
    pub task: String,
    /// Metric name → value (`None` where undefined); flattened into the task's JSON object.
    #[serde(flatten)]
    pub values: std::collections::BTreeMap<String, Option<f64>>,
    /// Molecules with a label for this task.
    pub labelled: usize,
    /// Labelled molecules with label 1 (binary tasks).
    pub positives: Option<usize>,
    /// `ok`, `no labels`, or `one class: all N labels are 0` (1): the metrics are then undefined and
    /// the task is left out of the averages.
    pub status: String,
}

/// Status of a task whose metrics are all defined.
pub const STATUS_OK: &str = "ok";

/// The metrics of every task of one split (same inputs as [`evaluate`]); the averages of
/// [`evaluate`] are the means of the defined values here.
pub fn evaluate_tasks(kind: TaskKind, task_names: &[String], labels: &[f32], outputs: &[f32]) -> Vec<TaskMetrics> {
    assert_eq!(labels.len(), outputs.len());
    let tasks = task_names.len();
    let rows = labels.len().checked_div(tasks).unwrap_or(0);
    (0..tasks)
        .map(|j| {
            let (y, p): (Vec<f32>, Vec<f32>) = (0..rows).map(|i| (labels[i * tasks + j], outputs[i * tasks + j])).filter(|(y, _)| !y.is_nan()).unzip();
            let task = task_names[j].clone();
            let labelled = y.len();
            match kind {
                TaskKind::Binary => {
                    let pos: Vec<bool> = y.iter().map(|&v| v > 0.5).collect();
                    let positives = pos.iter().filter(|&&b| b).count();
                    let status = if labelled == 0 {
                        "no labels".to_string()
                    } else if positives == 0 || positives == labelled {
                        format!("one class: all {labelled} labels are {}", if positives == 0 { 0 } else { 1 })
                    } else {
                        STATUS_OK.to_string()
                    };
                    let values = [(ROC_AUC.to_string(), roc_auc(&pos, &p)), (AVERAGE_PRECISION.to_string(), average_precision(&pos, &p))].into();
                    TaskMetrics { task, values, labelled, positives: Some(positives), status }
                }
                TaskKind::Regression => {
                    let status = if labelled == 0 { "no labels".to_string() } else { STATUS_OK.to_string() };
                    let values = [(MAE.to_string(), mae(&y, &p)), (RMSE.to_string(), rmse(&y, &p))].into();
                    TaskMetrics { task, values, labelled, positives: None, status }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values computed once with scikit-learn 1.9.1 (`roc_auc_score(y, s)`,
    // `average_precision_score(y, s)`); both vectors are full of ties (and hold 0.0 and -0.0).
    const Y1: [bool; 10] = [true, false, true, true, false, false, true, false, true, false];
    const S1: [f32; 10] = [0.9, 0.8, 0.8, 0.7, 0.5, 0.5, 0.5, 0.2, 0.1, 0.1];
    const AUC1: f64 = 0.6799999999999999;
    const AP1: f64 = 0.6976190476190476;
    #[rustfmt::skip]
    const Y2: [bool; 40] = [false, false, true, false, true, true, true, false, false, false, false, true, true, false, true, false, true, true, true, true, true, false, false, true, false, true, true, false, true, false, false, true, false, true, false, true, true, true, true, true];
    #[rustfmt::skip]
    const S2: [f32; 40] = [-1.0, -1.5, 1.0, -0.5, -1.0, -0.0, 0.5, -1.0, -1.5, 0.0, 1.0, 0.5, 0.0, 0.5, 1.5, -0.5, 1.5, 2.0, 0.5, -0.0, 1.0, 0.0, 1.0, -0.5, -0.5, -0.0, -1.0, 0.0, 1.5, -0.5, 1.5, 1.5, 0.5, 1.0, 1.0, -0.5, 1.5, 1.5, -1.0, 1.0];
    const AUC2: f64 = 0.6879795396419437;
    const AP2: f64 = 0.738170029817627;

    #[test]
    fn matches_sklearn_with_ties() {
        for (y, s, auc, ap) in [(&Y1[..], &S1[..], AUC1, AP1), (&Y2[..], &S2[..], AUC2, AP2)] {
            let got_auc = roc_auc(y, s).unwrap();
            let got_ap = average_precision(y, s).unwrap();
            assert!((got_auc - auc).abs() < 1e-12, "{got_auc} vs {auc}");
            assert!((got_ap - ap).abs() < 1e-12, "{got_ap} vs {ap}");
        }
    }

    #[test]
    fn degenerate_cases_are_undefined() {
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(average_precision(&[false, false], &[0.1, 0.2]), None);
        assert_eq!(roc_auc(&[true, false], &[0.3, 0.3]), Some(0.5));
        assert_eq!(roc_auc(&[true, false], &[0.4, 0.3]), Some(1.0));
        assert_eq!(roc_auc(&[false, true], &[0.4, 0.3]), Some(0.0));
    }

    #[test]
    fn multitask_skips_missing_labels_and_single_class_tasks() {
        let nan = f32::NAN;
        // Task 0: perfect ranking; task 1: one class only (skipped); missing labels ignored.
        let labels = [1.0, 1.0, 0.0, 1.0, nan, 1.0, 0.0, nan];
        let outputs = [3.0, 0.0, -1.0, 0.0, 100.0, 0.0, -2.0, 0.0];
        let m = evaluate(TaskKind::Binary, 2, &labels, &outputs);
        assert_eq!(m[0], (ROC_AUC, Some(1.0)));
        assert_eq!(m[1], (AVERAGE_PRECISION, Some(1.0)));
        let per_task = evaluate_tasks(TaskKind::Binary, &["a".into(), "b".into()], &labels, &outputs);
        assert_eq!(per_task[0].values[ROC_AUC], Some(1.0));
        assert_eq!((per_task[0].labelled, per_task[0].positives, per_task[0].status.as_str()), (3, Some(1), STATUS_OK));
        assert_eq!(per_task[1].values[ROC_AUC], None);
        assert_eq!(per_task[1].status, "one class: all 3 labels are 1");
        let r = evaluate(TaskKind::Regression, 1, &[1.0, nan, 3.0], &[2.0, 50.0, 1.0]);
        assert_eq!(r[0], (MAE, Some(1.5)));
        assert!((r[1].1.unwrap() - 2.5f64.sqrt()).abs() < 1e-12);
    }
}
