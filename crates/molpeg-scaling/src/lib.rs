//! The scaling-law study of Chen et al. (NeurIPS 2023): fits of test metric against training fraction.
//!
//! - [`fit`]: the power law `m = a·x^b` (log-log least squares) and a saturating law with an offset
//!   `m = c − a·x^(−α)` (Levenberg–Marquardt), R², and bootstrap confidence intervals over seeds.

pub mod fit;
