//! Pipeline files (`pipelines/<name>.toml`): one TOML per pipeline, one section per stage.
//! Each stage deserializes its own section into a typed config; flags override it afterwards.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// A loaded pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// `name` in the file, else the file stem (`pipelines/hiv.toml` → `hiv`).
    pub name: String,
    pub path: PathBuf,
    table: toml::Table,
}

impl Pipeline {
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::parse(&path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::config(path, e.to_string()))?;
        let name = match table.get("name") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => return Err(Error::config(path, "`name` must be a string")),
            None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pipeline".into()),
        };
        Ok(Pipeline { name, path: path.to_path_buf(), table })
    }

    /// Deserializes section `[name]`; a missing section gives `T::default()`. Unknown keys are errors
    /// when `T` is marked `#[serde(deny_unknown_fields)]`, so typos do not pass silently.
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        match self.table.get(name) {
            None => Ok(T::default()),
            Some(value) => value.clone().try_into().map_err(|e: toml::de::Error| Error::config(&self.path, format!("section [{name}]: {}", e.message()))),
        }
    }

    /// Section `[name]` laid over section `[base]`: keys of `name` override those of `base`, so a stage
    /// can inherit another's settings (the scorer trains the fine-tuning model: `[finetune]` + `[score]`).
    pub fn layered_section<T: DeserializeOwned + Default>(&self, base: &str, name: &str) -> Result<T> {
        let mut merged = toml::Table::new();
        for section in [base, name] {
            match self.table.get(section) {
                Some(toml::Value::Table(t)) => merged.extend(t.clone()),
                Some(_) => return Err(Error::config(&self.path, format!("[{section}] must be a table"))),
                None => {}
            }
        }
        if merged.is_empty() {
            return Ok(T::default());
        }
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| Error::config(&self.path, format!("sections [{base}] + [{name}]: {}", e.message())))
    }

    /// [`Pipeline::layered_section`] for a stage whose section `[name]` also holds settings of its own:
    /// the keys `own` are taken out of `[name]` into `U` (so `T` never sees them), the rest of `[name]`
    /// is laid over `[base]` into `T`. Unknown keys are still errors in both.
    pub fn layered_section_with<T: DeserializeOwned + Default, U: DeserializeOwned + Default>(&self, base: &str, name: &str, own: &[&str]) -> Result<(T, U)> {
        let mut rest = self.clone();
        let mut mine = toml::Table::new();
        if let Some(toml::Value::Table(section)) = rest.table.get_mut(name) {
            for key in own {
                if let Some(value) = section.remove(*key) {
                    mine.insert(key.to_string(), value);
                }
            }
        }
        let own: U = toml::Value::Table(mine).try_into().map_err(|e: toml::de::Error| Error::config(&self.path, format!("section [{name}]: {}", e.message())))?;
        Ok((rest.layered_section(base, name)?, own))
    }

    /// Like [`Pipeline::section`] but the section must exist.
    pub fn required_section<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let value = self.table.get(name).ok_or_else(|| Error::config(&self.path, format!("section [{name}] is missing")))?;
        value.clone().try_into().map_err(|e: toml::de::Error| Error::config(&self.path, format!("section [{name}]: {}", e.message())))
    }

    /// `runs/<pipeline>/<stage>` under `runs_root`.
    pub fn stage_dir(&self, runs_root: &Path, stage: &str) -> PathBuf {
        runs_root.join(&self.name).join(stage)
    }

    /// Resolves a path written in the pipeline file: relative paths are relative to the working directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        PathBuf::from(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        seed: u64,
    }

    #[test]
    fn sections_and_typos() {
        let p = Pipeline::parse(Path::new("pipelines/hiv.toml"), "[demo]\nseed = 3\n[typo]\nsed = 1\n").unwrap();
        assert_eq!(p.name, "hiv");
        assert_eq!(p.section::<Demo>("demo").unwrap(), Demo { seed: 3 });
        assert_eq!(p.section::<Demo>("absent").unwrap(), Demo::default());
        assert!(p.layered_section::<Demo>("typo", "demo").unwrap_err().to_string().contains("sed"));
        let layered = Pipeline::parse(Path::new("p.toml"), "[base]\nseed = 1\n[over]\nseed = 2\n").unwrap();
        assert_eq!(layered.layered_section::<Demo>("base", "over").unwrap(), Demo { seed: 2 });
        assert_eq!(layered.layered_section::<Demo>("base", "absent").unwrap(), Demo { seed: 1 });
        let err = p.section::<Demo>("typo").unwrap_err().to_string();
        assert!(err.contains("pipelines/hiv.toml") && err.contains("[typo]") && err.contains("sed"), "{err}");

        #[derive(Debug, Default, serde::Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct Own {
            #[serde(default)]
            extra: bool,
        }
        let with = Pipeline::parse(Path::new("p.toml"), "[base]\nseed = 1\n[over]\nseed = 2\nextra = true\n").unwrap();
        assert!(with.layered_section::<Demo>("base", "over").is_err(), "`extra` is not a Demo key");
        assert_eq!(with.layered_section_with::<Demo, Own>("base", "over", &["extra"]).unwrap(), (Demo { seed: 2 }, Own { extra: true }));
        assert_eq!(layered.layered_section_with::<Demo, Own>("base", "over", &["extra"]).unwrap(), (Demo { seed: 2 }, Own { extra: false }));
        let err = p.section::<Demo>("typo").unwrap_err().to_string();
        assert!(err.contains("pipelines/hiv.toml") && err.contains("[typo]") && err.contains("sed"), "{err}");
    }
}
