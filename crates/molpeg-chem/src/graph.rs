//! One molecule from SMILES to [`MolGraph`]: RDKit parses (through rdkit-sys), our bridge reads the
//! atoms and bonds, [`crate::features`] maps them to both schemes' indices. A SMILES that cannot be
//! featurized gives a [`Reject`], never a panic or an abort.

use std::fmt;

use cxx::let_cxx_string;
use rdkit_sys::ro_mol_ffi::smiles_to_mol;

use crate::bridge::ffi::{self, MolRecord};
use crate::features::{hu, ogb, OtherCounts};
use crate::fingerprint::{self, MorganSpec};
use crate::geometry::{parse_dataset_geometry, Geometry, GeometryMode};

/// Node and edge indices are stored as `u16` in the graph Parquet file.
pub const MAX_ATOMS: usize = u16::MAX as usize;
pub const MAX_BONDS: usize = u16::MAX as usize;

/// A featurized molecule, laid out like OGB's `smiles2graph` and Hu et al.'s
/// `mol_to_graph_data_obj_simple`: RDKit bond `i` gives the directed edges `2i` (begin → end) and
/// `2i + 1` (end → begin), and every edge feature is repeated for both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct MolGraph {
    /// RDKit's canonical isomeric SMILES.
    pub canonical_smiles: String,
    /// Bemis–Murcko scaffold with chirality; `""` for acyclic molecules.
    pub scaffold: String,
    /// Per atom: `[atomic number index, chirality tag]`.
    pub atom_hu: Vec<[u8; 2]>,
    /// Per atom: OGB's 9 features.
    pub atom_ogb: Vec<[u8; 9]>,
    /// Per directed edge: `[source atom, target atom]`.
    pub edge_index: Vec<[u16; 2]>,
    /// Per directed edge: `[bond type, bond direction]`.
    pub bond_hu: Vec<[u8; 2]>,
    /// Per directed edge: OGB's 3 features.
    pub bond_ogb: Vec<[u8; 3]>,
    /// Features of this molecule that fell into an "other"/"misc" slot.
    pub other: OtherCounts,
    /// Packed Morgan bits ([`molpeg_core::schema::fingerprints::MORGAN`]), when the featurizer was
    /// asked for them.
    pub fingerprint: Option<Vec<u8>>,
    /// The molecule's 3D atoms (hydrogens included), when the featurizer was asked for them
    /// ([`Featurizer::with_geometry`]).
    pub geometry: Option<Geometry>,
}

impl MolGraph {
    pub fn num_atoms(&self) -> usize {
        self.atom_hu.len()
    }

    /// Undirected RDKit bonds (half the directed edges).
    pub fn num_bonds(&self) -> usize {
        self.edge_index.len() / 2
    }
}

/// Why an input row produced no graph; written to `rejects.parquet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    EmptySmiles,
    /// RDKit's parser returned no molecule (syntax errors such as unclosed rings); holds RDKit's
    /// message from its error log (empty when it logged none).
    Unparsable(String),
    /// RDKit threw while building or sanitizing the molecule (e.g. a valence error); holds its message.
    Sanitization(String),
    /// RDKit threw while we read the parsed molecule or computed its SMILES, scaffold or fingerprint.
    Featurization(String),
    TooManyAtoms(usize),
    TooManyBonds(usize),
    /// The SMILES cell holds whitespace, a control character or a non-ASCII character inside it:
    /// RDKit would stop there and read the rest as a name (`CC O` → ethane), so it is never parsed.
    NotOneSmiles { position: usize, found: char },
    /// Over a [`SizeLimits`] bound, checked before parsing: (what, found, limit).
    TooLarge(&'static str, usize, usize),
    /// The row's geometry cells could not be read (holds why).
    BadGeometry(String),
    /// The geometry's heavy atoms are not the SMILES's atoms: the two describe different molecules.
    GeometryMismatch { smiles_atoms: usize, geometry_heavy_atoms: usize },
    /// RDKit could not embed (or relax) a conformer; holds its message.
    Conformer(String),
}

