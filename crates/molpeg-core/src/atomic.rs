//! Atomic file creation: write to a temporary file in the destination directory, then rename.
//! An interrupted write never leaves a file that looks complete under the final name.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A file being written. Dropped without [`AtomicFile::commit`], its temporary file is removed.
pub struct AtomicFile {
    tmp_path: PathBuf,
    final_path: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    pub fn create(final_path: impl AsRef<Path>) -> Result<Self> {
        let final_path = final_path.as_ref().to_path_buf();
        let dir = final_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp_path = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = File::create(&tmp_path).map_err(|e| Error::io(&tmp_path, e))?;
        Ok(AtomicFile { tmp_path, final_path, file: Some(file) })
    }

    pub fn path(&self) -> &Path {
        &self.final_path
    }

    /// Where the bytes are until [`AtomicFile::commit`]; lets a caller verify them before they go live.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp_path
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is present until commit")
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> Result<PathBuf> {
        let file = self.file.take().expect("file is present until commit");
        file.sync_all().map_err(|e| Error::io(&self.tmp_path, e))?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.final_path).map_err(|e| Error::io(&self.final_path, e))?;
        Ok(self.final_path.clone())
    }

    /// Hands the open file to a writer that takes ownership (such as Parquet's `ArrowWriter`);
    /// call [`PendingRename::commit`] once the writer has closed it.
    pub fn into_parts(mut self) -> (File, PendingRename) {
        let file = self.file.take().expect("file is present until commit");
        let pending = PendingRename { tmp_path: self.tmp_path.clone(), final_path: self.final_path.clone(), done: false };
        self.tmp_path = PathBuf::new();
        (file, pending)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() && !self.tmp_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// The rename half of an [`AtomicFile`] whose handle went to another writer.
pub struct PendingRename {
    tmp_path: PathBuf,
    final_path: PathBuf,
    done: bool,
}

impl PendingRename {
    pub fn commit(mut self, file: &File) -> Result<PathBuf> {
        file.sync_all().map_err(|e| Error::io(&self.tmp_path, e))?;
        std::fs::rename(&self.tmp_path, &self.final_path).map_err(|e| Error::io(&self.final_path, e))?;
        self.done = true;
        Ok(self.final_path.clone())
    }
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }
}

impl Drop for PendingRename {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// Writes `bytes` to `path` atomically.
/// Removes temp files (`.NAME.PID.tmp`) that a killed process left in `dir`: those whose process is
/// gone (a live one may still be writing). Returns how many were removed.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(0) };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else { continue };
        let Some(pid) = stem.rsplit('.').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<PathBuf> {
    let mut file = AtomicFile::create(path)?;
    let tmp = file.tmp_path.clone();
    file.file().write_all(bytes).map_err(|e| Error::io(tmp, e))?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        {
            let mut f = AtomicFile::create(&target).unwrap();
            f.file().write_all(b"partial").unwrap();
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_atomic(&target, b"whole").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
