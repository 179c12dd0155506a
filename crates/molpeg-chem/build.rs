//! Compiles our cxx bridge (src/bridge.rs + src/bridge.cc) against the same RDKit that rdkit-sys uses.

/// RDKit header directories, searched in the same order as rdkit-sys 0.4.8's build script, so both
/// bridges see the same headers.
fn rdkit_include_dirs() -> Vec<&'static str> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("macos", "aarch64") => vec!["/opt/homebrew/include", "/opt/homebrew/include/rdkit"],
        ("macos", _) => vec!["/usr/local/include", "/usr/local/include/rdkit"],
        _ => vec!["/usr/local/include", "/usr/local/include/rdkit", "/usr/include", "/usr/include/rdkit"],
    }
}

fn main() {
    if std::env::var("DOCS_RS").is_ok() {
        return;
    }
    cxx_build::bridge("src/bridge.rs")
        .file("src/bridge.cc")
        .includes(rdkit_include_dirs())
        .std("c++17")
        // RDKit's own headers warn under -Wall; our few lines are reviewed by hand.
        .warnings(false)
        .compile("molpeg_chem_bridge");

    if std::env::consts::OS == "macos" && std::env::consts::ARCH == "aarch64" {
        println!("cargo:rustc-link-search=native=/opt/homebrew/lib");
    }
    // rdkit-sys links GraphMol, SmilesParse and RDGeneral already; MurckoDecompose lives in
    // ChemTransforms, the Morgan fingerprints in Fingerprints and ExplicitBitVect in DataStructs
    // (named here so the bridge does not rely on rdkit-sys's own list); ETKDG conformers in
    // DistGeomHelpers (and DistGeometry), MMFF in ForceFieldHelpers (and ForceField).
    for lib in ["ChemTransforms", "Fingerprints", "DataStructs", "DistGeomHelpers", "DistGeometry", "ForceFieldHelpers", "ForceField"] {
        println!("cargo:rustc-link-lib=dylib=RDKit{lib}");
    }

    for path in ["src/bridge.rs", "src/bridge.cc", "include/bridge.h"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
