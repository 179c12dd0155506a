//! Rules over the geometry of an embedding space: herding, k-center, k-means prototypes and
//! Moderate-DS. Distances are Euclidean, accumulated in f64. k-means also runs on fingerprint bits
//! (`Matrix<u8>` of 0/1): it is generic over any [`Coordinate`], so both spaces share one code path.
//!
//! Cost: herding and k-center are O(k·N·D) for k picks (one pass over the candidates per pick);
//! k-means is O(iterations·K·N·D).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{check_shape, KMeansOptions, Matrix, Pick, RuleError};

/// A value k-means can place in space: f32 embeddings, or u8 fingerprint bits (0/1).
pub trait Coordinate: Copy + Into<f64> {}
impl Coordinate for f32 {}
impl Coordinate for u8 {}

fn sq_dist<T: Coordinate>(a: &[T], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x.into() - y) * (x.into() - y)).sum()
}

fn sq_dist_rows(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64) * (x as f64 - y as f64)).sum()
}

fn column_mean(emb: Matrix<f32>) -> Vec<f64> {
    let mut mean = vec![0.0; emb.cols()];
    for i in 0..emb.rows() {
        for (m, &x) in mean.iter_mut().zip(emb.row(i)) {
            *m += x as f64;
        }
    }
    let n = emb.rows().max(1) as f64;
    mean.iter_mut().for_each(|m| *m /= n);
    mean
}

/// The median of finite-or-infinite values (NaN excluded); the mean of the two middle ones for an
/// even count; NaN when there is none.
pub(crate) fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The untaken row nearest `target` (ties: lowest row).
fn nearest_untaken(emb: Matrix<f32>, target: &[f64], taken: &[bool]) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for (i, _) in taken.iter().enumerate().filter(|(_, &t)| !t) {
        let d = sq_dist(emb.row(i), target);
        if best.is_none_or(|(_, b)| d < b) {
            best = Some((i, d));
        }
    }
    best
}

/// Herding (Welling 2009; the coreset form of Chen, Welling & Smola 2010 used by DeepCore): greedy
/// moment matching. Pick m+1 is the sample that brings the mean of the picked embeddings closest to the
/// mean μ of all embeddings, i.e. the row nearest (m+1)·μ − Σ picked; so the first pick is the row
/// nearest μ. Ties: lowest row. A pick's score is ‖running mean − μ‖ right after it was added.
pub fn herding(emb: Matrix<f32>, count: usize) -> Vec<Pick> {
    let (n, d) = (emb.rows(), emb.cols());
    let mean = column_mean(emb);
    let mut sum = vec![0.0f64; d];
    let mut target = vec![0.0f64; d];
    let mut taken = vec![false; n];
    let mut picks = Vec::with_capacity(count.min(n));
    for m in 0..count.min(n) {
        let scale = (m + 1) as f64;
        for ((t, &mu), &s) in target.iter_mut().zip(&mean).zip(&sum) {
            *t = scale * mu - s;
        }
        let (best, _) = nearest_untaken(emb, &target, &taken).expect("fewer picks than rows");
        taken[best] = true;
        for (s, &x) in sum.iter_mut().zip(emb.row(best)) {
            *s += x as f64;
        }
        let gap: f64 = sum.iter().zip(&mean).map(|(&s, &mu)| (s / scale - mu).powi(2)).sum();
        picks.push(Pick { index: best, score: gap.sqrt() });
    }
    picks
}

/// Greedy k-center (Sener & Savarese 2018): a farthest-point traversal. The first pick is the row
/// nearest the mean embedding (deterministic, no seed; ties: lowest row); each next pick is the row
/// farthest from every earlier pick (ties: lowest row), so the first picks cover the extremes. A pick's
/// score is its distance to the nearest earlier pick (for the first pick: to the mean), i.e. the
/// covering radius just before it was added, non-increasing after the first pick.
pub fn kcenter(emb: Matrix<f32>, count: usize) -> Vec<Pick> {
    let n = emb.rows();
    let count = count.min(n);
    if count == 0 {
        return Vec::new();
    }
    let mut taken = vec![false; n];
    let (first, d0) = nearest_untaken(emb, &column_mean(emb), &taken).expect("at least one row");
    taken[first] = true;
    let mut picks = vec![Pick { index: first, score: d0.sqrt() }];
    let mut nearest: Vec<f64> = (0..n).map(|i| sq_dist_rows(emb.row(i), emb.row(first))).collect();
    while picks.len() < count {
        let mut best: Option<(usize, f64)> = None;
        for i in (0..n).filter(|&i| !taken[i]) {
            if best.is_none_or(|(_, b)| nearest[i] > b) {
                best = Some((i, nearest[i]));
            }
        }
        let (next, radius) = best.expect("fewer picks than rows");
        taken[next] = true;
        picks.push(Pick { index: next, score: radius.sqrt() });
        for (i, d) in nearest.iter_mut().enumerate() {
            *d = d.min(sq_dist_rows(emb.row(i), emb.row(next)));
        }
    }
    picks
}

