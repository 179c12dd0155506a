//! 3D atoms of a molecule for `atoms3d.parquet`: read from a dataset's geometry columns (QM9's DFT
//! coordinates) or embedded by RDKit (ETKDG, optionally MMFF-relaxed) through the bridge. Every atom
//! is kept, hydrogens included, in the geometry's own order.

use serde::{Deserialize, Serialize};

/// Where a molecule's 3D atoms come from (`[featurize] geometry`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum GeometryMode {
    /// The dataset's geometry columns when `[dataset] geometry` names them, else none.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// No 3D atoms (no `atoms3d.parquet`).
    #[serde(rename = "none")]
    None,
    /// The dataset's geometry columns (an error when it names none).
    #[serde(rename = "dataset")]
    Dataset,
    /// An RDKit conformer: hydrogens added, ETKDGv3 with a fixed seed.
    #[serde(rename = "etkdg")]
    Etkdg,
    /// An ETKDGv3 conformer relaxed with MMFF94 (at most 200 iterations).
    #[serde(rename = "etkdg+mmff")]
    EtkdgMmff,
}

impl GeometryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GeometryMode::Auto => "auto",
            GeometryMode::None => "none",
            GeometryMode::Dataset => "dataset",
            GeometryMode::Etkdg => "etkdg",
            GeometryMode::EtkdgMmff => "etkdg+mmff",
        }
    }

    /// Every mode, for help texts.
    pub const ALL: [GeometryMode; 5] = [GeometryMode::Auto, GeometryMode::None, GeometryMode::Dataset, GeometryMode::Etkdg, GeometryMode::EtkdgMmff];

    /// Whether the conformer is embedded by RDKit.
    pub fn embeds(self) -> bool {
        matches!(self, GeometryMode::Etkdg | GeometryMode::EtkdgMmff)
    }
}

impl std::str::FromStr for GeometryMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        GeometryMode::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            format!("unknown geometry {s:?}; expected one of {}", GeometryMode::ALL.map(|m| m.as_str()).join(", "))
        })
    }
}

/// One molecule's 3D atoms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Geometry {
    pub atomic_numbers: Vec<u8>,
    /// Ångström.
    pub positions: Vec<[f32; 3]>,
}

impl Geometry {
    /// Atoms other than hydrogen: what RDKit's graph (implicit hydrogens) has as atoms.
    pub fn heavy_atoms(&self) -> usize {
        self.atomic_numbers.iter().filter(|&&z| z != 1).count()
    }
}

/// Element symbols by atomic number (index 0 unused).
const SYMBOLS: [&str; 119] = [
    "", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
    "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce",
    "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn",
    "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl",
    "Mc", "Lv", "Ts", "Og",
];

/// The atomic number of an element symbol (`C`, `Cl`; case as written).
pub fn atomic_number(symbol: &str) -> Option<u8> {
    SYMBOLS.iter().position(|s| *s == symbol).filter(|&z| z > 0).map(|z| z as u8)
}

/// Parses a dataset's geometry cells: `elements` a list of symbols (`['C','H','H','H','H']`, quotes
/// optional) and `positions` a list of `[x, y, z]` (`[[-0.01,1.09,0.008],...]`), one per element.
pub fn parse_dataset_geometry(elements: &str, positions: &str) -> Result<Geometry, String> {
    let inner = |cell: &str, what: &str| -> Result<String, String> {
        let t = cell.trim();
        t.strip_prefix('[').and_then(|t| t.strip_suffix(']')).map(str::to_string).ok_or_else(|| format!("{what} cell is not a [...] list: {:?}", abbreviate(cell)))
    };
    let elements = inner(elements, "the elements")?;
    let atomic_numbers = elements
        .split(',')
        .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"'))
        .filter(|s| !s.is_empty())
        .map(|s| atomic_number(s).ok_or_else(|| format!("unknown element symbol {s:?}")))
        .collect::<Result<Vec<u8>, String>>()?;
    if atomic_numbers.is_empty() {
        return Err("the elements list is empty".into());
    }
    let numbers = inner(positions, "the positions")?
        .split([',', '[', ']'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<f32>().map_err(|_| format!("cannot read the coordinate {s:?} as a number")))
        .collect::<Result<Vec<f32>, String>>()?;
    if numbers.len() != 3 * atomic_numbers.len() {
        return Err(format!("{} coordinates for {} atoms (expected 3 per atom)", numbers.len(), atomic_numbers.len()));
    }
    if let Some(bad) = numbers.iter().find(|x| !x.is_finite()) {
        return Err(format!("coordinate {bad} is not finite"));
    }
    let positions = numbers.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    Ok(Geometry { atomic_numbers, positions })
}

fn abbreviate(text: &str) -> String {
    if text.len() <= 60 {
        return text.to_string();
    }
    let cut = (0..=60).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qm9_cells_and_rejects_malformed_ones() {
        let g = parse_dataset_geometry(
            "['C','H','H','H','H']",
            "[[-0.0126981359,1.0858041578,0.0080009958],[0.002150416,-0.0060313176,0.0019761204],[1.0117308433,1.4637511618,0.0002765748],[-0.540815069,1.4475266138,-0.8766437152],[-0.5238136345,1.4379326443,0.9063972942]]",
        )
        .unwrap();
        assert_eq!(g.atomic_numbers, [6, 1, 1, 1, 1]);
        assert_eq!(g.heavy_atoms(), 1);
        assert_eq!(g.positions[2], [1.011_730_8, 1.463_751_2, 0.000_276_574_8]);
        assert_eq!(atomic_number("Cl"), Some(17));
        assert_eq!(atomic_number("Og"), Some(118));
        assert_eq!(atomic_number("X"), None);
        assert!(parse_dataset_geometry("['C','Q']", "[[0,0,0],[1,1,1]]").unwrap_err().contains("\"Q\""));
        assert!(parse_dataset_geometry("['C','H']", "[[0,0,0]]").unwrap_err().contains("3 coordinates for 2 atoms"));
        assert!(parse_dataset_geometry("C,H", "[[0,0,0]]").unwrap_err().contains("not a [...] list"));
        assert!(parse_dataset_geometry("['C']", "[[0,nan,0]]").unwrap_err().contains("not finite"));
        assert!(parse_dataset_geometry("[]", "[]").unwrap_err().contains("empty"));
    }
}
