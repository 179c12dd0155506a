//! Adam whose state lives in plain tensors, so a checkpoint can hold it and a resumed run continues
//! exactly where it stopped. tch's `nn::Optimizer` wraps libtorch's C++ optimizer, whose moment
//! buffers and step count tch does not expose; the pretraining stage needs them in its resume state.
//!
//! The update is `torch.optim.Adam`'s (defaults β = (0.9, 0.999), ε = 1e-8): L2 weight decay added to
//! the gradient, bias-corrected moments, ε added outside the square root. A test checks it against
//! tch's `nn::Adam` step for step.

use std::collections::BTreeMap;

use tch::Tensor;

use crate::{Error, Result};

/// Prefixes of the moment buffers in [`Adam::state`].
pub const EXP_AVG_PREFIX: &str = "adam.exp_avg.";
pub const EXP_AVG_SQ_PREFIX: &str = "adam.exp_avg_sq.";

pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Optimizer steps taken (the bias corrections' exponent).
    pub steps: u64,
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl Adam {
    /// Adam over `params` (named trainable tensors), with zero moments.
    pub fn new(params: Vec<(String, Tensor)>, lr: f64, weight_decay: f64) -> Adam {
        let zeros = |p: &[(String, Tensor)]| tch::no_grad(|| p.iter().map(|(_, t)| t.zeros_like()).collect::<Vec<_>>());
        let (exp_avg, exp_avg_sq) = (zeros(&params), zeros(&params));
        Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, steps: 0, params, exp_avg, exp_avg_sq }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update from the parameters' current gradients (parameters without a gradient are skipped).
    pub fn step(&mut self) -> Result<()> {
        self.steps += 1;
        let bias1 = 1.0 - self.beta1.powi(self.steps as i32);
        let bias2 = 1.0 - self.beta2.powi(self.steps as i32);
        let step_size = self.lr / bias1;
        let _guard = tch::no_grad_guard();
        for (((_, p), m), v) in self.params.iter().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let grad = if self.weight_decay != 0.0 { grad.f_add(&(p * self.weight_decay))? } else { grad };
            let _ = m.f_lerp_(&grad, 1.0 - self.beta1)?;
            let _ = v.f_mul_scalar_(self.beta2)?;
            let _ = v.f_addcmul_(&(&grad * (1.0 - self.beta2)), &grad)?;
            let denom = v.f_sqrt()?.f_div_scalar(bias2.sqrt())?.f_add_scalar(self.eps)?;
            let _ = p.shallow_clone().f_addcdiv_(&(&*m * -step_size), &denom)?;
        }
        Ok(())
    }

    /// Gradients of `loss`, then one update.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        self.zero_grad();
        loss.f_backward()?;
        self.step()
    }

    /// The moment buffers, named `adam.exp_avg.<param>` and `adam.exp_avg_sq.<param>`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for (((name, _), m), v) in self.params.iter().zip(&self.exp_avg).zip(&self.exp_avg_sq) {
            out.push((format!("{EXP_AVG_PREFIX}{name}"), m.shallow_clone()));
            out.push((format!("{EXP_AVG_SQ_PREFIX}{name}"), v.shallow_clone()));
        }
        out
    }

    /// Restores the moment buffers saved by [`Adam::state`] and the step count. Every buffer must be
    /// present with its parameter's shape; the error lists those that are not.
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, steps: u64) -> Result<()> {
        let mut problems = Vec::new();
        for (((name, p), m), v) in self.params.iter().zip(&self.exp_avg).zip(&self.exp_avg_sq) {
            for (prefix, dst) in [(EXP_AVG_PREFIX, m), (EXP_AVG_SQ_PREFIX, v)] {
                let key = format!("{prefix}{name}");
                match tensors.get(&key) {
                    None => problems.push(format!("{key} missing")),
                    Some(t) if t.size() != p.size() => problems.push(format!("{key}: {:?}, parameter {:?}", t.size(), p.size())),
                    Some(t) => tch::no_grad(|| dst.shallow_clone().f_copy_(t))?,
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::Config(format!("optimizer state does not fit the parameters: {}", problems.join("; "))));
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;
    use tch::{Device, Kind};

    /// Same parameters, same gradients: our update and libtorch's Adam agree to float precision.
    #[test]
    fn matches_libtorch_adam() {
        tch::manual_seed(3);
        let make = || {
            let vs = tch::nn::VarStore::new(Device::Cpu);
            let w = vs.root().var("w", &[4, 3], tch::nn::Init::Randn { mean: 0.0, stdev: 1.0 });
            (vs, w)
        };
        let (vs_ref, w_ref) = make();
        let (vs_ours, w_ours) = make();
        tch::no_grad(|| w_ours.shallow_clone().copy_(&w_ref));
        let mut reference = tch::nn::Adam { wd: 0.01, ..Default::default() }.build(&vs_ref, 0.05).unwrap();
        let mut ours = Adam::new(vec![("w".into(), w_ours.shallow_clone())], 0.05, 0.01);
        let x = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        for _ in 0..20 {
            reference.backward_step(&x.mm(&w_ref).sin().sum(Kind::Float));
            ours.backward_step(&x.mm(&w_ours).sin().sum(Kind::Float)).unwrap();
        }
        assert!(w_ours.allclose(&w_ref, 1e-5, 1e-6, false), "{w_ours} vs {w_ref}");
        assert!(!w_ours.allclose(&Tensor::zeros_like(&w_ours), 1e-3, 1e-3, false));
        drop(vs_ours);

        // The state round-trips into a fresh optimizer, which then takes the same step.
        let saved: BTreeMap<String, Tensor> = ours.state().into_iter().map(|(n, t)| (n, t.copy())).collect();
        let w_copy = w_ours.detach().copy().set_requires_grad(true);
        let mut resumed = Adam::new(vec![("w".into(), w_copy.shallow_clone())], 0.05, 0.01);
        resumed.load_state(&saved, ours.steps).unwrap();
        ours.backward_step(&x.mm(&w_ours).sin().sum(Kind::Float)).unwrap();
        resumed.backward_step(&x.mm(&w_copy).sin().sum(Kind::Float)).unwrap();
        assert!(w_copy.equal(&w_ours));
        let err = Adam::new(vec![("v".into(), w_copy)], 0.05, 0.0).load_state(&saved, 1).unwrap_err().to_string();
        assert!(err.contains("adam.exp_avg.v missing"), "{err}");
    }
}
