//! The two featurization schemes as pure functions of RDKit's raw atom and bond values
//! ([`AtomRecord`], [`BondRecord`]):
//!
//! - [`hu`]: Hu et al. 2019 ("Strategies for Pre-training Graph Neural Networks", `pretrain-gnns`
//!   `loader.py`): atom = (atomic number, chirality tag), bond = (bond type, bond direction).
//! - [`ogb`]: OGB's `ogb.utils.features` (`smiles2graph`): 9 atom and 3 bond features.
//!
//! Vocabularies and index values follow those two code bases exactly. Where the original code raises
//! on an unlisted value (Hu's `list.index`, OGB's chirality and stereo), we use the scheme's last
//! ("other"/"misc") slot instead and count it in [`OtherCounts`], so the stage summary can report how
//! often it happened.

use serde::Serialize;

/// RDKit's raw atom and bond values and its enums, as our bridge returns them.
pub use crate::bridge::ffi::{AtomRecord, BondDir, BondRecord, BondStereo, BondType, ChiralType, HybridizationType};

/// A feature whose value fell outside its vocabulary and went to the "other"/"misc" slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum OtherSlot {
    HuAtomicNum,
    HuChirality,
    HuBondType,
    HuBondDir,
    OgbAtomicNum,
    OgbChirality,
    OgbDegree,
    OgbFormalCharge,
    OgbNumHs,
    OgbRadicalElectrons,
    OgbHybridization,
    OgbBondType,
    OgbBondStereo,
}

impl OtherSlot {
    pub const ALL: [OtherSlot; 13] = [
        OtherSlot::HuAtomicNum,
        OtherSlot::HuChirality,
        OtherSlot::HuBondType,
        OtherSlot::HuBondDir,
        OtherSlot::OgbAtomicNum,
        OtherSlot::OgbChirality,
        OtherSlot::OgbDegree,
        OtherSlot::OgbFormalCharge,
        OtherSlot::OgbNumHs,
        OtherSlot::OgbRadicalElectrons,
        OtherSlot::OgbHybridization,
        OtherSlot::OgbBondType,
        OtherSlot::OgbBondStereo,
    ];

    /// `column.feature`, as in the graph Parquet file.
    pub fn name(self) -> &'static str {
        match self {
            OtherSlot::HuAtomicNum => "atom_hu.atomic_num",
            OtherSlot::HuChirality => "atom_hu.chirality",
            OtherSlot::HuBondType => "bond_hu.bond_type",
            OtherSlot::HuBondDir => "bond_hu.bond_dir",
            OtherSlot::OgbAtomicNum => "atom_ogb.atomic_num",
            OtherSlot::OgbChirality => "atom_ogb.chirality",
            OtherSlot::OgbDegree => "atom_ogb.degree",
            OtherSlot::OgbFormalCharge => "atom_ogb.formal_charge",
            OtherSlot::OgbNumHs => "atom_ogb.num_hs",
            OtherSlot::OgbRadicalElectrons => "atom_ogb.radical_electrons",
            OtherSlot::OgbHybridization => "atom_ogb.hybridization",
            OtherSlot::OgbBondType => "bond_ogb.bond_type",
            OtherSlot::OgbBondStereo => "bond_ogb.stereo",
        }
    }
}

/// How many atoms (or bonds, counted once per bond, not per direction) used each "other" slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtherCounts([u64; OtherSlot::ALL.len()]);

impl OtherCounts {
    pub fn get(&self, slot: OtherSlot) -> u64 {
        self.0[slot as usize]
    }

    pub fn add(&mut self, other: &OtherCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&n| n == 0)
    }

    /// Slots used at least once, with their counts.
    pub fn nonzero(&self) -> impl Iterator<Item = (OtherSlot, u64)> + '_ {
        OtherSlot::ALL.into_iter().map(|slot| (slot, self.get(slot))).filter(|&(_, n)| n > 0)
    }

    fn record(&mut self, slot: OtherSlot) {
        self.0[slot as usize] += 1;
    }

    /// `index` when the value is in the vocabulary, else `other_index` (counted against `slot`).
    fn index_or_other(&mut self, index: Option<u8>, other_index: u8, slot: OtherSlot) -> u8 {
        index.unwrap_or_else(|| {
            self.record(slot);
            other_index
        })
    }
}

/// Position of `value` in the contiguous vocabulary `first..=last`.
fn range_index(value: i64, first: i64, last: i64) -> Option<u8> {
    (first..=last).contains(&value).then(|| (value - first) as u8)
}

/// Atomic numbers 1..=118 map to 0..=117 in both schemes.
fn atomic_num_index(atomic_num: i32) -> Option<u8> {
    range_index(atomic_num.into(), 1, 118)
}

/// `[CHI_UNSPECIFIED, CHI_TETRAHEDRAL_CW, CHI_TETRAHEDRAL_CCW, CHI_OTHER]` in both schemes.
fn chirality_index(tag: ChiralType) -> Option<u8> {
    match tag {
        ChiralType::CHI_UNSPECIFIED => Some(0),
        ChiralType::CHI_TETRAHEDRAL_CW => Some(1),
        ChiralType::CHI_TETRAHEDRAL_CCW => Some(2),
        ChiralType::CHI_OTHER => Some(3),
        _ => None,
    }
}

