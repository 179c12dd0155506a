//! A table a stage writes is either one Parquet file `NAME.parquet` (a run without `--shard`) or a
//! directory `NAME.parquet/` of parts `part-IIIII-of-NNNNN.parquet`, one per shard of a sharded run
//! (`--shard I/N`), the parts' rows in part order being the single file's rows. pyarrow, polars and
//! DuckDB read such a directory as one table (`pq.read_table("graphs.parquet")`,
//! `read_parquet('graphs.parquet/*.parquet')`); [`crate::parquet_io::ParquetSource::open`] does too,
//! so every reader accepts both layouts.
//!
//! Each shard records its own manifest next to the table, `manifest-part-IIIII-of-NNNNN.json` in the
//! stage directory: a shard rerun with unchanged inputs is a skip, a killed shard reruns alone.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::manifest::MANIFEST_FILE;
use crate::shard::Shard;
use crate::{Error, Result};

/// Where the table `file` of a stage directory goes: `dir/file` for a whole run, the shard's part in
/// `dir/file/` for a shard.
pub fn table_path(dir: &Path, file: &str, shard: Option<Shard>) -> PathBuf {
    match shard {
        None => dir.join(file),
        Some(shard) => dir.join(file).join(format!("{}.parquet", shard.part_name())),
    }
}

/// The manifest file of a whole run (`manifest.json`) or of one shard (`manifest-part-….json`).
pub fn manifest_name(shard: Option<Shard>) -> String {
    match shard {
        None => MANIFEST_FILE.to_string(),
        Some(shard) => format!("manifest-{}.json", shard.part_name()),
    }
}

/// The contiguous rows `[start, end)` of `total` that `shard` processes (all of them without one);
/// shard sizes differ by at most one row.
pub fn rows_of(shard: Option<Shard>, total: usize) -> Range<usize> {
    match shard {
        None => 0..total,
        Some(s) => s.index * total / s.count..(s.index + 1) * total / s.count,
    }
}

/// Before a run writes the tables `files` of stage directory `dir`: removes what the other layout
/// left, so a reader never sees two generations. A whole run removes part directories and shard
/// manifests; a shard removes a whole run's files and manifest, and parts (with their manifests) of
/// another shard count. Several shards may prepare at once: each removal tolerates a file that another
/// shard removed first.
pub fn prepare(dir: &Path, files: &[&str], shard: Option<Shard>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    match shard {
        None => {
            for file in files {
                let path = dir.join(file);
                if path.is_dir() {
                    remove_dir(&path)?;
                }
            }
            for name in list(dir)? {
                if parse_manifest_name(&name).is_some() {
                    remove_file(&dir.join(name))?;
                }
            }
        }
        Some(shard) => {
            remove_file(&dir.join(MANIFEST_FILE))?;
            for file in files {
                let path = dir.join(file);
                if path.is_file() {
                    remove_file(&path)?;
                }
                std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
                let own_temp = format!(".{}.parquet.", shard.part_name());
                for name in list(&path)? {
                    // This shard's temp files: only this shard writes this part, so any is dead.
                    let stale_temp = name.starts_with(&own_temp) && name.ends_with(".tmp");
                    let other_count = parse_part_name(&name).is_some_and(|p| p.count != shard.count);
                    if stale_temp || other_count {
                        remove_file(&path.join(name))?;
                    }
                }
            }
            for name in list(dir)? {
                if parse_manifest_name(&name).is_some_and(|p| p.count != shard.count) {
                    remove_file(&dir.join(name))?;
                }
            }
        }
    }
    Ok(())
}

/// The parts of a dataset directory in row order, checked to be complete: every name is a part of
/// the same shard count and every part is there. Names starting with `.` or `_` (temp files, a
/// user's `_SUCCESS`) are ignored, as pyarrow ignores them.
pub fn parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<Shard> = Vec::new();
    for name in list(dir)? {
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let part = parse_part_name(&name).ok_or_else(|| {
            Error::invalid(dir, format!("`{name}` is not a part (part-IIIII-of-NNNNN.parquet): a dataset directory written by sharded runs holds only their parts. Move the file out of it"))
        })?;
        found.push(part);
    }
    let Some(first) = found.first().copied() else {
        return Err(Error::invalid(dir, "this dataset directory holds no part: its shards have not finished. Run the stage's shards (--shard I/N), or the stage without --shard"));
    };
    if let Some(other) = found.iter().find(|p| p.count != first.count) {
        return Err(Error::invalid(
            dir,
            format!("holds parts of {} and of {} shards, from two sharded runs: rerun the stage's shards (each removes parts of another count) or delete the stale parts", first.count, other.count),
        ));
    }
    found.sort_by_key(|p| p.index);
    found.dedup();
    let missing: Vec<usize> = (0..first.count).filter(|i| found.binary_search_by_key(i, |p| p.index).is_err()).collect();
    if let Some(&index) = missing.first() {
        let shard = Shard { index, count: first.count };
        return Err(Error::invalid(
            dir,
            format!(
                "{} of {} parts missing, the first {}.parquet: run the stage with --shard {shard} (its Slurm array task, or `just ray` again, which reruns only unfinished shards), then rerun this one",
                missing.len(),
                first.count,
                shard.part_name()
            ),
        ));
    }
    Ok(found.iter().map(|p| dir.join(format!("{}.parquet", p.part_name()))).collect())
}

