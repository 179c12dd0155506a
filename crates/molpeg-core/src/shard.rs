//! `--shard I/N`: which deterministic slice of a stage's work this process does. Shards are numbered
//! from 0; without the flag, a Slurm job array (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`,
//! offset by `SLURM_ARRAY_TASK_MIN`) chooses the shard, so `sbatch --array=0-15` needs no wrapper.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::Result;

/// Shard `index` of `count` (0 ≤ index < count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::Other(format!("shard {index}/{count}: the index must be in 0..{count} (shards are numbered from 0) and the count at least 1")));
        }
        Ok(Shard { index, count })
    }

    /// Whether item `i` of the full, deterministic work list belongs to this shard (round robin, so
    /// every shard gets a mix of cheap and expensive items when the list is ordered by size).
    pub fn owns(&self, i: usize) -> bool {
        i % self.count == self.index
    }

    /// The shard a Slurm job array gives this task, if any: `SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN`
    /// of `SLURM_ARRAY_TASK_COUNT`.
    pub fn from_slurm() -> Result<Option<Shard>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) else { return Ok(None) };
        let number = |name: &str, text: &str| text.trim().parse::<usize>().map_err(|_| Error::Other(format!("{name}={text:?} is not a non-negative integer")));
        let min = match var("SLURM_ARRAY_TASK_MIN") {
            Some(text) => number("SLURM_ARRAY_TASK_MIN", &text)?,
            None => 0,
        };
        let id = number("SLURM_ARRAY_TASK_ID", &id)?;
        let count = number("SLURM_ARRAY_TASK_COUNT", &count)?;
        let index = id.checked_sub(min).ok_or_else(|| Error::Other(format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}")))?;
        Shard::new(index, count).map(Some)
    }

    /// The flag's value, else the Slurm array's shard, else none.
    pub fn resolve(flag: Option<Shard>) -> Result<Option<Shard>> {
        match flag {
            Some(shard) => Ok(Some(shard)),
            None => Shard::from_slurm(),
        }
    }

    /// `part-00003-of-00016`: the name of this shard's part of a dataset or results directory.
    pub fn part_name(&self) -> String {
        format!("part-{:05}-of-{:05}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || Error::Other(format!("--shard {s:?}: expected I/N, e.g. 0/4 (shard I of N, numbered from 0)"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (i, n) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        Shard::new(i, n)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_owns_round_robin() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        assert_eq!((0..9).filter(|&i| s.owns(i)).collect::<Vec<_>>(), [1, 4, 7]);
        assert_eq!(s.part_name(), "part-00001-of-00003");
        assert_eq!(s.to_string(), "1/3");
        // Every item in exactly one shard.
        for i in 0..20 {
            assert_eq!((0..3).filter(|&k| Shard { index: k, count: 3 }.owns(i)).count(), 1);
        }
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            let err = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(err.contains("0/4") || err.contains("numbered from 0"), "{bad}: {err}");
        }
    }

    #[test]
    fn slurm_array_variables_choose_the_shard() {
        let env = |pairs: &'static [(&'static str, &'static str)]| move |name: &str| pairs.iter().find(|p| p.0 == name).map(|p| p.1.to_string());
        assert_eq!(Shard::from_vars(env(&[])).unwrap(), None);
        assert_eq!(Shard::from_vars(env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "16")])).unwrap(), Some(Shard { index: 3, count: 16 }));
        // --array=1-16: ids 1..=16, min 1.
        assert_eq!(
            Shard::from_vars(env(&[("SLURM_ARRAY_TASK_ID", "16"), ("SLURM_ARRAY_TASK_COUNT", "16"), ("SLURM_ARRAY_TASK_MIN", "1")])).unwrap(),
            Some(Shard { index: 15, count: 16 })
        );
        assert!(Shard::from_vars(env(&[("SLURM_ARRAY_TASK_ID", "16"), ("SLURM_ARRAY_TASK_COUNT", "16")])).is_err());
        assert!(Shard::from_vars(env(&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "16")])).unwrap_err().to_string().contains("SLURM_ARRAY_TASK_ID"));
    }
}
