// One call per molecule: every raw atom and bond value both featurization schemes need, plus the
// canonical SMILES and the Murcko scaffold, so the per-molecule FFI cost is paid once. Morgan
// fingerprints are a second, opt-in call.
#include "molpeg-chem/include/bridge.h"
#include "molpeg-chem/src/bridge.rs.h"

#include <memory>
#include <stdexcept>
#include <string>

#include <DataStructs/ExplicitBitVect.h>
#include <GraphMol/ChemTransforms/ChemTransforms.h>
#include <GraphMol/Fingerprints/MorganFingerprints.h>
#include <GraphMol/MolOps.h>
#include <GraphMol/RingInfo.h>
#include <GraphMol/SmilesParse/SmilesWrite.h>
#include <RDGeneral/versions.h>

namespace molpeg {

namespace {

// The same steps as Python's
// rdkit.Chem.Scaffolds.MurckoScaffold.MurckoScaffoldSmiles(smiles=..., includeChirality=True):
// GetScaffoldForMol (MurckoDecompose, ClearComputedProps, UpdatePropertyCache, GetSymmSSSR), then
// MolToSmiles(scaffold, isomericSmiles=True). An acyclic molecule gives an empty molecule and "".
std::string murcko_scaffold_smiles(const RDKit::ROMol &mol) {
  std::unique_ptr<RDKit::ROMol> scaffold(RDKit::MurckoDecompose(mol));
  if (!scaffold) {
    throw std::runtime_error("MurckoDecompose returned no molecule");
  }
  scaffold->clearComputedProps();
  scaffold->updatePropertyCache(true);
  RDKit::MolOps::symmetrizeSSSR(*scaffold);
  return RDKit::MolToSmiles(*scaffold, true);
}

}  // namespace

void describe_molecule(const std::shared_ptr<RDKit::ROMol> &mol, MolRecord &out) {
  if (!mol) {
    throw std::invalid_argument("describe_molecule called with a null molecule (a bug in molpeg-chem)");
  }
  RDKit::ROMol &m = *mol;
  // Python's Atom.IsInRing() computes the SSSR when it is missing; sanitized molecules already have it.
  if (!m.getRingInfo()->isInitialized()) {
    RDKit::MolOps::findSSSR(m);
  }
  const RDKit::RingInfo *rings = m.getRingInfo();

  bool has_ring = false;
  out.atoms.clear();
  out.atoms.reserve(m.getNumAtoms());
  for (const RDKit::Atom *atom : m.atoms()) {
    const bool in_ring = rings->numAtomRings(atom->getIdx()) != 0;
    has_ring |= in_ring;
    out.atoms.push_back(AtomRecord{
        atom->getAtomicNum(),
        atom->getChiralTag(),
        atom->getTotalDegree(),
        atom->getFormalCharge(),
        atom->getTotalNumHs(),
        atom->getNumRadicalElectrons(),
        atom->getHybridization(),
        atom->getIsAromatic(),
        in_ring,
    });
  }

  out.bonds.clear();
  out.bonds.reserve(m.getNumBonds());
  for (const RDKit::Bond *bond : m.bonds()) {
    out.bonds.push_back(BondRecord{
        bond->getBeginAtomIdx(),
        bond->getEndAtomIdx(),
        bond->getBondType(),
        bond->getBondDir(),
        bond->getStereo(),
        bond->getIsConjugated(),
    });
  }

  out.canonical_smiles = rust::String(RDKit::MolToSmiles(m));
  // MurckoDecompose keeps ring atoms, linkers between rings and atoms double-bonded to those; with
  // no ring atom it keeps nothing, so skip it (it costs more than parsing).
  out.scaffold = has_ring ? rust::String(murcko_scaffold_smiles(m)) : rust::String();
}

void morgan_on_bits(const std::shared_ptr<RDKit::ROMol> &mol, std::uint32_t radius, std::uint32_t bits,
                    rust::Vec<std::uint32_t> &on_bits) {
  if (!mol) {
    throw std::invalid_argument("morgan_on_bits called with a null molecule (a bug in molpeg-chem)");
  }
  if (bits == 0) {
    throw std::invalid_argument("a Morgan fingerprint needs at least one bit");
  }
  std::unique_ptr<ExplicitBitVect> fingerprint(RDKit::MorganFingerprints::getFingerprintAsBitVect(*mol, radius, bits));
  if (!fingerprint) {
    throw std::runtime_error("getFingerprintAsBitVect returned no fingerprint");
  }
  std::vector<int> on;
  fingerprint->getOnBits(on);  // ascending
  on_bits.clear();
  on_bits.reserve(on.size());
  for (int bit : on) {
    on_bits.push_back(static_cast<std::uint32_t>(bit));
  }
}

rust::String rdkit_version() { return rust::String(RDKit::rdkitVersion); }

}  // namespace molpeg