/// A k-means fit: `centroids` is K×D row-major, `assignment[i]` the centroid of row i.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansFit {
    pub centroids: Vec<f64>,
    pub dim: usize,
    pub assignment: Vec<usize>,
    /// Lloyd iterations run (centroid updates).
    pub iterations: usize,
    /// Whether the assignment stopped changing before `max_iter`.
    pub converged: bool,
}

impl KMeansFit {
    pub fn centroid(&self, k: usize) -> &[f64] {
        &self.centroids[k * self.dim..(k + 1) * self.dim]
    }
}

/// Nearest centroid of a row (ties: lowest centroid) and the squared distance to it.
fn nearest_centroid<T: Coordinate>(row: &[T], centroids: &[f64], dim: usize) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (k, c) in centroids.chunks_exact(dim).enumerate() {
        let d = sq_dist(row, c);
        if d < best.1 {
            best = (k, d);
        }
    }
    best
}

/// k-means with seeded k-means++ initialisation (Arthur & Vassilvitskii 2007) then Lloyd iterations,
/// at most `max_iter` of them, stopping early when no assignment changes. `clusters` is clamped to N.
/// An empty cluster keeps its previous centroid. When every remaining point coincides with a chosen
/// centroid, k-means++ draws the next centre uniformly.
pub fn kmeans<T: Coordinate>(emb: Matrix<T>, clusters: usize, max_iter: usize, seed: u64) -> KMeansFit {
    let (n, dim) = (emb.rows(), emb.cols());
    let k = clusters.min(n);
    let mut fit = KMeansFit { centroids: Vec::with_capacity(k * dim), dim, assignment: vec![0; n], iterations: 0, converged: true };
    if k == 0 {
        return fit;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let push = |centroids: &mut Vec<f64>, i: usize| centroids.extend(emb.row(i).iter().map(|&x| x.into()));
    push(&mut fit.centroids, rng.random_range(0..n));
    let mut d2: Vec<f64> = (0..n).map(|i| sq_dist(emb.row(i), &fit.centroids[..dim])).collect();
    while fit.centroids.len() < k * dim {
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 {
            let target = rng.random::<f64>() * total;
            let mut cumulative = 0.0;
            let mut chosen = None;
            for (i, &d) in d2.iter().enumerate().filter(|(_, &d)| d > 0.0) {
                cumulative += d;
                chosen = Some(i);
                if cumulative > target {
                    break;
                }
            }
            chosen.expect("a positive total has a positive term")
        } else {
            rng.random_range(0..n)
        };
        let start = fit.centroids.len();
        push(&mut fit.centroids, next);
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min(sq_dist(emb.row(i), &fit.centroids[start..]));
        }
    }

    for i in 0..n {
        fit.assignment[i] = nearest_centroid(emb.row(i), &fit.centroids, dim).0;
    }
    fit.converged = false;
    for _ in 0..max_iter {
        let mut sums = vec![0.0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &c) in fit.assignment.iter().enumerate() {
            counts[c] += 1;
            for (s, &x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(emb.row(i)) {
                *s += x.into();
            }
        }
        for c in (0..k).filter(|&c| counts[c] > 0) {
            for (centroid, s) in fit.centroids[c * dim..(c + 1) * dim].iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                *centroid = s / counts[c] as f64;
            }
        }
        fit.iterations += 1;
        let mut changed = false;
        for i in 0..n {
            let c = nearest_centroid(emb.row(i), &fit.centroids, dim).0;
            changed |= c != fit.assignment[i];
            fit.assignment[i] = c;
        }
        if !changed {
            fit.converged = true;
            break;
        }
    }
    fit
}

