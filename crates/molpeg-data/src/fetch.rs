//! Resolving a dataset's raw file: a local path, the `data/raw/` cache, an offline mirror directory
//! (`MOLPEG_DATA_MIRROR`), or the canonical URL, in that order. Every file that enters the cache is
//! checksummed first; a rejected file never appears under its final name.

use std::io::Read;
use std::path::{Path, PathBuf};

use molpeg_core::atomic::AtomicFile;
use sha2::{Digest, Sha256};

use crate::dataset::DatasetSpec;

pub const MIRROR_ENV: &str = "MOLPEG_DATA_MIRROR";
pub const DATA_DIR_ENV: &str = "MOLPEG_DATA_DIR";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Core(#[from] molpeg_core::Error),
    #[error(
        "{path}: sha256 {found} is not an accepted checksum of dataset `{dataset}` (accepted: {accepted}).\n  \
         If you trust this file, accept it explicitly: run `molpeg-fetch --pipeline PIPELINE.toml --accept-sha256 {found}` \
         (later stages then accept the cached copy too) or add \"{found}\" to `sha256` in the pipeline's [dataset] section.{cleanup}"
    )]
    Checksum { dataset: String, path: PathBuf, found: String, accepted: String, cleanup: String },
    #[error(
        "dataset `{dataset}`: no copy found. Looked in: {looked}.{download}\n  \
         Set {MIRROR_ENV} to a directory holding one of [{names}], or put the file at {cache}."
    )]
    NotFound { dataset: String, looked: String, download: String, names: String, cache: PathBuf },
}

/// Where the raw file came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Local,
    Cache,
    Mirror,
    Download,
}

#[derive(Debug, Clone)]
pub struct RawFile {
    pub path: PathBuf,
    /// sha256 of the file's bytes.
    pub sha256: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Project data directory; raw files are cached in `<data_dir>/raw/`.
    pub data_dir: PathBuf,
    /// Offline mirror directory, searched before the network.
    pub mirror: Option<PathBuf>,
    /// Extra checksums accepted for this run (`--accept-sha256`).
    pub accept_sha256: Vec<String>,
    /// Never touch the network.
    pub offline: bool,
}

impl FetchOptions {
    /// `data/` (or `$MOLPEG_DATA_DIR`) and the mirror from `$MOLPEG_DATA_MIRROR`.
    pub fn from_env() -> Self {
        FetchOptions {
            data_dir: std::env::var_os(DATA_DIR_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("data")),
            mirror: std::env::var_os(MIRROR_ENV).filter(|v| !v.is_empty()).map(PathBuf::from),
            accept_sha256: Vec::new(),
            offline: false,
        }
    }

    pub fn cache_path(&self, spec: &DatasetSpec) -> PathBuf {
        self.data_dir.join("raw").join(spec.file_name())
    }
}

/// The sha256 of a file's bytes and, when it is gzipped, of its decompressed content.
pub struct Digests {
    pub file: String,
    pub content: Option<String>,
}

pub fn digests(path: &Path) -> Result<Digests, FetchError> {
    let file = molpeg_core::manifest::sha256_file(path)?;
    let content = if is_gzip(path)? {
        let reader = flate2::read::MultiGzDecoder::new(open(path)?);
        Some(sha256_reader(reader, path)?)
    } else {
        None
    };
    Ok(Digests { file, content })
}

fn open(path: &Path) -> Result<std::fs::File, FetchError> {
    std::fs::File::open(path).map_err(|e| molpeg_core::Error::io(path, e).into())
}

