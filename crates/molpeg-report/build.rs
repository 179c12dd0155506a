//! The report links neither libtorch nor RDKit; only its end-to-end test does (through the molpeg-nn
//! dev-dependency, to produce real stage outputs). That test binary gets libtorch's directory in its
//! rpath, found as molpeg-nn's build script finds it (`$LIBTORCH`, else Python's torch).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=MOLPEG_PYTHON");
    let dir = std::env::var("LIBTORCH").ok().filter(|d| !d.is_empty()).map(|d| format!("{d}/lib")).or_else(|| {
        let python = std::env::var("MOLPEG_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(python).args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    match dir {
        Some(dir) => println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}"),
        None => println!("cargo:warning=could not find libtorch's lib dir; the report's end-to-end test will need LD_LIBRARY_PATH"),
    }
}
