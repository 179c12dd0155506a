//! Pipeline files (`pipelines/<name>.toml`): one TOML per pipeline, one section per stage.
//! Each stage deserializes its own section into a typed config; flags override it afterwards.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Every top-level key a pipeline file may hold: `name` and one section per stage. Anything else is
/// an error (a typo such as `[finetuen]` would otherwise run the stage with its defaults).
pub const KNOWN_KEYS: &[&str] = &["name", "dataset", "featurize", "split", "score", "select", "finetune", "pretrain", "scaling"];

/// The candidate closest to `word` by edit distance, if close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// serde's "unknown field `x`, expected one of `a`, `b`" with a "did you mean `a`?" added.
fn explain(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return message.to_string() };
    let Some((field, expected)) = rest.split_once('`') else { return message.to_string() };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match did_you_mean(field, candidates.iter().copied()) {
        Some(best) => format!("{message} (did you mean `{best}`?)"),
        None => message.to_string(),
    }
}

/// A pipeline's name becomes a directory under the runs directory: it must be one plain path
/// component, so no pipeline writes outside `runs/` or into another pipeline's directory.
fn check_name(path: &Path, name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if plain {
        return Ok(());
    }
    Err(Error::config(
        path,
        format!("pipeline name {name:?} is not a plain directory name (letters, digits, `-`, `_`, `.`, `+`; not empty, not starting with `.`): it names runs/<name>/, so it may not escape the runs directory"),
    ))
}

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
        for (key, value) in &table {
            if KNOWN_KEYS.contains(&key.as_str()) {
                if key != "name" && !value.is_table() {
                    return Err(Error::config(path, format!("`{key}` must be a section ([{key}]), found a {}", value.type_str())));
                }
                continue;
            }
            let kind = if value.is_table() { format!("section [{key}]") } else { format!("top-level key `{key}`") };
            let hint = match did_you_mean(key, KNOWN_KEYS.iter().copied()) {
                Some(best) if best == "name" => " (did you mean `name`?)".to_string(),
                Some(best) => format!(" (did you mean [{best}]?)"),
                None => String::new(),
            };
            return Err(Error::config(path, format!("unknown {kind}{hint}; a pipeline file holds `name` and the sections {}", KNOWN_KEYS[1..].iter().map(|k| format!("[{k}]")).collect::<Vec<_>>().join(", "))));
        }
        let name = match table.get("name") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => return Err(Error::config(path, "`name` must be a string")),
            None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pipeline".into()),
        };
        check_name(path, &name)?;
        Ok(Pipeline { name, path: path.to_path_buf(), table })
    }

    /// Deserializes section `[name]`; a missing section gives `T::default()`. Unknown keys are errors
    /// when `T` is marked `#[serde(deny_unknown_fields)]`, so typos do not pass silently.
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        match self.table.get(name) {
            None => Ok(T::default()),
            Some(value) => value.clone().try_into().map_err(|e: toml::de::Error| Error::config(&self.path, format!("section [{name}]: {}", explain(e.message())))),
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
            .map_err(|e: toml::de::Error| Error::config(&self.path, format!("sections [{base}] + [{name}]: {}", explain(e.message()))))
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
        let own: U = toml::Value::Table(mine).try_into().map_err(|e: toml::de::Error| Error::config(&self.path, format!("section [{name}]: {}", explain(e.message()))))?;
        Ok((rest.layered_section(base, name)?, own))
    }

    /// Like [`Pipeline::section`] but the section must exist.
    pub fn required_section<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let value = self.table.get(name).ok_or_else(|| Error::config(&self.path, format!("section [{name}] is missing")))?;
        value.clone().try_into().map_err(|e: toml::de::Error| Error::config(&self.path, format!("section [{name}]: {}", explain(e.message()))))
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
    fn unknown_sections_and_keys_are_errors_with_a_suggestion() {
        let err = Pipeline::parse(Path::new("p.toml"), "[finetuen]\nepochs = 1\n").unwrap_err().to_string();
        assert!(err.contains("p.toml") && err.contains("unknown section [finetuen]") && err.contains("did you mean [finetune]?"), "{err}");
        let err = Pipeline::parse(Path::new("p.toml"), "[scroe]\n").unwrap_err().to_string();
        assert!(err.contains("did you mean [score]?"), "{err}");
        let err = Pipeline::parse(Path::new("p.toml"), "nmae = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("unknown top-level key `nmae`") && err.contains("did you mean `name`?"), "{err}");
        let err = Pipeline::parse(Path::new("p.toml"), "[zzzzzzzz]\n").unwrap_err().to_string();
        assert!(err.contains("unknown section [zzzzzzzz]") && !err.contains("did you mean"), "{err}");
        for bad in ["../..", "", "a/b", ".hidden", "/etc"] {
            let err = Pipeline::parse(Path::new("p.toml"), &format!("name = {bad:?}\n")).unwrap_err().to_string();
            assert!(err.contains("not a plain directory name"), "{bad}: {err}");
        }
        assert_eq!(Pipeline::parse(Path::new("p.toml"), "name = \"hiv-paper_v2.1\"\n").unwrap().name, "hiv-paper_v2.1");
        let err = Pipeline::parse(Path::new("p.toml"), "split = 3\n").unwrap_err().to_string();
        assert!(err.contains("`split` must be a section"), "{err}");
        assert!(Pipeline::parse(Path::new("p.toml"), "name = \"x\"\n[dataset]\n[featurize]\n[split]\n[score]\n[select]\n[finetune]\n[pretrain]\n[scaling]\n").is_ok());
        // Inside a section: serde's list of expected fields gives the suggestion.
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Settings {
            epochs: u32,
            batch_size: u32,
        }
        let p = Pipeline::parse(Path::new("p.toml"), "[finetune]\nbatch_sise = 3\n").unwrap();
        let err = p.section::<Settings>("finetune").unwrap_err().to_string();
        assert!(err.contains("batch_sise") && err.contains("did you mean `batch_size`?"), "{err}");
    }

    #[test]
    fn sections_and_typos() {
        let p = Pipeline::parse(Path::new("pipelines/hiv.toml"), "[split]\nseed = 3\n[score]\nsed = 1\n").unwrap();
        assert_eq!(p.name, "hiv");
        assert_eq!(p.section::<Demo>("split").unwrap(), Demo { seed: 3 });
        assert_eq!(p.section::<Demo>("pretrain").unwrap(), Demo::default());
        assert!(p.layered_section::<Demo>("score", "split").unwrap_err().to_string().contains("sed"));
        let layered = Pipeline::parse(Path::new("p.toml"), "[finetune]\nseed = 1\n[score]\nseed = 2\n").unwrap();
        assert_eq!(layered.layered_section::<Demo>("finetune", "score").unwrap(), Demo { seed: 2 });
        assert_eq!(layered.layered_section::<Demo>("finetune", "pretrain").unwrap(), Demo { seed: 1 });
        let err = p.section::<Demo>("score").unwrap_err().to_string();
        assert!(err.contains("pipelines/hiv.toml") && err.contains("[score]") && err.contains("sed"), "{err}");

        #[derive(Debug, Default, serde::Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct Own {
            #[serde(default)]
            extra: bool,
        }
        let with = Pipeline::parse(Path::new("p.toml"), "[finetune]\nseed = 1\n[score]\nseed = 2\nextra = true\n").unwrap();
        assert!(with.layered_section::<Demo>("finetune", "score").is_err(), "`extra` is not a Demo key");
        assert_eq!(with.layered_section_with::<Demo, Own>("finetune", "score", &["extra"]).unwrap(), (Demo { seed: 2 }, Own { extra: true }));
        assert_eq!(layered.layered_section_with::<Demo, Own>("finetune", "score", &["extra"]).unwrap(), (Demo { seed: 2 }, Own { extra: false }));
        let err = p.section::<Demo>("score").unwrap_err().to_string();
        assert!(err.contains("pipelines/hiv.toml") && err.contains("[score]") && err.contains("sed"), "{err}");
    }
}
