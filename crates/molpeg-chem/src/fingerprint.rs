//! Morgan fingerprints (Rogers & Hahn 2010; RDKit's `MorganFingerprints::getFingerprintAsBitVect`,
//! the ECFP-like bit vector of Python's `GetMorganFingerprintAsBitVect(mol, radius, nBits)`), packed
//! as `fingerprints.parquet` stores them ([`molpeg_core::schema::fingerprints`]).
//!
//! [`MorganSpec`] is the `[featurize] fingerprint_*` setting; [`Featurizer`](crate::Featurizer)
//! computes the fingerprint from the molecule it already parsed, so writing fingerprints costs one more
//! bridge call per molecule and no second parse.

use serde::{Deserialize, Serialize};

use crate::bridge::ffi::{self, ROMol};

/// Radius and width of a Morgan bit vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MorganSpec {
    /// Bond hops around each atom (2 = ECFP4).
    pub radius: u32,
    /// Bits of the folded vector; a positive multiple of 8 so it packs into whole bytes.
    pub bits: u32,
}

impl Default for MorganSpec {
    fn default() -> Self {
        MorganSpec { radius: 2, bits: 2048 }
    }
}

impl MorganSpec {
    /// Bytes of one packed fingerprint.
    pub fn bytes(&self) -> usize {
        self.bits as usize / 8
    }

    /// Checks `bits` (a positive multiple of 8, at most 2^20) and the radius (at most 10).
    pub fn validate(&self) -> Result<(), String> {
        if self.bits == 0 || self.bits % 8 != 0 || self.bits > 1 << 20 {
            return Err(format!("fingerprint bits must be a positive multiple of 8 up to 1048576, not {}", self.bits));
        }
        if self.radius > 10 {
            return Err(format!("fingerprint radius {} is out of range (0 to 10)", self.radius));
        }
        Ok(())
    }
}

/// Appends the packed fingerprint of `mol` to `out` (`spec.bytes()` bytes, bit i = bit `i % 8` of
/// byte `i / 8`). `on_bits` is a scratch buffer reused between molecules. An RDKit failure (or a null
/// molecule) is an error carrying RDKit's message.
pub(crate) fn append_packed(mol: &cxx::SharedPtr<ROMol>, spec: MorganSpec, on_bits: &mut Vec<u32>, out: &mut Vec<u8>) -> Result<(), String> {
    ffi::morgan_on_bits(mol, spec.radius, spec.bits, on_bits).map_err(|e| e.what().to_string())?;
    let start = out.len();
    out.resize(start + spec.bytes(), 0);
    for &bit in on_bits.iter() {
        out[start + bit as usize / 8] |= 1 << (bit % 8);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cxx::let_cxx_string;
    use molpeg_core::schema::fingerprints::bit;
    use rdkit_sys::ro_mol_ffi::smiles_to_mol;

    fn on_bits(smiles: &str, spec: MorganSpec) -> Vec<u32> {
        let_cxx_string!(s = smiles);
        let mol = smiles_to_mol(&s).unwrap();
        let mut bits = Vec::new();
        ffi::morgan_on_bits(&mol, spec.radius, spec.bits, &mut bits).unwrap();
        bits
    }

    /// Reference values: Python RDKit's `GetMorganFingerprintAsBitVect(mol, 2, nBits=2048).GetOnBits()`
    /// (2026.09; the bits have not changed since the 2022.09 that the bridge links).
    #[test]
    fn morgan_bits_match_python_rdkit() {
        let spec = MorganSpec::default();
        assert_eq!(on_bits("CCO", spec), vec![80, 222, 294, 807, 1057, 1410]);
        assert_eq!(on_bits("c1ccccc1", spec), vec![389, 1088, 1873]);
        assert_eq!(on_bits("C", spec), vec![1264]);
        assert_eq!(on_bits("[Na+].[Cl-]", spec), vec![1213, 1866]);
        assert_eq!(on_bits("CC(=O)Oc1ccccc1C(=O)O", spec).len(), 24, "aspirin");
        assert_eq!(on_bits("CC(C)Cc1ccc(cc1)C(C)C(=O)O", spec).len(), 25, "ibuprofen");
        assert_eq!(on_bits("Cl[C@H](/C=C/C)Br", spec).len(), 14);
        // A smaller radius sees fewer environments: benzene has one atom type at every radius.
        assert_eq!(on_bits("c1ccccc1", MorganSpec { radius: 0, bits: 2048 }).len(), 1);
    }

    #[test]
    fn two_smiles_of_one_molecule_give_one_fingerprint() {
        let spec = MorganSpec::default();
        assert_eq!(on_bits("OCC", spec), on_bits("CCO", spec));
        assert_eq!(on_bits("C1=CC=CC=C1", spec), on_bits("c1ccccc1", spec), "Kekulé and aromatic benzene");
    }

    #[test]
    fn packing_puts_bit_i_at_byte_i_over_8_lsb_first() {
        let_cxx_string!(s = "CCO");
        let mol = smiles_to_mol(&s).unwrap();
        let (mut scratch, mut out) = (Vec::new(), vec![0xAA]);
        append_packed(&mol, MorganSpec::default(), &mut scratch, &mut out).unwrap();
        assert_eq!(out.len(), 1 + 256, "appends one fingerprint after what was there");
        let packed = &out[1..];
        let set: Vec<u32> = (0..2048).filter(|&i| bit(packed, i as usize)).collect();
        assert_eq!(set, vec![80, 222, 294, 807, 1057, 1410]);
        assert_eq!(packed[80 / 8], 1 << (80 % 8));
    }

    #[test]
    fn null_molecule_and_zero_bits_are_errors_not_crashes() {
        let mut bits = vec![7];
        let err = ffi::morgan_on_bits(&cxx::SharedPtr::null(), 2, 2048, &mut bits).unwrap_err();
        assert!(err.what().contains("null molecule"), "{}", err.what());
        let mut out = Vec::new();
        let err = append_packed(&cxx::SharedPtr::null(), MorganSpec::default(), &mut bits, &mut out).unwrap_err();
        assert!(err.contains("null molecule") && out.is_empty(), "{err}");
        let_cxx_string!(s = "CCO");
        let mol = smiles_to_mol(&s).unwrap();
        assert!(ffi::morgan_on_bits(&mol, 2, 0, &mut bits).unwrap_err().what().contains("at least one bit"));
    }

    #[test]
    fn spec_validation() {
        assert_eq!(MorganSpec::default(), MorganSpec { radius: 2, bits: 2048 });
        assert_eq!(MorganSpec::default().bytes(), 256);
        assert!(MorganSpec::default().validate().is_ok());
        for bits in [0, 12, 1 << 21] {
            assert!(MorganSpec { radius: 2, bits }.validate().unwrap_err().contains("multiple of 8"), "{bits}");
        }
        assert!(MorganSpec { radius: 11, bits: 64 }.validate().is_err());
    }
}