impl Reject {
    /// The reason without molecule-specific details, for counting rejects by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Reject::EmptySmiles => "empty SMILES",
            Reject::Unparsable(_) => "RDKit could not parse SMILES",
            Reject::Sanitization(_) => "RDKit rejected the molecule",
            Reject::Featurization(_) => "RDKit failed while featurizing",
            Reject::TooManyAtoms(_) => "molecule has more than 65535 atoms",
            Reject::TooManyBonds(_) => "molecule has more than 65535 bonds",
            Reject::NotOneSmiles { .. } => "SMILES cell holds whitespace, a control or a non-ASCII character",
            Reject::TooLarge(..) => "SMILES over a size limit (checked before parsing)",
            Reject::BadGeometry(_) => "unreadable geometry",
            Reject::GeometryMismatch { .. } => "geometry and SMILES disagree in heavy-atom count",
            Reject::Conformer(_) => "RDKit could not embed a conformer",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Sanitization(detail) | Reject::Featurization(detail) | Reject::BadGeometry(detail) | Reject::Conformer(detail) => write!(f, "{}: {detail}", self.kind()),
            Reject::GeometryMismatch { smiles_atoms, geometry_heavy_atoms } => {
                write!(f, "{}: {smiles_atoms} atoms in the SMILES, {geometry_heavy_atoms} non-hydrogen atoms in the geometry", self.kind())
            }
            Reject::Unparsable(detail) if !detail.is_empty() => write!(f, "{}: {detail}", self.kind()),
            Reject::TooManyAtoms(n) => write!(f, "{} ({n})", self.kind()),
            Reject::TooManyBonds(n) => write!(f, "{} ({n})", self.kind()),
            Reject::NotOneSmiles { position, found } => write!(f, "{}: {found:?} at character {position}; a cell must hold exactly one SMILES", self.kind()),
            Reject::TooLarge(what, found, limit) => write!(f, "{}: {found} {what} > {limit} (raise [featurize] max_{} if intended)", self.kind(), what.replace(' ', "_")),
            Reject::EmptySmiles | Reject::Unparsable(_) => f.write_str(self.kind()),
        }
    }
}

/// Bounds checked on the SMILES text before RDKit sees it. RDKit's parse and canonicalisation time
/// grows steeply with size (a 1,000-atom chain 0.8 s, 2,000 atoms 7 s, 70,000 atoms minutes) and its
/// recursion can overflow a stack on rings of thousands of atoms, so one giant row could stall or kill
/// a whole library run. The defaults are far above drug-like molecules (MoleculeNet's largest have
/// ~250 heavy atoms; ChEMBL's peptides < 1,000) and keep a worst-case row near a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SizeLimits {
    /// Characters of the SMILES.
    pub characters: usize,
    /// Atom tokens (bracket atoms, organic-subset and aromatic atoms, `*`): the heavy-atom count.
    pub atoms: usize,
    /// Dot-separated fragments (salts, mixtures).
    pub fragments: usize,
}

impl Default for SizeLimits {
    fn default() -> Self {
        SizeLimits { characters: 10_000, atoms: 1_000, fragments: 64 }
    }
}

impl SizeLimits {
    /// The first problem of `smiles` (already trimmed), without parsing it.
    pub fn check(&self, smiles: &str) -> Result<(), Reject> {
        if let Some((position, found)) = smiles.chars().enumerate().find(|(_, c)| c.is_whitespace() || c.is_control() || !c.is_ascii()) {
            return Err(Reject::NotOneSmiles { position, found });
        }
        if smiles.len() > self.characters {
            return Err(Reject::TooLarge("characters", smiles.len(), self.characters));
        }
        let fragments = smiles.bytes().filter(|&b| b == b'.').count() + 1;
        if fragments > self.fragments {
            return Err(Reject::TooLarge("fragments", fragments, self.fragments));
        }
        let atoms = count_atom_tokens(smiles);
        if atoms > self.atoms {
            return Err(Reject::TooLarge("atoms", atoms, self.atoms));
        }
        Ok(())
    }
}

