#!/usr/bin/env python3
"""Python peer of `molpeg-featurize`, for benchmarks: the same job through RDKit's Python bindings.

Modes (each computes per molecule what its name says; only `full` and `fused` do the whole job):
  full   (default) the whole job the way the published code bases do it: OGB's
         ogb.utils.smiles2graph(smiles) for OGB features and edges, Chem.MolFromSmiles + Hu et al.
         2019's atom and bond features, Chem.MolToSmiles, and pretrain-gnns' scaffold call
         MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=True). Each of those
         parses the SMILES again, as in the originals.
  fused  the same outputs from one Chem.MolFromSmiles per molecule: the fastest plain-Python peer.
  ogb    ogb.utils.smiles2graph(smiles) alone.
  parse  Chem.MolFromSmiles alone: the bare RDKit parse cost.

OGB's features come from the ogb package (bench/featurize.sh installs it into the venv).
Reading the CSV is not timed; only the per-molecule loop is, so the peer is measured at its best.
Prints one JSON object: mode, molecules, accepted, seconds, molecules_per_second, rdkit_version.

Example: featurize_peer.py ../shared/datasets/moleculenet/hiv.csv.gz --mode parse
"""

import argparse
import csv
import gzip
import json
import sys
import time

from rdkit import Chem, RDLogger, rdBase
from rdkit.Chem.Scaffolds import MurckoScaffold

# OGB's own featurizer (pip install ogb): the function every OGB/PyG molecule pipeline calls.
from ogb.utils import smiles2graph
from ogb.utils.features import atom_to_feature_vector, bond_to_feature_vector
import ogb

# Hu et al. 2019 (pretrain-gnns loader.py), with the catch-all slot molpeg uses for unlisted values.
_HU_CHIRALITY = {Chem.ChiralType.CHI_UNSPECIFIED: 0, Chem.ChiralType.CHI_TETRAHEDRAL_CW: 1, Chem.ChiralType.CHI_TETRAHEDRAL_CCW: 2}
_HU_BOND_TYPE = {Chem.BondType.SINGLE: 0, Chem.BondType.DOUBLE: 1, Chem.BondType.TRIPLE: 2, Chem.BondType.AROMATIC: 3}
_HU_BOND_DIR = {Chem.BondDir.NONE: 0, Chem.BondDir.ENDUPRIGHT: 1, Chem.BondDir.ENDDOWNRIGHT: 2}


def hu_features(mol):
    atoms = []
    for atom in mol.GetAtoms():
        n = atom.GetAtomicNum()
        atoms.append([n - 1 if 1 <= n <= 118 else 118, _HU_CHIRALITY.get(atom.GetChiralTag(), 3)])
    bonds = []
    for bond in mol.GetBonds():
        hu = [_HU_BOND_TYPE.get(bond.GetBondType(), 4), _HU_BOND_DIR.get(bond.GetBondDir(), 3)]
        bonds += [hu, hu]
    return atoms, bonds


def full(smiles):
    """The whole job with the published functions; None when RDKit rejects the SMILES."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    graph = smiles2graph(smiles)
    atom_hu, bond_hu = hu_features(mol)
    canonical = Chem.MolToSmiles(mol)
    scaffold = MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=True)
    return graph, atom_hu, bond_hu, canonical, scaffold


def featurize(smiles):
    """Everything molpeg-featurize writes for one molecule from one parse, in its column order
    (atom_hu, atom_ogb, edge_index, bond_hu, bond_ogb, canonical_smiles, scaffold), or None when
    RDKit rejects the SMILES."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    atom_hu, bond_hu = hu_features(mol)
    atom_ogb = [atom_to_feature_vector(atom) for atom in mol.GetAtoms()]
    edges, bond_ogb = [], []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        ogb = bond_to_feature_vector(bond)
        edges += [(i, j), (j, i)]
        bond_ogb += [ogb, ogb]
    canonical = Chem.MolToSmiles(mol)
    # MurckoScaffoldSmiles(mol=mol, includeChirality=True) without its re-parse.
    scaffold = Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(mol), True)
    return atom_hu, atom_ogb, edges, bond_hu, bond_ogb, canonical, scaffold


def smiles2graph_only(smiles):
    try:
        return smiles2graph(smiles)
    except AttributeError:  # smiles2graph does not check for unparsable SMILES
        return None


def parse_only(smiles):
    return Chem.MolFromSmiles(smiles)


MODES = {"full": full, "fused": featurize, "ogb": smiles2graph_only, "parse": parse_only}


def read_smiles(path, column, limit):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        reader = csv.DictReader(f)
        if column not in reader.fieldnames:
            sys.exit(f"{path}: no column {column!r}; columns: {', '.join(reader.fieldnames)}")
        out = []
        for row in reader:
            out.append(row[column].strip())
            if limit and len(out) >= limit:
                break
        return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", help="CSV or CSV.gz with a SMILES column")
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--smiles-column", default="smiles")
    parser.add_argument("--limit", type=int, default=0, help="first N rows only")
    args = parser.parse_args()

    RDLogger.DisableLog("rdApp.*")  # HIV has SMILES RDKit rejects; logging them would be timed too.
    smiles = read_smiles(args.csv, args.smiles_column, args.limit)
    work = MODES[args.mode]

    started = time.perf_counter()
    accepted = sum(1 for s in smiles if s and work(s) is not None)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "mode": args.mode,
                "ogb_version": ogb.__version__,
                "molecules": len(smiles),
                "accepted": accepted,
                "seconds": round(seconds, 3),
                "molecules_per_second": round(len(smiles) / seconds, 1),
                "rdkit_version": rdBase.rdkitVersion,
            }
        )
    )


if __name__ == "__main__":
    main()
