use std::io::BufRead;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let text = std::process::Command::new("zcat").arg(&path).output().unwrap().stdout;
    let smiles: Vec<String> = text.lines().skip(1).map(|l| l.unwrap().split(',').next().unwrap().to_string()).collect();
    let t = std::time::Instant::now();
    let mut ok = 0;
    for s in &smiles {
        cxx::let_cxx_string!(c = s);
        if let Ok(m) = rdkit_sys::ro_mol_ffi::smiles_to_mol(&c) { if !m.is_null() { ok += 1; } }
    }
    let parse = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let mut f = molpeg_chem::Featurizer::new();
    for s in &smiles { let _ = f.featurize(s); }
    let full = t.elapsed().as_secs_f64();
    println!("{} mols ({ok} ok): parse {:.2}s ({:.0}/s)  featurize {:.2}s ({:.0}/s)", smiles.len(), parse, smiles.len() as f64 / parse, full, smiles.len() as f64 / full);
}
