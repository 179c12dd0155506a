//! Dynamic pruning inside fine-tuning: a [`molpeg_prune::policy::DynamicPolicy`] chooses each epoch's
//! training samples and loss weights, and sees every batch's per-sample losses. For policies that
//! need it (MolPeg), the EMA reference model of [`crate::dual_pace`] runs alongside and its losses are
//! reported too; every sighting is kept for `scores.parquet`.

use molpeg_prune::keep::KeepFraction;
use molpeg_prune::policy::{make_policy, DynamicPolicy, Observation, PolicyOptions};

use crate::data::{Dataset, Sample};
use crate::dual_pace::DualPace;
use crate::finetune::{FinetuneSettings, Schedule};
use crate::model::Model;
use crate::score::Sighting;
use crate::train::BatchOutcome;
use crate::{Error, Result};

/// A dynamic policy over the training split, as a [`Schedule`].
pub struct PolicySchedule {
    policy: Box<dyn DynamicPolicy>,
    dual: Option<DualPace>,
    /// Store index of each training position (the policy works on positions 0..N).
    train: Vec<u32>,
    /// Training position of each store index (`u32::MAX` outside the training split).
    position: Vec<u32>,
    mol_ids: Vec<u32>,
    epoch: u32,
    pub sightings: Vec<Sighting>,
}

impl PolicySchedule {
    pub fn new(policy: &str, data: &Dataset, online: &Model, settings: &FinetuneSettings) -> Result<Self> {
        let keep = KeepFraction::new(settings.keep.unwrap_or(1.0)).map_err(Error::Config)?;
        let mut options = PolicyOptions::new(keep, settings.seed, settings.anneal);
        if policy == "infobatch" && settings.keep.is_none() {
            options.infobatch_prune = Some(0.5);
        }
        let policy = make_policy(policy, data.train.len(), options).map_err(Error::Config)?;
        let dual = if policy.needs_reference() { Some(DualPace::new(online, settings.ema_beta)?) } else { None };
        let mut position = vec![u32::MAX; data.store.len()];
        for (p, &index) in data.train.iter().enumerate() {
            position[index as usize] = p as u32;
        }
        Ok(PolicySchedule { policy, dual, train: data.train.clone(), position, mol_ids: data.store.mol_ids.clone(), epoch: 0, sightings: Vec::new() })
    }

    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }
}

impl Schedule for PolicySchedule {
    fn plan(&mut self, epoch: u32, epochs: u32) -> Vec<Sample> {
        self.epoch = epoch;
        let plan = self.policy.plan_epoch(epoch as usize - 1, epochs as usize);
        plan.samples.iter().zip(&plan.weights).map(|(&p, &weight)| Sample { index: self.train[p], weight }).collect()
    }

    fn after_batch(&mut self, outcome: &BatchOutcome) -> Result<()> {
        let positions: Vec<usize> = outcome.batch.samples.iter().map(|&i| self.position[i as usize] as usize).collect();
        let reference = match &self.dual {
            Some(dual) => Some(dual.after_step(outcome.model, outcome.objective, outcome)?),
            None => None,
        };
        if let Some(reference) = &reference {
            for ((&index, &online), &reference) in outcome.batch.samples.iter().zip(outcome.losses).zip(reference) {
                self.sightings.push(Sighting { mol_id: self.mol_ids[index as usize], epoch: self.epoch, loss_online: online, loss_ref: reference });
            }
        }
        self.policy.observe(&Observation { samples: &positions, loss_online: outcome.losses, loss_ref: reference.as_deref() });
        Ok(())
    }
}
