// C++ half of molpeg-chem's RDKit bridge (see src/bridge.rs): what rdkit-sys does not expose.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>

#include <GraphMol/Atom.h>
#include <GraphMol/Bond.h>
#include <GraphMol/ROMol.h>

#include "rust/cxx.h"

// Every bridge function returns Result<T> on the Rust side; this catches *everything* thrown below
// it, including exceptions not derived from std::exception, which cxx's default would let escape
// (and abort the process).
namespace rust::behavior {
template <typename Try, typename Fail>
static void trycatch(Try &&func, Fail &&fail) noexcept try {
  func();
} catch (const std::exception &e) {
  fail(e.what());
} catch (...) {
  fail("unknown C++ exception (not derived from std::exception)");
}
}  // namespace rust::behavior

namespace molpeg {

// RDKit's nested enums under names cxx can bind; cxx checks at compile time that every variant
// declared in src/bridge.rs has the same value here.
using ChiralType = RDKit::Atom::ChiralType;
using HybridizationType = RDKit::Atom::HybridizationType;
using BondType = RDKit::Bond::BondType;
using BondDir = RDKit::Bond::BondDir;
using BondStereo = RDKit::Bond::BondStereo;

struct MolRecord;

void describe_molecule(const std::shared_ptr<RDKit::ROMol> &mol, MolRecord &out);
void morgan_on_bits(const std::shared_ptr<RDKit::ROMol> &mol, std::uint32_t radius, std::uint32_t bits,
                    rust::Vec<std::uint32_t> &on_bits);
void embed_conformer(const std::shared_ptr<RDKit::ROMol> &mol, std::uint32_t seed, std::uint32_t attempts, bool mmff, rust::Vec<std::uint8_t> &atomic_numbers,
                     rust::Vec<float> &xyz);
rust::String rdkit_version();
void begin_error_capture();
rust::String end_error_capture();

}  // namespace molpeg