/// Sorscher et al. 2022's self-supervised prototype metric: each row's Euclidean distance to its
/// k-means centroid (the nearest one). `kmeans` keeps the largest ("hard"), `kmeans-easy` the smallest.
/// For Sorscher's cosine variant, L2-normalise the rows first. On fingerprint bits the centroid holds
/// the cluster's per-bit frequencies, and the score is the 0/1 row's Euclidean distance to them.
pub fn kmeans_scores<T: Coordinate>(emb: Matrix<T>, options: KMeansOptions, seed: u64) -> Result<Vec<f64>, RuleError> {
    if options.clusters == 0 {
        return Err(RuleError::Option("k-means needs at least one cluster".into()));
    }
    let fit = kmeans(emb, options.clusters, options.max_iter, seed);
    Ok((0..emb.rows()).map(|i| sq_dist(emb.row(i), fit.centroid(fit.assignment[i])).sqrt()).collect())
}

/// Moderate-DS (Xia et al. ICLR 2023): each row's Euclidean distance to its class centre; NaN for a row
/// without a class.
///
/// - Class: the binary label (≥ 0.5 is positive) of task `task`, or with `task = None` of the row's first
///   task with a valid label; the class is the pair (task, label), so classes of different tasks never
///   mix. A row whose chosen task is missing has no class.
/// - Class centre: the coordinate-wise median of the class's embeddings, as in the authors' code
///   (`get_median`); the paper calls it the class centre.
pub fn moderate_distances(emb: Matrix<f32>, labels: Matrix<f32>, mask: Matrix<bool>, task: Option<usize>) -> Result<Vec<f64>, RuleError> {
    let n = emb.rows();
    check_shape("labels", &labels, n, None)?;
    check_shape("label mask", &mask, n, Some(labels.cols()))?;
    if let Some(t) = task.filter(|&t| t >= labels.cols()) {
        return Err(RuleError::Option(format!("moderate: task {t} does not exist; there are {} tasks", labels.cols())));
    }
    let class_of = |i: usize| -> Option<(usize, bool)> {
        let t = match task {
            Some(t) => Some(t).filter(|&t| mask.row(i)[t]),
            None => mask.row(i).iter().position(|&valid| valid),
        }?;
        Some((t, labels.row(i)[t] >= 0.5))
    };
    let mut classes: BTreeMap<(usize, bool), Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        if let Some(class) = class_of(i) {
            classes.entry(class).or_default().push(i);
        }
    }
    let mut distances = vec![f64::NAN; n];
    for members in classes.values() {
        let centre: Vec<f64> = (0..emb.cols()).map(|j| median(members.iter().map(|&i| emb.row(i)[j] as f64))).collect();
        for &i in members {
            distances[i] = sq_dist(emb.row(i), &centre).sqrt();
        }
    }
    Ok(distances)
}

