// One call per molecule: every raw atom and bond value both featurization schemes need, plus the
// canonical SMILES and the Murcko scaffold, so the per-molecule FFI cost is paid once. Morgan
// fingerprints are a second, opt-in call.
#include "molpeg-chem/include/bridge.h"
#include "molpeg-chem/src/bridge.rs.h"

#include <iostream>
#include <memory>
#include <mutex>
#include <ostream>
#include <stdexcept>
#include <streambuf>
#include <string>

#include <DataStructs/ExplicitBitVect.h>
#include <GraphMol/ChemTransforms/ChemTransforms.h>
#include <GraphMol/DistGeomHelpers/Embedder.h>
#include <GraphMol/ForceFieldHelpers/MMFF/MMFF.h>
#include <GraphMol/Fingerprints/MorganFingerprints.h>
#include <GraphMol/MolOps.h>
#include <GraphMol/RingInfo.h>
#include <GraphMol/SmilesParse/SmilesWrite.h>
#include <RDGeneral/RDLog.h>
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

// RDKit reports why a SMILES did not parse only on its error log (the parser returns a null
// molecule), and that log is one process-wide stream. To give each reject its own message, the
// log's destination is replaced once by an unbuffered stream whose writes go to the writing
// thread's buffer while that thread is inside begin/end_error_capture, and to the previous
// destination (stderr) otherwise. Unbuffered, so no state is shared between threads; RDKit's own
// tee (SetTee) would be shared and is not thread-safe.
thread_local bool capturing = false;
thread_local std::string captured;

class ThreadCaptureBuf : public std::streambuf {
 public:
  explicit ThreadCaptureBuf(std::ostream *previous) : previous_(previous) {}

 protected:
  int_type overflow(int_type ch) override {
    if (traits_type::eq_int_type(ch, traits_type::eof())) {
      return traits_type::not_eof(ch);
    }
    const char c = traits_type::to_char_type(ch);
    xsputn(&c, 1);
    return ch;
  }
  std::streamsize xsputn(const char *s, std::streamsize n) override {
    if (capturing) {
      captured.append(s, static_cast<std::size_t>(n));
    } else if (previous_) {
      previous_->write(s, n);
    }
    return n;
  }
  int sync() override {
    if (!capturing && previous_) {
      previous_->flush();
    }
    return 0;
  }

 private:
  std::ostream *previous_;
};

// Called before the first capture; the first featurizer is made before any worker thread parses.
// A C++ program's logs start off (rdErrorLog null, nothing printed), so the new error log prints
// nothing outside a capture either; a host that set up RDKit's logs keeps its destination.
void install_error_capture() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Both leaked on purpose: RDKit's logger flushes its destination during static destruction.
    std::ostream *previous = rdErrorLog ? rdErrorLog->dp_dest : nullptr;
    auto *stream = new std::ostream(new ThreadCaptureBuf(previous));
    if (rdErrorLog) {
      rdErrorLog->dp_dest = stream;
    } else {
      rdErrorLog = std::make_shared<boost::logging::rdLogger>(stream);
    }
  });
}

}  // namespace

void begin_error_capture() {
  install_error_capture();  // once per process
  captured.clear();
  capturing = true;
}

rust::String end_error_capture() {
  capturing = false;
  rust::String text(captured);
  captured.clear();
  return text;
}

void embed_conformer(const std::shared_ptr<RDKit::ROMol> &mol, std::uint32_t seed, std::uint32_t attempts, bool mmff, rust::Vec<std::uint8_t> &atomic_numbers,
                     rust::Vec<float> &xyz) {
  if (!mol) {
    throw std::invalid_argument("embed_conformer called with a null molecule (a bug in molpeg-chem)");
  }
  RDKit::RWMol with_hs(*mol);
  RDKit::MolOps::addHs(with_hs);
  RDKit::DGeomHelpers::EmbedParameters params = RDKit::DGeomHelpers::ETKDGv3;
  params.randomSeed = static_cast<int>(seed & 0x7fffffff);
  params.numThreads = 1;  // molpeg parallelizes over molecules
  // RDKit's default (0) tries 10 × atoms times: a molecule ETKDG cannot embed (HIV's metal
  // porphyrins) then takes minutes. A bound makes it a reject in bounded time.
  params.maxIterations = attempts;
  int id = RDKit::DGeomHelpers::EmbedMolecule(with_hs, params);
  if (id < 0) {
    // RDKit's advice for molecules the eigenvalue start fails on (large rings, metal complexes).
    params.useRandomCoords = true;
    id = RDKit::DGeomHelpers::EmbedMolecule(with_hs, params);
  }
  if (id < 0) {
    throw std::runtime_error("ETKDG found no conformer (EmbedMolecule returned -1, also from random coordinates)");
  }
  if (mmff) {
    const auto result = RDKit::MMFF::MMFFOptimizeMolecule(with_hs, 200, "MMFF94", 10.0, id);
    if (result.first == -1) {
      throw std::runtime_error("MMFF94 has no parameters for an atom of this molecule");
    }
  }
  const RDKit::Conformer &conformer = with_hs.getConformer(id);
  atomic_numbers.clear();
  xyz.clear();
  atomic_numbers.reserve(with_hs.getNumAtoms());
  xyz.reserve(3 * with_hs.getNumAtoms());
  for (const RDKit::Atom *atom : with_hs.atoms()) {
    atomic_numbers.push_back(static_cast<std::uint8_t>(atom->getAtomicNum()));
    const RDGeom::Point3D &p = conformer.getAtomPos(atom->getIdx());
    xyz.push_back(static_cast<float>(p.x));
    xyz.push_back(static_cast<float>(p.y));
    xyz.push_back(static_cast<float>(p.z));
  }
}

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
