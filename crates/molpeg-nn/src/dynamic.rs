//! Dynamic pruning inside fine-tuning: a [`molpeg_prune::policy::DynamicPolicy`] chooses each epoch's
//! training samples and loss weights, and sees every batch's per-sample losses. For policies that
//! need it (MolPeg), the trainer runs the EMA reference model of [`crate::dual_pace`] alongside and
//! reports its losses too; every sighting is kept for `scores.parquet`.

use molpeg_prune::keep::KeepFraction;
use molpeg_prune::policy::{make_policy, DynamicPolicy, Observation, PolicyOptions};

use crate::data::{Dataset, Sample};
use crate::finetune::{FinetuneSettings, Schedule, Unscored};
use crate::score::Sighting;
use crate::train::BatchOutcome;
use crate::{Error, Result};

/// A dynamic policy over the training split, as a [`Schedule`].
pub struct PolicySchedule {
    policy: Box<dyn DynamicPolicy>,
    /// Store index of each training position (the policy works on positions 0..N).
    train: Vec<u32>,
    /// Training position of each store index (`u32::MAX` outside the training split).
    position: Vec<u32>,
    mol_ids: Vec<u32>,
    epoch: u32,
    pub sightings: Vec<Sighting>,
}

impl PolicySchedule {
    pub fn new(policy: &str, data: &Dataset, settings: &FinetuneSettings) -> Result<Self> {
        let keep = KeepFraction::new(settings.keep.unwrap_or(1.0)).map_err(Error::Config)?;
        let mut options = PolicyOptions::new(keep, settings.seed, settings.anneal);
        if policy == "infobatch" && settings.keep.is_none() {
            options.infobatch_prune = Some(0.5);
        }
        options.unscored_score = match settings.unscored {
            Unscored::ScoreOne => Some(1.0),
            Unscored::First => None,
        };
        options.soft_random_replacement = settings.soft_random_replacement;
        let policy = make_policy(policy, data.train.len(), options).map_err(Error::Config)?;
        let mut position = vec![u32::MAX; data.store.len()];
        for (p, &index) in data.train.iter().enumerate() {
            position[index as usize] = p as u32;
        }
        Ok(PolicySchedule { policy, train: data.train.clone(), position, mol_ids: data.store.mol_ids.clone(), epoch: 0, sightings: Vec::new() })
    }

    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    /// Whether the policy needs the trainer's EMA reference model ([`crate::train::Trainer::reference`]).
    pub fn needs_reference(&self) -> bool {
        self.policy.needs_reference()
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
        let reference = outcome.reference_losses;
        if self.policy.needs_reference() && reference.is_none() {
            return Err(Error::Internal(format!("policy {} needs the trainer's reference model, which is not set", self.policy.name())));
        }
        if let Some(reference) = reference {
            for ((&index, &online), &reference) in outcome.batch.samples.iter().zip(outcome.losses).zip(reference) {
                self.sightings.push(Sighting { mol_id: self.mol_ids[index as usize], epoch: self.epoch, loss_online: online, loss_ref: reference });
            }
        }
        self.policy.observe(&Observation { samples: &positions, loss_online: outcome.losses, loss_ref: reference });
        Ok(())
    }
}
