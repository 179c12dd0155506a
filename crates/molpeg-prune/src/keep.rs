//! The keep fraction shared by static selection and dynamic policies.

use serde::{Deserialize, Serialize};

/// Fraction r ∈ (0, 1] of the training samples to keep. Built through [`KeepFraction::new`] or
/// [`KeepFraction::from_prune`], so an invalid value never exists.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct KeepFraction(f64);

impl KeepFraction {
    pub fn new(r: f64) -> Result<Self, String> {
        if r > 0.0 && r <= 1.0 {
            Ok(KeepFraction(r))
        } else {
            Err(format!("keep fraction {r} is outside (0, 1]: keep 0.4 keeps 40% of the training samples"))
        }
    }

    /// `prune` p ∈ [0, 1) removes that fraction: keep = 1 − p.
    pub fn from_prune(p: f64) -> Result<Self, String> {
        if (0.0..1.0).contains(&p) {
            Ok(KeepFraction(1.0 - p))
        } else {
            Err(format!("prune fraction {p} is outside [0, 1): prune 0.6 removes 60% of the training samples"))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }

    /// ⌊r·N⌋, at least 1 when N > 0 (a coreset of no samples trains nothing).
    pub fn count(self, n: usize) -> usize {
        // The small epsilon keeps ⌊0.3·10⌋ = 3 despite 0.3·10 = 2.9999999999999996 in floating point.
        (((self.0 * n as f64) + 1e-9).floor() as usize).clamp(n.min(1), n)
    }

    /// Loss weight that keeps the expected gradient of a kept subset equal to the full set's.
    pub fn rescale_weight(self) -> f32 {
        (1.0 / self.0) as f32
    }
}

impl TryFrom<f64> for KeepFraction {
    type Error = String;
    fn try_from(r: f64) -> Result<Self, String> {
        KeepFraction::new(r)
    }
}

impl From<KeepFraction> for f64 {
    fn from(k: KeepFraction) -> f64 {
        k.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_counts() {
        assert!(KeepFraction::new(0.0).is_err());
        assert!(KeepFraction::new(1.2).is_err());
        assert!(KeepFraction::from_prune(1.0).is_err());
        assert_eq!(KeepFraction::from_prune(0.6).unwrap().count(1000), 400);
        assert_eq!(KeepFraction::new(0.3).unwrap().count(10), 3);
        assert_eq!(KeepFraction::new(0.01).unwrap().count(10), 1);
        assert_eq!(KeepFraction::new(1.0).unwrap().count(7), 7);
        assert_eq!(KeepFraction::new(0.25).unwrap().rescale_weight(), 4.0);
    }
}