/// `[SINGLE, DOUBLE, TRIPLE, AROMATIC]` in both schemes.
fn bond_type_index(bond_type: BondType) -> Option<u8> {
    match bond_type {
        BondType::SINGLE => Some(0),
        BondType::DOUBLE => Some(1),
        BondType::TRIPLE => Some(2),
        BondType::AROMATIC => Some(3),
        _ => None,
    }
}

/// Hu et al. 2019: `num_atom_type = 119` (118 elements + "other"), `num_chirality_tag = 4`,
/// `num_bond_type = 5`, `num_bond_direction = 4` including the "other" slots.
pub mod hu {
    use super::*;

    pub const ATOMIC_NUM_OTHER: u8 = 118;
    pub const CHIRALITY_OTHER: u8 = 3;
    pub const BOND_TYPE_OTHER: u8 = 4;
    pub const BOND_DIR_OTHER: u8 = 3;

    /// `[atomic number - 1, chirality tag]`.
    pub fn atom(atom: &AtomRecord, other: &mut OtherCounts) -> [u8; 2] {
        // Hu's list holds CHI_OTHER itself at index 3; it is the catch-all slot here too, so count it.
        let chirality = chirality_index(atom.chiral_tag).filter(|&i| i != CHIRALITY_OTHER);
        [
            other.index_or_other(atomic_num_index(atom.atomic_num), ATOMIC_NUM_OTHER, OtherSlot::HuAtomicNum),
            other.index_or_other(chirality, CHIRALITY_OTHER, OtherSlot::HuChirality),
        ]
    }

    /// `[bond type, bond direction]`; directions are `[NONE, ENDUPRIGHT, ENDDOWNRIGHT]`.
    pub fn bond(bond: &BondRecord, other: &mut OtherCounts) -> [u8; 2] {
        let direction = match bond.direction {
            BondDir::NONE => Some(0),
            BondDir::ENDUPRIGHT => Some(1),
            BondDir::ENDDOWNRIGHT => Some(2),
            _ => None,
        };
        [
            other.index_or_other(bond_type_index(bond.bond_type), BOND_TYPE_OTHER, OtherSlot::HuBondType),
            other.index_or_other(direction, BOND_DIR_OTHER, OtherSlot::HuBondDir),
        ]
    }
}

/// OGB `ogb.utils.features`; `get_atom_feature_dims()` = `[119, 5, 12, 12, 10, 6, 6, 2, 2]`,
/// `get_bond_feature_dims()` = `[5, 6, 2]`.
pub mod ogb {
    use super::*;

    pub const ATOM_FEATURE_DIMS: [usize; 9] = [119, 5, 12, 12, 10, 6, 6, 2, 2];
    pub const BOND_FEATURE_DIMS: [usize; 3] = [5, 6, 2];

    /// The misc slot of each feature is its last index.
    const fn misc(feature_dim: usize) -> u8 {
        (feature_dim - 1) as u8
    }

    /// `[atomic_num, chirality, degree, formal_charge, num_hs, radical_electrons, hybridization,
    /// is_aromatic, is_in_ring]`.
    pub fn atom(atom: &AtomRecord, other: &mut OtherCounts) -> [u8; 9] {
        let [atomic_num, chirality, degree, charge, num_hs, radicals, hybridization, ..] = ATOM_FEATURE_DIMS.map(misc);
        let hybridization_index = match atom.hybridization {
            HybridizationType::SP => Some(0),
            HybridizationType::SP2 => Some(1),
            HybridizationType::SP3 => Some(2),
            HybridizationType::SP3D => Some(3),
            HybridizationType::SP3D2 => Some(4),
            _ => None,
        };
        [
            other.index_or_other(atomic_num_index(atom.atomic_num), atomic_num, OtherSlot::OgbAtomicNum),
            other.index_or_other(chirality_index(atom.chiral_tag), chirality, OtherSlot::OgbChirality),
            other.index_or_other(range_index(atom.total_degree.into(), 0, 10), degree, OtherSlot::OgbDegree),
            other.index_or_other(range_index(atom.formal_charge.into(), -5, 5), charge, OtherSlot::OgbFormalCharge),
            other.index_or_other(range_index(atom.total_num_hs.into(), 0, 8), num_hs, OtherSlot::OgbNumHs),
            other.index_or_other(range_index(atom.radical_electrons.into(), 0, 4), radicals, OtherSlot::OgbRadicalElectrons),
            other.index_or_other(hybridization_index, hybridization, OtherSlot::OgbHybridization),
            atom.is_aromatic.into(),
            atom.is_in_ring.into(),
        ]
    }

