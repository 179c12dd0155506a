//! Link settings for this crate's binaries, tests and examples:
//! - libtorch's library directory goes into their rpath, so they run without LD_LIBRARY_PATH.
//!   torch-sys exports the directory as `DEP_TCH_LIBTORCH_LIB` (its `links = "tch"` metadata); we
//!   fall back to asking Python's torch where it lives.
//! - With a CUDA libtorch, `libtorch_cuda` is linked with `--no-as-needed`: nothing references its
//!   symbols directly (it registers CUDA with libtorch when loaded), so the linker would drop it and
//!   `--device cuda` would find no GPU.

use std::path::Path;
use std::process::Command;

pub fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=MOLPEG_PYTHON");
    let dir = std::env::var("DEP_TCH_LIBTORCH_LIB").ok().filter(|d| !d.is_empty()).or_else(python_torch_lib_dir);
    let Some(dir) = dir else {
        println!("cargo:warning=could not find libtorch's lib dir; binaries will need LD_LIBRARY_PATH");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    if Path::new(&dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

fn python_torch_lib_dir() -> Option<String> {
    let python = std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
