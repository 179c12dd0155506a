//! Our own small cxx bridge to RDKit, for what rdkit-sys does not expose (atoms' chirality and
//! ring membership, bonds, Murcko scaffolds, Morgan fingerprints, the version string). SMILES parsing stays in rdkit-sys;
//! this bridge reads the parsed `ROMol` it returns.
//!
//! [`ffi::describe_molecule`] is the one call made per molecule: it fills a [`ffi::MolRecord`] with
//! RDKit's raw per-atom and per-bond values. Mapping them to feature indices is pure Rust
//! ([`crate::features`]), so it can be read and tested without C++.

#[cxx::bridge(namespace = "molpeg")]
pub(crate) mod ffi {
    /// RDKit's raw values for one atom.
    #[derive(Debug, Clone, Copy)]
    struct AtomRecord {
        atomic_num: i32,
        chiral_tag: ChiralType,
        /// `GetTotalDegree()`: neighbours including implicit and explicit hydrogens.
        total_degree: u32,
        formal_charge: i32,
        /// `GetTotalNumHs()` (hydrogen neighbours not counted, as in Python's default).
        total_num_hs: u32,
        radical_electrons: u32,
        hybridization: HybridizationType,
        is_aromatic: bool,
        is_in_ring: bool,
    }

    /// RDKit's raw values for one bond.
    #[derive(Debug, Clone, Copy)]
    struct BondRecord {
        begin_atom: u32,
        end_atom: u32,
        bond_type: BondType,
        direction: BondDir,
        stereo: BondStereo,
        is_conjugated: bool,
    }

    /// Everything the featurizer needs from one molecule; reused between molecules to save allocations.
    #[derive(Debug, Default)]
    struct MolRecord {
        /// In RDKit atom index order.
        atoms: Vec<AtomRecord>,
        /// In RDKit bond index order.
        bonds: Vec<BondRecord>,
        /// `MolToSmiles(mol)`, isomeric.
        canonical_smiles: String,
        /// Bemis–Murcko scaffold with chirality, `""` for acyclic molecules.
        scaffold: String,
    }

    // The enums below are bound to RDKit's own (see include/bridge.h); cxx refuses to compile if any
    // value differs from RDKit's headers. Values RDKit adds later arrive as unnamed values, which the
    // featurization schemes send to their "other" slot.

    #[repr(u32)]
    #[derive(Debug)]
    enum ChiralType {
        CHI_UNSPECIFIED = 0,
        CHI_TETRAHEDRAL_CW = 1,
        CHI_TETRAHEDRAL_CCW = 2,
        CHI_OTHER = 3,
    }

    #[repr(u32)]
    #[derive(Debug)]
    enum HybridizationType {
        UNSPECIFIED = 0,
        S = 1,
        SP = 2,
        SP2 = 3,
        SP3 = 4,
        SP2D = 5,
        SP3D = 6,
        SP3D2 = 7,
        OTHER = 8,
    }

    #[repr(u32)]
    #[derive(Debug)]
    enum BondType {
        UNSPECIFIED = 0,
        SINGLE = 1,
        DOUBLE = 2,
        TRIPLE = 3,
        AROMATIC = 12,
        DATIVE = 17,
    }

    #[repr(u32)]
    #[derive(Debug)]
    enum BondDir {
        NONE = 0,
        ENDDOWNRIGHT = 3,
        ENDUPRIGHT = 4,
    }

    #[repr(u32)]
    #[derive(Debug)]
    enum BondStereo {
        STEREONONE = 0,
        STEREOANY = 1,
        STEREOZ = 2,
        STEREOE = 3,
        STEREOCIS = 4,
        STEREOTRANS = 5,
    }

    unsafe extern "C++" {
        include!("molpeg-chem/include/bridge.h");

        type ChiralType;
        type HybridizationType;
        type BondType;
        type BondDir;
        type BondStereo;

        #[namespace = "RDKit"]
        type ROMol = rdkit_sys::ro_mol_ffi::ROMol;

        /// Fills `out` from `mol` (replacing what it held). Errs, never aborts, on any C++ exception.
        fn describe_molecule(mol: &SharedPtr<ROMol>, out: &mut MolRecord) -> Result<()>;

        /// The on bits (ascending) of `MorganFingerprints::getFingerprintAsBitVect(mol, radius, bits)`
        /// with RDKit's defaults (bond types, no chirality), into `on_bits` (replacing what it held).
        /// Errs, never aborts, on a null molecule, `bits == 0` or any C++ exception.
        fn morgan_on_bits(mol: &SharedPtr<ROMol>, radius: u32, bits: u32, on_bits: &mut Vec<u32>) -> Result<()>;

        /// A 3D conformer of `mol` with hydrogens added (`MolOps::addHs`), embedded by ETKDGv3 with
        /// `randomSeed = seed` on one thread, at most `attempts` embedding attempts (`maxIterations`),
        /// again from random coordinates if that fails, then MMFF94-relaxed (200 iterations at most) when
        /// `mmff`: the atomic number of every atom (heavy atoms in the molecule's order, then the
        /// hydrogens) into `atomic_numbers` and its x, y, z in ångström into `xyz` (both replaced).
        /// Errs when embedding fails or MMFF has no parameters for an atom.
        fn embed_conformer(mol: &SharedPtr<ROMol>, seed: u32, attempts: u32, mmff: bool, atomic_numbers: &mut Vec<u8>, xyz: &mut Vec<f32>) -> Result<()>;

        /// `RDKit::rdkitVersion`, e.g. "2022.09.3".
        fn rdkit_version() -> String;

        /// From here until [`end_error_capture`] on the same thread, what RDKit writes to its error
        /// log from this thread is kept instead of printed (other threads are unaffected).
        fn begin_error_capture();

        /// Stops capturing on this thread and returns what was captured since
        /// [`begin_error_capture`] (RDKit's lines, with their `[HH:MM:SS] ` stamps).
        fn end_error_capture() -> String;
    }
}