fn sha256_reader(mut reader: impl Read, path: &Path) -> Result<String, FetchError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| molpeg_core::Error::io(path, e))?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// True when the file starts with the gzip magic bytes.
pub fn is_gzip(path: &Path) -> Result<bool, FetchError> {
    let mut magic = [0u8; 2];
    let mut file = open(path)?;
    let n = file.read(&mut magic).map_err(|e| molpeg_core::Error::io(path, e))?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

fn verify(spec: &DatasetSpec, opts: &FetchOptions, path: &Path, shown_path: &Path, cleanup: &str) -> Result<String, FetchError> {
    // A damaged gzip fails while hashing its content: name the file the user has (the mirror copy,
    // the download), not the temp file it was being copied to, which is removed on this error.
    let d = digests(path).map_err(|e| match e {
        FetchError::Core(molpeg_core::Error::Io { cause, .. }) => FetchError::Core(molpeg_core::Error::invalid(
            shown_path,
            format!("the gzip data is truncated or corrupt ({cause}); replace this copy (fetch it again, or fix the mirror){cleanup}"),
        )),
        other => other,
    })?;
    let accepted: Vec<&String> = spec.sha256.iter().chain(&opts.accept_sha256).collect();
    let ok = accepted.iter().any(|a| a.eq_ignore_ascii_case(&d.file) || d.content.as_deref().is_some_and(|c| a.eq_ignore_ascii_case(c)));
    if ok {
        return Ok(d.file);
    }
    Err(FetchError::Checksum {
        dataset: spec.name.clone(),
        path: shown_path.to_path_buf(),
        found: d.file,
        accepted: if accepted.is_empty() { "none listed".into() } else { accepted.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ") },
        cleanup: cleanup.to_string(),
    })
}

/// Copies `reader` into the cache through a temporary file that is renamed only once its checksum passes.
fn install(spec: &DatasetSpec, opts: &FetchOptions, mut reader: impl Read, from: &Path) -> Result<String, FetchError> {
    let dest = opts.cache_path(spec);
    let mut tmp = AtomicFile::create(&dest)?;
    std::io::copy(&mut reader, tmp.file()).map_err(|e| molpeg_core::Error::io(from, e))?;
    tmp.file().sync_all().map_err(|e| molpeg_core::Error::io(&dest, e))?;
    let sha = verify(spec, opts, tmp.tmp_path(), from, "\n  Nothing was written to the cache.")?;
    let listed = spec.sha256.iter().any(|a| a.eq_ignore_ascii_case(&sha));
    tmp.commit()?;
    if !listed && !opts.accept_sha256.is_empty() {
        // Accepted by the user for this run: remember it, so later stages accept the cached copy too.
        molpeg_core::atomic::write_atomic(acceptance_path(&dest), opts.accept_sha256.join("\n").as_bytes())?;
    }
    Ok(sha)
}

/// Sidecar recording checksums the user accepted explicitly with `--accept-sha256`.
fn acceptance_path(cache: &Path) -> PathBuf {
    let name = cache.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    cache.with_file_name(format!("{name}.accepted-sha256"))
}

fn read_acceptance(cache: &Path) -> Vec<String> {
    std::fs::read_to_string(acceptance_path(cache)).map(|t| t.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()).unwrap_or_default()
}

/// The mirror directory and its direct subdirectories (sorted), so one mirror root can hold
/// `moleculenet/` and `moses/` side by side.
fn mirror_dirs(mirror: &Path) -> Vec<PathBuf> {
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(mirror)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    subdirs.sort();
    std::iter::once(mirror.to_path_buf()).chain(subdirs).collect()
}

/// Finds or fetches the raw file of `spec` and verifies it.
pub fn ensure_raw(spec: &DatasetSpec, opts: &FetchOptions) -> Result<RawFile, FetchError> {
    if let Some(local) = &spec.path {
        if !local.exists() {
            return Err(molpeg_core::Error::invalid(local, "dataset `path` does not exist; fix [dataset].path in the pipeline file").into());
        }
        let sha = if spec.sha256.is_empty() && opts.accept_sha256.is_empty() {
            molpeg_core::manifest::sha256_file(local)?
        } else {
            verify(spec, opts, local, local, "")?
        };
        return Ok(RawFile { path: local.clone(), sha256: sha, origin: Origin::Local });
    }

    let cache = opts.cache_path(spec);
    if cache.exists() {
        let cleanup = format!("\n  Or delete {} to fetch it again.", cache.display());
        let mut opts = opts.clone();
        opts.accept_sha256.extend(read_acceptance(&cache));
        let sha = verify(spec, &opts, &cache, &cache, &cleanup)?;
        return Ok(RawFile { path: cache, sha256: sha, origin: Origin::Cache });
    }

    let mut looked = Vec::new();
    if let Some(mirror) = &opts.mirror {
        for dir in mirror_dirs(mirror) {
            for name in spec.mirror_candidates() {
                let candidate = dir.join(&name);
                if candidate.is_file() {
                    let sha = install(spec, opts, open(&candidate)?, &candidate)?;
                    return Ok(RawFile { path: cache, sha256: sha, origin: Origin::Mirror });
                }
            }
        }
        looked.push(format!("{} and its subdirectories", mirror.display()));
    } else {
        looked.push(format!("no mirror (${MIRROR_ENV} unset)"));
    }

    let download = match (&spec.url, opts.offline) {
        (Some(url), false) => match ureq::get(url).call() {
            Ok(response) => {
                let reader = response.into_body().into_reader();
                let sha = install(spec, opts, reader, Path::new(url))?;
                return Ok(RawFile { path: cache, sha256: sha, origin: Origin::Download });
            }
            Err(e) => format!("\n  Download from {url} failed: {e}."),
        },
        (Some(_), true) => "\n  Offline mode: the canonical URL was not tried.".to_string(),
        (None, _) => "\n  The pipeline names no `url` to download from.".to_string(),
    };
    Err(FetchError::NotFound {
        dataset: spec.name.clone(),
        looked: looked.join(", "),
        download,
        names: spec.mirror_candidates().join(", "),
        cache,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{LabelColumns, TaskType};
    use std::io::Write;

    fn spec(sha: Vec<String>) -> DatasetSpec {
        DatasetSpec {
            name: "demo".into(),
            url: None,
            file: "demo.csv.gz".into(),
            mirror_names: vec![],
            sha256: sha,
            path: None,
            smiles_column: "smiles".into(),
            label_columns: LabelColumns::Named(vec!["y".into()]),
            ignore_columns: vec![],
            task_type: TaskType::Binary,
            missing: vec![],
            geometry: None,
            label_units: Default::default(),
        }
    }

    fn gz(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("demo.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
        path
    }

    #[test]
    fn mirror_copy_is_verified_by_content_hash_and_cached() {
        let mirror = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let text = "smiles,y\nC,1\n";
        gz(mirror.path(), text);
        let content_sha = hex::encode(Sha256::digest(text.as_bytes()));
        let opts = FetchOptions { data_dir: data.path().into(), mirror: Some(mirror.path().into()), ..Default::default() };
        let raw = ensure_raw(&spec(vec![content_sha.clone()]), &opts).unwrap();
        assert_eq!(raw.origin, Origin::Mirror);
        assert!(raw.path.exists());
        let again = ensure_raw(&spec(vec![content_sha]), &opts).unwrap();
        assert_eq!(again.origin, Origin::Cache);
    }

    #[test]
    fn checksum_mismatch_names_file_hashes_and_fix_and_leaves_nothing() {
        let mirror = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let path = gz(mirror.path(), "smiles,y\nC,1\n");
        let opts = FetchOptions { data_dir: data.path().into(), mirror: Some(mirror.path().into()), ..Default::default() };
        let err = ensure_raw(&spec(vec!["00ff".into()]), &opts).unwrap_err().to_string();
        let actual = molpeg_core::manifest::sha256_file(&path).unwrap();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(&actual) && err.contains("00ff") && err.contains("--accept-sha256"), "{err}");
        let raw_dir = data.path().join("raw");
        assert_eq!(std::fs::read_dir(&raw_dir).unwrap().count(), 0, "no partial file left");
        // Accepting the hash explicitly lets it through.
        let accepting = FetchOptions { accept_sha256: vec![actual], ..opts.clone() };
        assert_eq!(ensure_raw(&spec(vec!["00ff".into()]), &accepting).unwrap().origin, Origin::Mirror);
        // The acceptance is remembered for the cached copy.
        assert_eq!(ensure_raw(&spec(vec!["00ff".into()]), &opts).unwrap().origin, Origin::Cache);
    }

    #[test]
    fn missing_everywhere_says_where_it_looked() {
        let mirror = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let opts = FetchOptions { data_dir: data.path().into(), mirror: Some(mirror.path().into()), offline: true, ..Default::default() };
        let with_url = DatasetSpec { url: Some("https://example.org/demo.csv.gz".into()), ..spec(vec![]) };
        let err = ensure_raw(&with_url, &opts).unwrap_err().to_string();
        assert!(err.contains("demo.csv.gz") && err.contains(MIRROR_ENV) && err.contains("Offline"), "{err}");
    }
}