/// Whether the table exists in either layout.
pub fn exists(path: &Path) -> bool {
    path.is_file() || path.is_dir()
}

/// `part-00003-of-00016.parquet` → shard 3/16.
fn parse_part_name(name: &str) -> Option<Shard> {
    parse_shard(name.strip_prefix("part-")?.strip_suffix(".parquet")?)
}

/// `manifest-part-00003-of-00016.json` → shard 3/16.
fn parse_manifest_name(name: &str) -> Option<Shard> {
    parse_shard(name.strip_prefix("manifest-part-")?.strip_suffix(".json")?)
}

fn parse_shard(text: &str) -> Option<Shard> {
    let (index, count) = text.split_once("-of-")?;
    let digits = |s: &str| (s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<usize>().ok()).flatten();
    Shard::new(digits(index)?, digits(count)?).ok()
}

fn list(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

fn remove_dir(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_every_row_once_in_order() {
        for total in [0usize, 1, 5, 16, 1001] {
            for count in 1..=7 {
                let ranges: Vec<Range<usize>> = (0..count).map(|i| rows_of(Some(Shard { index: i, count }), total)).collect();
                assert_eq!(ranges.first().unwrap().start, 0);
                assert_eq!(ranges.last().unwrap().end, total);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{total}/{count}: {sizes:?}");
            }
        }
        assert_eq!(rows_of(None, 9), 0..9);
    }

    #[test]
    fn parts_must_be_complete_and_of_one_count() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("graphs.parquet");
        std::fs::create_dir(&table).unwrap();
        assert!(parts(&table).unwrap_err().to_string().contains("no part"));
        let touch = |name: &str| std::fs::write(table.join(name), b"x").unwrap();
        touch("part-00002-of-00003.parquet");
        touch("part-00000-of-00003.parquet");
        touch(".part-00001-of-00003.parquet.77.tmp");
        let err = parts(&table).unwrap_err().to_string();
        assert!(err.contains("1 of 3 parts missing") && err.contains("--shard 1/3"), "{err}");
        touch("part-00001-of-00003.parquet");
        let names: Vec<String> = parts(&table).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["part-00000-of-00003.parquet", "part-00001-of-00003.parquet", "part-00002-of-00003.parquet"]);
        touch("part-00000-of-00002.parquet");
        assert!(parts(&table).unwrap_err().to_string().contains("of 3 and of 2 shards"));
        std::fs::remove_file(table.join("part-00000-of-00002.parquet")).unwrap();
        touch("notes.txt");
        assert!(parts(&table).unwrap_err().to_string().contains("`notes.txt` is not a part"));
    }

    #[test]
    fn prepare_removes_the_other_layout() {
        let dir = tempfile::tempdir().unwrap();
        let stage = dir.path();
        std::fs::write(stage.join("graphs.parquet"), b"whole").unwrap();
        std::fs::write(stage.join(MANIFEST_FILE), b"{}").unwrap();
        let shard = Shard { index: 1, count: 2 };
        prepare(stage, &["graphs.parquet"], Some(shard)).unwrap();
        assert!(stage.join("graphs.parquet").is_dir() && !stage.join(MANIFEST_FILE).exists());
        assert_eq!(table_path(stage, "graphs.parquet", Some(shard)), stage.join("graphs.parquet/part-00001-of-00002.parquet"));
        // Parts of another count go; this count's parts of other shards stay.
        std::fs::write(stage.join("graphs.parquet/part-00000-of-00004.parquet"), b"old").unwrap();
        std::fs::write(stage.join("manifest-part-00000-of-00004.json"), b"{}").unwrap();
        std::fs::write(stage.join("graphs.parquet/part-00000-of-00002.parquet"), b"sibling").unwrap();
        std::fs::write(stage.join("manifest-part-00000-of-00002.json"), b"{}").unwrap();
        std::fs::write(stage.join("graphs.parquet/.part-00001-of-00002.parquet.123.tmp"), b"dead").unwrap();
        prepare(stage, &["graphs.parquet"], Some(shard)).unwrap();
        assert!(!stage.join("graphs.parquet/part-00000-of-00004.parquet").exists() && !stage.join("manifest-part-00000-of-00004.json").exists());
        assert!(!stage.join("graphs.parquet/.part-00001-of-00002.parquet.123.tmp").exists());
        assert!(stage.join("graphs.parquet/part-00000-of-00002.parquet").exists() && stage.join("manifest-part-00000-of-00002.json").exists());
        // A whole run removes the parts and the shard manifests.
        prepare(stage, &["graphs.parquet"], None).unwrap();
        assert!(!stage.join("graphs.parquet").exists() && !stage.join("manifest-part-00000-of-00002.json").exists());
        assert_eq!(manifest_name(None), MANIFEST_FILE);
        assert_eq!(manifest_name(Some(shard)), "manifest-part-00001-of-00002.json");
    }
}