/// Heavy-atom tokens of a SMILES string (a cheap over-estimate is fine: it is a guard): one per
/// bracket atom, per organic-subset symbol (`Cl`, `Br` as one) and aromatic symbol, and per `*`.
pub fn count_atom_tokens(smiles: &str) -> usize {
    let bytes = smiles.as_bytes();
    let (mut atoms, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'[' => {
                atoms += 1;
                i += bytes[i..].iter().position(|&b| b == b']').unwrap_or(bytes.len() - i);
            }
            b'B' | b'C' | b'N' | b'O' | b'P' | b'S' | b'F' | b'I' | b'b' | b'c' | b'n' | b'o' | b'p' | b's' | b'*' => atoms += 1,
            _ => {}
        }
        i += 1;
    }
    atoms
}

/// Featurizes molecules one after the other, reusing its buffers; one per worker thread.
#[derive(Default)]
pub struct Featurizer {
    record: MolRecord,
    morgan: Option<MorganSpec>,
    on_bits: Vec<u32>,
    limits: SizeLimits,
    /// Which 3D atoms to attach ([`GeometryMode::Auto`] and [`GeometryMode::None`]: none), and the
    /// conformer seed.
    geometry: GeometryMode,
    seed: u32,
    attempts: u32,
    atomic_numbers: Vec<u8>,
    xyz: Vec<f32>,
}

impl Featurizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A featurizer that also fills [`MolGraph::fingerprint`] when `morgan` is given.
    pub fn with_fingerprint(morgan: Option<MorganSpec>) -> Self {
        Featurizer { morgan, ..Self::default() }
    }

    /// Replaces the default [`SizeLimits`].
    pub fn with_limits(mut self, limits: SizeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Attaches 3D atoms to every graph: [`GeometryMode::Dataset`] from the row's geometry cells
    /// ([`Featurizer::featurize_row`]), [`GeometryMode::Etkdg`]/[`GeometryMode::EtkdgMmff`] an RDKit
    /// conformer embedded with `seed` in at most `attempts` tries.
    pub fn with_geometry(mut self, mode: GeometryMode, seed: u32, attempts: u32) -> Self {
        self.geometry = mode;
        self.seed = seed;
        self.attempts = attempts;
        self
    }

    /// Surrounding whitespace is ignored; anything else that is not one SMILES is a reject.
    pub fn featurize(&mut self, smiles: &str) -> Result<MolGraph, Reject> {
        self.featurize_row(smiles, None)
    }

    /// [`Featurizer::featurize`] for a dataset row with its geometry cells `(elements, positions)`
    /// (used in [`GeometryMode::Dataset`]): the geometry's heavy atoms must be the SMILES's atoms.
    pub fn featurize_row(&mut self, smiles: &str, geometry_cells: Option<(&str, &str)>) -> Result<MolGraph, Reject> {
        let smiles = smiles.trim();
        if smiles.is_empty() {
            return Err(Reject::EmptySmiles);
        }
        self.limits.check(smiles)?;
        let_cxx_string!(cxx_smiles = smiles);
        ffi::begin_error_capture();
        let parsed = smiles_to_mol(&cxx_smiles);
        let log = ffi::end_error_capture();
        let mol = parsed.map_err(|e| Reject::Sanitization(rdkit_exception_message(e.what(), &log)))?;
        if mol.is_null() {
            return Err(Reject::Unparsable(rdkit_log_message(&log, smiles)));
        }
        ffi::describe_molecule(&mol, &mut self.record).map_err(|e| Reject::Featurization(e.what().to_string()))?;
        let fingerprint = match self.morgan {
            Some(spec) => {
                let mut packed = Vec::with_capacity(spec.bytes());
                fingerprint::append_packed(&mol, spec, &mut self.on_bits, &mut packed).map_err(|e| Reject::Featurization(format!("Morgan fingerprint: {e}")))?;
                Some(packed)
            }
            None => None,
        };
        let embedded = if self.geometry.embeds() {
            ffi::embed_conformer(&mol, self.seed, self.attempts, self.geometry == GeometryMode::EtkdgMmff, &mut self.atomic_numbers, &mut self.xyz)
                .map_err(|e| Reject::Conformer(e.what().to_string()))?;
            let positions = self.xyz.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
            Some(Geometry { atomic_numbers: self.atomic_numbers.clone(), positions })
        } else {
            None
        };
        drop(mol);
        let mut graph = graph_from_record(&mut self.record)?;
        graph.fingerprint = fingerprint;
        graph.geometry = match self.geometry {
            GeometryMode::Dataset => {
                let (elements, positions) = geometry_cells.ok_or_else(|| Reject::BadGeometry("the row has no geometry cells".into()))?;
                let geometry = parse_dataset_geometry(elements, positions).map_err(Reject::BadGeometry)?;
                if geometry.heavy_atoms() != graph.num_atoms() {
                    return Err(Reject::GeometryMismatch { smiles_atoms: graph.num_atoms(), geometry_heavy_atoms: geometry.heavy_atoms() });
                }
                Some(geometry)
            }
            _ => embedded,
        };
        Ok(graph)
    }
}