    /// `[bond_type, stereo, is_conjugated]`; stereo is
    /// `[STEREONONE, STEREOZ, STEREOE, STEREOCIS, STEREOTRANS, STEREOANY]`.
    pub fn bond(bond: &BondRecord, other: &mut OtherCounts) -> [u8; 3] {
        let stereo = match bond.stereo {
            BondStereo::STEREONONE => Some(0),
            BondStereo::STEREOZ => Some(1),
            BondStereo::STEREOE => Some(2),
            BondStereo::STEREOCIS => Some(3),
            BondStereo::STEREOTRANS => Some(4),
            BondStereo::STEREOANY => Some(5),
            _ => None,
        };
        // OGB's stereo list has no misc entry; a stereo kind newer than RDKit 2022.09 (atropisomers)
        // becomes STEREOANY, "stereo present but not one of the listed kinds".
        const STEREO_ANY: u8 = 5;
        [
            other.index_or_other(bond_type_index(bond.bond_type), misc(BOND_FEATURE_DIMS[0]), OtherSlot::OgbBondType),
            other.index_or_other(stereo, STEREO_ANY, OtherSlot::OgbBondStereo),
            bond.is_conjugated.into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carbon() -> AtomRecord {
        AtomRecord {
            atomic_num: 6,
            chiral_tag: ChiralType::CHI_UNSPECIFIED,
            total_degree: 4,
            formal_charge: 0,
            total_num_hs: 3,
            radical_electrons: 0,
            hybridization: HybridizationType::SP3,
            is_aromatic: false,
            is_in_ring: false,
        }
    }

    fn single_bond() -> BondRecord {
        BondRecord {
            begin_atom: 0,
            end_atom: 1,
            bond_type: BondType::SINGLE,
            direction: BondDir::NONE,
            stereo: BondStereo::STEREONONE,
            is_conjugated: false,
        }
    }

    #[test]
    fn methyl_carbon_in_both_schemes() {
        let mut other = OtherCounts::default();
        assert_eq!(hu::atom(&carbon(), &mut other), [5, 0]);
        assert_eq!(ogb::atom(&carbon(), &mut other), [5, 0, 4, 5, 3, 0, 2, 0, 0]);
        assert!(other.is_empty());
    }

    #[test]
    fn out_of_vocabulary_atom_values_go_to_the_last_slot_and_are_counted() {
        let dummy = AtomRecord {
            atomic_num: 0,
            chiral_tag: ChiralType { repr: 8 }, // CHI_OCTAHEDRAL
            total_degree: 11,
            formal_charge: -6,
            total_num_hs: 9,
            radical_electrons: 5,
            hybridization: HybridizationType::S,
            ..carbon()
        };
        let mut other = OtherCounts::default();
        assert_eq!(hu::atom(&dummy, &mut other), [118, 3]);
        assert_eq!(ogb::atom(&dummy, &mut other), [118, 4, 11, 11, 9, 5, 5, 0, 0]);
        assert_eq!(other.nonzero().count(), 9);
        assert_eq!(other.get(OtherSlot::OgbHybridization), 1);
    }

    #[test]
    fn chi_other_is_a_real_ogb_value_but_hu_counts_it_as_other() {
        let atom = AtomRecord { chiral_tag: ChiralType::CHI_OTHER, ..carbon() };
        let mut other = OtherCounts::default();
        assert_eq!(hu::atom(&atom, &mut other)[1], 3);
        assert_eq!(ogb::atom(&atom, &mut other)[1], 3);
        assert_eq!(other.nonzero().collect::<Vec<_>>(), vec![(OtherSlot::HuChirality, 1)]);
    }

    #[test]
    fn formal_charge_range_and_ogb_dims() {
        let mut other = OtherCounts::default();
        for (charge, index) in [(-5, 0), (0, 5), (5, 10), (6, 11)] {
            assert_eq!(ogb::atom(&AtomRecord { formal_charge: charge, ..carbon() }, &mut other)[3], index);
        }
        assert_eq!(other.get(OtherSlot::OgbFormalCharge), 1);
        // Every index produced fits the published feature dimensions.
        assert!(ogb::atom(&carbon(), &mut other).iter().zip(ogb::ATOM_FEATURE_DIMS).all(|(&i, dim)| (i as usize) < dim));
    }

    #[test]
    fn bonds_in_both_schemes() {
        let mut other = OtherCounts::default();
        let trans = BondRecord { bond_type: BondType::DOUBLE, stereo: BondStereo::STEREOE, is_conjugated: true, ..single_bond() };
        assert_eq!(hu::bond(&trans, &mut other), [1, 0]);
        assert_eq!(ogb::bond(&trans, &mut other), [1, 2, 1]);
        let directed = BondRecord { direction: BondDir::ENDDOWNRIGHT, ..single_bond() };
        assert_eq!(hu::bond(&directed, &mut other), [0, 2]);
        assert!(other.is_empty());

        let dative = BondRecord { bond_type: BondType::DATIVE, direction: BondDir { repr: 1 }, ..single_bond() }; // BEGINWEDGE
        assert_eq!(hu::bond(&dative, &mut other), [4, 3]);
        assert_eq!(ogb::bond(&dative, &mut other), [4, 0, 0]);
        assert_eq!(
            other.nonzero().collect::<Vec<_>>(),
            vec![(OtherSlot::HuBondType, 1), (OtherSlot::HuBondDir, 1), (OtherSlot::OgbBondType, 1)]
        );
    }
}