/// Moderate-DS score |d − median(d)| over rows with a class (NaN for the others); the rule keeps the
/// smallest, i.e. the samples of moderate difficulty. The median is taken over all classes together,
/// as in the authors' code. (The authors keep the rank band around the median; ranking by distance to
/// the median value is the paper's description and differs only when the distances are skewed.)
pub fn moderate_scores(emb: Matrix<f32>, labels: Matrix<f32>, mask: Matrix<bool>, task: Option<usize>) -> Result<Vec<f64>, RuleError> {
    let distances = moderate_distances(emb, labels, mask, task)?;
    let mid = median(distances.iter().copied());
    Ok(distances.iter().map(|d| (d - mid).abs()).collect())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{keep, uniform};
    use super::super::{Prototypicality, RuleInputs, StaticRule};
    use super::*;

    fn m(data: &[f32], cols: usize) -> Matrix<'_, f32> {
        Matrix::new(data, cols).unwrap()
    }

    #[test]
    fn herding_starts_nearest_the_mean_and_tracks_it() {
        // Mean of the five points is (1, 1); rows 3 and 4 are equally near it (0.25): the lower row wins.
        let pts = [0.0, 0.0, 3.0, 0.0, 0.0, 3.0, 1.25, 1.0, 0.75, 1.0];
        let picks = herding(m(&pts, 2), 5);
        assert_eq!(picks[0].index, 3);
        assert_eq!(picks[0].score, 0.25);
        // Next the row that pulls the mean back: (1,1)·2 − (1.25,1) = (0.75, 1) is row 4 exactly.
        assert_eq!(picks[1].index, 4);
        assert_eq!(picks[1].score, 0.0);
        // All picked: the running mean equals the mean.
        assert!(picks[4].score < 1e-6);
        assert_eq!(herding(m(&pts, 2), 0), vec![]);
    }

    #[test]
    fn kcenter_first_picks_cover_the_extremes() {
        // A line with dense middle points and two far ends.
        let pts = [-10.0, -0.2, 0.0, 0.1, 0.3, 10.0, 0.05, -0.1];
        let picks = kcenter(m(&pts, 1), 4);
        let rows: Vec<usize> = picks.iter().map(|p| p.index).collect();
        // Mean 0.01875: nearest row 2 (0.0) first, then the two ends, tied at 10 from it: lower row first.
        assert_eq!(&rows[..3], &[2, 0, 5]);
        assert_eq!(picks[1].score, 10.0);
        assert_eq!(picks[2].score, 10.0);
        // Radii never grow after the first pick.
        assert!(picks.windows(2).skip(1).all(|w| w[1].score <= w[0].score));
    }

    /// Three tight, far-apart blobs of different sizes.
    fn blobs() -> (Vec<f32>, Vec<usize>) {
        let centres = [(0.0, 0.0), (20.0, 0.0), (0.0, 20.0)];
        let sizes = [12, 7, 9];
        let noise = uniform(11, 2 * 28);
        let (mut pts, mut truth) = (Vec::new(), Vec::new());
        let mut j = 0;
        for (c, (&(x, y), &size)) in centres.iter().zip(&sizes).enumerate() {
            for _ in 0..size {
                pts.push(x + noise[j] - 0.5);
                pts.push(y + noise[j + 1] - 0.5);
                truth.push(c);
                j += 2;
            }
        }
        (pts, truth)
    }

    #[test]
    fn kmeans_recovers_obvious_clusters() {
        let (pts, truth) = blobs();
        for seed in 0..5 {
            let fit = kmeans(m(&pts, 2), 3, 50, seed);
            assert!(fit.converged);
            // Same partition up to relabelling: rows share a cluster iff they share a blob.
            for a in 0..truth.len() {
                for b in 0..truth.len() {
                    assert_eq!(fit.assignment[a] == fit.assignment[b], truth[a] == truth[b], "seed {seed}: rows {a}, {b}");
                }
            }
        }
        assert_eq!(kmeans(m(&pts, 2), 3, 50, 4), kmeans(m(&pts, 2), 3, 50, 4));
    }

    #[test]
    fn kmeans_rule_keeps_the_outlier_or_the_prototype() {
        let (mut pts, _) = blobs();
        pts[0] = 2.0; // row 0 sits on the edge of blob 0, far from its centroid
        pts[1] = 2.0;
        let inputs = RuleInputs { embeddings: Some(m(&pts, 2)), ..RuleInputs::default() };
        let hard: StaticRule = "kmeans:3".parse().unwrap();
        assert_eq!(hard.select(&inputs, keep(0.04), 1).unwrap()[0].index, 0);
        let easy = StaticRule::KMeans(KMeansOptions { keep: Prototypicality::Easy, clusters: 3, max_iter: 50, ..KMeansOptions::default() });
        let picks = easy.select(&inputs, keep(1.0), 1).unwrap();
        assert_eq!(picks.last().unwrap().index, 0);
        // Identical points and more clusters than rows do not break k-means++.
        let same = [1.0f32; 8];
        assert_eq!(kmeans(m(&same, 2), 9, 10, 0).assignment, vec![0; 4]);
    }

    /// Fingerprints: two tight families of molecules sharing most bits, and one molecule that shares
    /// none; `kmeans-fp` keeps it first, `kmeans-fp-easy` last, and the embedding rule cannot run
    /// without embeddings.
    #[test]
    fn kmeans_fp_keeps_the_outlier_molecule_first() {
        const B: usize = 32;
        let mut bits = vec![0u8; 11 * B];
        for i in 0..10 {
            let family = if i < 5 { 0..12 } else { 16..28 };
            for j in family {
                bits[i * B + j] = 1;
            }
            bits[i * B + 12 + i % 4] = 1; // small differences within a family
        }
        let outlier = 10;
        for j in [12, 13, 14, 15, 28, 29, 30, 31] {
            bits[outlier * B + j] = 1;
        }
        let inputs = RuleInputs { fingerprints: Some(Matrix::new(&bits, B).unwrap()), ..RuleInputs::default() };
        for seed in 0..5 {
            let hard: StaticRule = "kmeans-fp:2".parse().unwrap();
            let picks = hard.select(&inputs, keep(1.0 / 11.0), seed).unwrap();
            assert_eq!(picks.len(), 1);
            assert_eq!(picks[0].index, outlier, "seed {seed}");
            let easy: StaticRule = "kmeans-fp-easy:2".parse().unwrap();
            assert_eq!(easy.select(&inputs, keep(1.0), seed).unwrap().last().unwrap().index, outlier, "seed {seed}");
        }
        let err = "kmeans:2".parse::<StaticRule>().unwrap().select(&inputs, keep(0.5), 0).unwrap_err();
        assert!(matches!(err, RuleError::MissingInput { input: "embeddings", .. }), "{err}");
    }

    /// One k-means for both spaces: 0/1 bits as u8 give the same fit as the same bits as f32.
    #[test]
    fn kmeans_on_bits_equals_kmeans_on_the_same_values_as_floats() {
        let bits: Vec<u8> = uniform(3, 40 * 16).iter().map(|v| (*v > 0.7) as u8).collect();
        let floats: Vec<f32> = bits.iter().map(|&b| b as f32).collect();
        let options = KMeansOptions { clusters: 4, ..KMeansOptions::default() };
        for seed in 0..3 {
            assert_eq!(kmeans(Matrix::new(&bits, 16).unwrap(), 4, 50, seed), kmeans(m(&floats, 16), 4, 50, seed));
            assert_eq!(kmeans_scores(Matrix::new(&bits, 16).unwrap(), options, seed).unwrap(), kmeans_scores(m(&floats, 16), options, seed).unwrap());
        }
    }

    #[test]
    fn moderate_keeps_distances_near_the_median() {
        // One task; class 0 rows 0..5, class 1 rows 5..8, row 8 unlabelled.
        let pts = [0.0, 1.0, 2.0, 3.0, 10.0, 100.0, 101.0, 103.0, 50.0];
        let labels = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        let mut mask = [true; 9];
        mask[8] = false;
        let d = moderate_distances(m(&pts, 1), m(&labels, 1), Matrix::new(&mask, 1).unwrap(), None).unwrap();
        // Class centres are coordinate-wise medians: 2 and 101.
        let expect = [2.0, 1.0, 0.0, 1.0, 8.0, 1.0, 0.0, 2.0];
        assert!(d[..8].iter().zip(&expect).all(|(a, b)| (a - b).abs() < 1e-9), "{d:?}");
        assert!(d[8].is_nan());
        // Median of the eight distances is 1: keep the 1s, then 0s and 2s (ties by row).
        let inputs = RuleInputs { embeddings: Some(m(&pts, 1)), labels: Some(m(&labels, 1)), mask: Some(Matrix::new(&mask, 1).unwrap()), ..RuleInputs::default() };
        let rows: Vec<usize> = StaticRule::Moderate { task: None }.select(&inputs, keep(1.0), 0).unwrap().iter().map(|p| p.index).collect();
        assert_eq!(rows, vec![1, 3, 5, 0, 2, 6, 7, 4, 8]);
    }

    #[test]
    fn moderate_uses_the_first_valid_task_per_sample() {
        let pts = [0.0, 4.0, 10.0, 14.0];
        // Task 0 missing for rows 2 and 3: they fall back to task 1, a class of its own.
        let labels = [1.0, 0.0, 1.0, 0.0, f32::NAN, 1.0, f32::NAN, 1.0];
        let mask = [true, true, true, true, false, true, false, true];
        let (e, l, k) = (m(&pts, 1), m(&labels, 2), Matrix::new(&mask, 2).unwrap());
        let d = moderate_distances(e, l, k, None).unwrap();
        assert_eq!(d, vec![2.0, 2.0, 2.0, 2.0]);
        let d = moderate_distances(e, l, k, Some(0)).unwrap();
        assert_eq!(&d[..2], &[2.0, 2.0]);
        assert!(d[2].is_nan() && d[3].is_nan());
        assert!(moderate_distances(e, l, k, Some(2)).is_err());
    }
}