/// RDKit's error-log lines as one message: timestamps, blank lines and the repeated SMILES dropped,
/// and the closing "Failed parsing SMILES '…'" line left out when a more specific line precedes it.
/// RDKit 2022.09 logs `syntax error while parsing: C1CC(`, `unclosed ring for input: 'C1CC'`,
/// `extra open parentheses …`, `extra close parentheses …` (no character position; later RDKit
/// versions add one, which is kept).
fn rdkit_log_message(log: &str, smiles: &str) -> String {
    // The rejects table has the SMILES in its own column: "… while parsing: C1CC(" → "…".
    let while_parsing = format!(" while parsing: {smiles}");
    let for_input = format!(" for input: '{smiles}'");
    let lines: Vec<&str> = log_lines(log)
        .map(|line| line.strip_prefix("SMILES Parse Error: ").unwrap_or(line).trim())
        .map(|line| line.strip_suffix(while_parsing.as_str()).or_else(|| line.strip_suffix(for_input.as_str())).unwrap_or(line))
        .filter(|line| !line.is_empty())
        .collect();
    let specific: Vec<&str> = lines.iter().copied().filter(|line| !line.starts_with("Failed parsing SMILES")).collect();
    let kept = if specific.is_empty() { lines } else { specific };
    let mut message = kept.join("; ");
    // A SMILES of 10,000 characters repeated in its own reject reason helps nobody.
    if message.len() > 500 {
        let cut = (0..=500).rev().find(|&i| message.is_char_boundary(i)).unwrap_or(0);
        message.truncate(cut);
        message.push_str(&format!("… ({} characters of SMILES)", smiles.len()));
    }
    message
}

/// The text of RDKit's log lines: stamps, surrounding blanks, empty lines and `****` rules dropped.
fn log_lines(log: &str) -> impl Iterator<Item = &str> {
    log.lines().map(strip_log_stamp).map(str::trim).filter(|line| !line.is_empty() && !line.chars().all(|c| c == '*'))
}

/// `[12:34:56] text` → `text` (RDKit stamps every log line).
fn strip_log_stamp(line: &str) -> &str {
    match line.strip_prefix('[').and_then(|rest| rest.split_once("] ")) {
        Some((stamp, text)) if stamp.len() == 8 && stamp.bytes().all(|b| b.is_ascii_digit() || b == b':') => text,
        _ => line,
    }
}

/// An exception from parsing. RDKit's internal checks (`Invariant Violation`, `Pre-condition
/// Violation`) carry only that title in `what()` and log the description with a source file and
/// line; the reject keeps the description, not the assertion text.
fn rdkit_exception_message(what: &str, log: &str) -> String {
    let what = what.trim();
    if !what.ends_with("Violation") {
        return what.to_string();
    }
    let description =
        log_lines(log).find(|line| !line.ends_with("Violation") && !line.starts_with("Violation occurred") && !line.starts_with("Failed Expression"));
    match description {
        Some(text) => format!("RDKit's internal check failed: {text}"),
        None => "RDKit's internal check failed".to_string(),
    }
}

/// Parses one SMILES and drops the molecule: the bare RDKit cost that featurization builds on
/// (benchmarks). True when RDKit returned a molecule.
pub fn parse_only(smiles: &str) -> bool {
    let_cxx_string!(cxx_smiles = smiles);
    smiles_to_mol(&cxx_smiles).is_ok_and(|mol| !mol.is_null())
}

/// Featurizes one SMILES (convenience for one-off use; loops should reuse a [`Featurizer`]).
pub fn featurize_smiles(smiles: &str) -> Result<MolGraph, Reject> {
    Featurizer::new().featurize(smiles)
}

/// Maps a filled record to both schemes; takes the record's strings, keeps its vectors for reuse.
fn graph_from_record(record: &mut MolRecord) -> Result<MolGraph, Reject> {
    if record.atoms.len() > MAX_ATOMS {
        return Err(Reject::TooManyAtoms(record.atoms.len()));
    }
    if record.bonds.len() > MAX_BONDS {
        return Err(Reject::TooManyBonds(record.bonds.len()));
    }
    let mut other = OtherCounts::default();
    let atom_hu = record.atoms.iter().map(|a| hu::atom(a, &mut other)).collect();
    let atom_ogb = record.atoms.iter().map(|a| ogb::atom(a, &mut other)).collect();

    let directed = 2 * record.bonds.len();
    let mut edge_index = Vec::with_capacity(directed);
    let mut bond_hu = Vec::with_capacity(directed);
    let mut bond_ogb = Vec::with_capacity(directed);
    for bond in &record.bonds {
        // Atom indices fit: there are at most MAX_ATOMS atoms.
        let (begin, end) = (bond.begin_atom as u16, bond.end_atom as u16);
        let hu_features = hu::bond(bond, &mut other);
        let ogb_features = ogb::bond(bond, &mut other);
        edge_index.extend([[begin, end], [end, begin]]);
        bond_hu.extend([hu_features; 2]);
        bond_ogb.extend([ogb_features; 2]);
    }

    Ok(MolGraph {
        canonical_smiles: std::mem::take(&mut record.canonical_smiles),
        scaffold: std::mem::take(&mut record.scaffold),
        atom_hu,
        atom_ogb,
        edge_index,
        bond_hu,
        bond_ogb,
        other,
        fingerprint: None,
        geometry: None,
    })
}

/// The RDKit library version this crate is linked against, e.g. `2022.09.3`.
pub fn rdkit_version() -> String {
    ffi::rdkit_version()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::OtherSlot;

    fn graph(smiles: &str) -> MolGraph {
        featurize_smiles(smiles).unwrap_or_else(|r| panic!("{smiles}: {r}"))
    }

    #[test]
    fn ogb_reference_vectors_for_a_chiral_alkene() {
        // The example from OGB's own tests (ogb/utils/mol.py): atom 1 and bond 2.
        let g = graph("Cl[C@H](/C=C/C)Br");
        assert_eq!(g.num_atoms(), 6);
        assert_eq!(g.num_bonds(), 5);
        assert_eq!(g.atom_ogb[1], [5, 2, 4, 5, 1, 0, 2, 0, 0]);
        assert_eq!(g.bond_ogb[2 * 2], [1, 2, 0]);
        assert_eq!(g.bond_ogb[2 * 2 + 1], [1, 2, 0]);
        assert_eq!(g.atom_hu[1], [5, 2]);
        assert_eq!(g.edge_index, vec![[0, 1], [1, 0], [1, 2], [2, 1], [2, 3], [3, 2], [3, 4], [4, 3], [1, 5], [5, 1]]);
        // Bonds 1 and 3 (directed edges 2 and 6) carry the `/` directions (ENDUPRIGHT = 1).
        let directions: Vec<u8> = g.bond_hu.iter().step_by(2).map(|b| b[1]).collect();
        assert_eq!(directions, vec![0, 1, 0, 1, 0]);
        assert_eq!(g.scaffold, "");
        assert!(g.other.is_empty());
    }

    #[test]
    fn benzene_is_aromatic_and_in_a_ring() {
        let g = graph("c1ccccc1");
        assert_eq!((g.num_atoms(), g.edge_index.len()), (6, 12));
        assert!(g.atom_ogb.iter().all(|a| a[0] == 5 && a[6] == 1 && a[7] == 1 && a[8] == 1), "{:?}", g.atom_ogb);
        assert!(g.bond_ogb.iter().all(|b| *b == [3, 0, 1]));
        assert!(g.bond_hu.iter().all(|b| *b == [3, 0]));
        assert_eq!((g.canonical_smiles.as_str(), g.scaffold.as_str()), ("c1ccccc1", "c1ccccc1"));
    }

    #[test]
    fn tetrahedral_chirality_tag() {
        let g = graph("C[C@H](N)O");
        assert_eq!(g.atom_hu, vec![[5, 0], [5, 2], [6, 0], [7, 0]]);
        assert_eq!(g.atom_ogb[1][1], 2);
        assert_eq!(graph("C[C@@H](N)O").atom_hu[1], [5, 1]);
    }

    #[test]
    fn salt_has_two_fragments_no_edges_and_charges() {
        let g = graph("[Na+].[Cl-]");
        assert_eq!((g.num_atoms(), g.num_bonds()), (2, 0));
        assert!(g.edge_index.is_empty() && g.bond_hu.is_empty() && g.bond_ogb.is_empty());
        assert_eq!((g.atom_ogb[0][0], g.atom_ogb[0][3]), (10, 6));
        assert_eq!((g.atom_ogb[1][0], g.atom_ogb[1][3]), (16, 4));
        assert_eq!(g.scaffold, "");
    }

    #[test]
    fn methane_has_one_atom_and_no_edges() {
        let g = graph("C");
        assert_eq!(g.atom_ogb, vec![[5, 0, 4, 5, 4, 0, 2, 0, 0]]);
        assert!(g.edge_index.is_empty());
    }

    #[test]
    fn nitro_group_charges() {
        let g = graph("C[N+](=O)[O-]");
        let charges: Vec<u8> = g.atom_ogb.iter().map(|a| a[3]).collect();
        assert_eq!(charges, vec![5, 6, 5, 4]);
        assert_eq!(g.bond_ogb[2], [1, 0, 1]);
    }

    #[test]
    fn dative_bond_goes_to_the_other_slot() {
        let g = graph("[NH3]->[Pt]");
        assert_eq!(g.bond_hu[0], [4, 0]);
        assert_eq!(g.bond_ogb[0], [4, 0, 0]);
        assert_eq!(g.other.get(OtherSlot::HuBondType), 1);
        assert_eq!(g.other.get(OtherSlot::OgbBondType), 1);
    }

    #[test]
    fn murcko_scaffolds_match_python_rdkit() {
        // Expected values are what Python's MurckoScaffold.MurckoScaffoldSmiles(smiles=...,
        // includeChirality=True) prints (RDKit 2022.09).
        assert_eq!(graph("CC(C)Cc1ccc(cc1)C(C)C(=O)O").scaffold, "c1ccccc1"); // ibuprofen
        assert_eq!(graph("Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1").scaffold, "c1ccc(-c2ccnn2-c2ccccc2)cc1"); // celecoxib
        assert_eq!(graph("CC(C)Cc1ccc(cc1)C(C)C(=O)O").canonical_smiles, "CC(C)Cc1ccc(C(C)C(=O)O)cc1");
        // Ring-fusion stereocentres survive; the one that carried the methyl is no longer a stereocentre.
        assert_eq!(graph("C[C@@H]1CC[C@H]2CCCC[C@@H]2C1").scaffold, "C1CC[C@H]2CCCC[C@@H]2C1");
    }

    #[test]
    fn bad_smiles_are_rejects_not_crashes() {
        assert_eq!(featurize_smiles(""), Err(Reject::EmptySmiles));
        assert_eq!(featurize_smiles("  "), Err(Reject::EmptySmiles));
        assert_eq!(featurize_smiles("xyz"), Err(Reject::Unparsable("syntax error".into())));
        let valence = featurize_smiles("C(C)(C)(C)(C)C").unwrap_err();
        assert_eq!(valence.kind(), "RDKit rejected the molecule");
        assert!(valence.to_string().contains("valence"), "{valence}");
        // The featurizer stays usable after rejects.
        let mut featurizer = Featurizer::new();
        assert!(featurizer.featurize("xyz").is_err());
        assert_eq!(featurizer.featurize("CCO").unwrap().num_atoms(), 3);
    }

    /// RDKit's own words for each parse failure (RDKit 2022.09 gives no character position), without
    /// the SMILES repeated: the rejects table has it in its own column.
    #[test]
    fn parse_rejects_carry_rdkits_message() {
        let message = |smiles: &str| match featurize_smiles(smiles) {
            Err(Reject::Unparsable(detail)) => detail,
            other => panic!("{smiles}: {other:?}"),
        };
        assert_eq!(message("C1CC"), "unclosed ring");
        assert_eq!(message("C1CC2"), "unclosed ring");
        assert_eq!(message("CC(=O"), "extra open parentheses");
        assert_eq!(message("CC)C"), "extra close parentheses");
        for syntax in ["C1CC(", "[Xx]", "[C@@@H]", "C==C", "[Fe+++++++++++]", "C%1"] {
            assert_eq!(message(syntax), "syntax error", "{syntax}");
        }
        assert_eq!(featurize_smiles("CC)C").unwrap_err().to_string(), "RDKit could not parse SMILES: extra close parentheses");
        // Exceptions keep RDKit's what(); the log is not printed or appended twice.
        assert_eq!(
            featurize_smiles("c1ccccc1[nH]").unwrap_err().to_string(),
            "RDKit rejected the molecule: non-ring atom 6 marked aromatic"
        );
    }

    /// Every thread's capture holds its own molecule's message while others parse at the same time.
    #[test]
    fn parse_messages_do_not_cross_threads() {
        let cases = [("C1CC", "unclosed ring"), ("CC(=O", "extra open parentheses"), ("CC)C", "extra close parentheses"), ("C==C", "syntax error")];
        std::thread::scope(|scope| {
            for (smiles, expected) in cases {
                scope.spawn(move || {
                    let mut featurizer = Featurizer::new();
                    for _ in 0..300 {
                        assert_eq!(featurizer.featurize(smiles), Err(Reject::Unparsable(expected.into())));
                        assert_eq!(featurizer.featurize("CCO").unwrap().num_atoms(), 3);
                    }
                });
            }
        });
    }

    #[test]
    fn log_messages_are_cleaned() {
        let log = "[15:36:40] SMILES Parse Error: syntax error while parsing: C1CC(\n[15:36:40] SMILES Parse Error: Failed parsing SMILES 'C1CC(' for input: 'C1CC('\n";
        assert_eq!(rdkit_log_message(log, "C1CC("), "syntax error");
        // Only the generic line: it is kept.
        assert_eq!(rdkit_log_message("[01:02:03] SMILES Parse Error: Failed parsing SMILES 'X' for input: 'X'\n", "X"), "Failed parsing SMILES 'X'");
        assert_eq!(rdkit_log_message("", "X"), "");
        // A later RDKit's position is kept.
        assert_eq!(rdkit_log_message("[01:02:03] SMILES Parse Error: check for mistakes around position 4:\n", "CC(("), "check for mistakes around position 4:");
        // An internal check: the description, never the file, line or expression.
        let invariant = "[01:02:03] \n\n****\nPre-condition Violation\nbad bond index\nViolation occurred on line 42 in file Code/GraphMol/ROMol.cpp\nFailed Expression: idx < getNumBonds()\n****\n\n";
        assert_eq!(rdkit_exception_message("Pre-condition Violation", invariant), "RDKit's internal check failed: bad bond index");
        assert_eq!(rdkit_exception_message("Explicit valence for atom # 0 C, 5, is greater than permitted", ""), "Explicit valence for atom # 0 C, 5, is greater than permitted");
    }

    #[test]
    fn fingerprints_only_when_asked_and_equal_for_two_smiles_of_one_molecule() {
        assert_eq!(graph("CCO").fingerprint, None);
        let mut featurizer = Featurizer::with_fingerprint(Some(MorganSpec::default()));
        let a = featurizer.featurize("CCO").unwrap();
        let b = featurizer.featurize("OCC").unwrap();
        assert_eq!(a.fingerprint.as_ref().map(Vec::len), Some(256));
        assert_eq!(a.fingerprint, b.fingerprint);
        let ones: u32 = a.fingerprint.unwrap().iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 6);
        assert!(featurizer.featurize("xyz").is_err());
        assert_ne!(featurizer.featurize("c1ccccc1").unwrap().fingerprint, b.fingerprint);
    }

    #[test]
    fn a_cell_is_one_whole_smiles() {
        // RDKit would read these as ethane/methane/ethanol plus a name.
        for (smiles, position) in [("CC O", 2), ("C\u{d6}C", 1), ("CCO\tC", 3), ("CC\0O", 2), ("CC\nO", 2)] {
            match featurize_smiles(smiles) {
                Err(Reject::NotOneSmiles { position: p, .. }) => assert_eq!(p, position, "{smiles:?}"),
                other => panic!("{smiles:?}: {other:?}"),
            }
        }
        assert_eq!(graph(" CCO \t").num_atoms(), 3, "surrounding whitespace is trimmed");
    }

    #[test]
    fn size_limits_reject_before_parsing() {
        assert_eq!(count_atom_tokens("Cl[C@H](/C=C/C)Br"), 6);
        assert_eq!(count_atom_tokens("c1ccccc1.[Na+]"), 7);
        let limits = SizeLimits { characters: 50, atoms: 10, fragments: 2 };
        let mut f = Featurizer::new().with_limits(limits);
        assert!(f.featurize("CCCCCCCCCC").is_ok());
        assert_eq!(f.featurize("CCCCCCCCCCC"), Err(Reject::TooLarge("atoms", 11, 10)));
        assert_eq!(f.featurize("C.C.C"), Err(Reject::TooLarge("fragments", 3, 2)));
        assert!(matches!(f.featurize(&"C".repeat(60)), Err(Reject::TooLarge("characters", 60, 50))));
        let message = f.featurize("C.C.C").unwrap_err().to_string();
        assert!(message.contains("max_fragments"), "{message}");
        // The default limits keep a 3,000-atom ring (a stack overflow in RDKit) from being parsed.
        let ring = format!("C1{}1", "C".repeat(2999));
        assert!(matches!(featurize_smiles(&ring), Err(Reject::TooLarge("atoms", 3000, 1000))));
    }

    #[test]
    fn reports_a_release_version() {
        assert!(rdkit_version().starts_with("20"), "{}", rdkit_version());
    }
}
