//! Atom-level SMILES tokens and the vocabulary a SMILES model stores with its weights.
//!
//! The tokens are those of the regex of Schwaller et al. (2019) that most SMILES language models use,
//! written as a scanner so an unexpected character is an error with its position instead of a silently
//! dropped character: a bracket atom (`[nH]`, `[13CH3-]`, `[C@@H]`) is one token; `Br` and `Cl` are one
//! token each (never `B` + `r`); ring closures are one token per digit or one `%nn` (and RDKit's
//! `%(nnn)`); bonds, branches, `.` and `*` are one token each. The concatenation of the tokens is the
//! input string exactly ([`detokenize`]), so nothing is lost.
//!
//! No hub tokenizer is used (none can be downloaded on an offline machine): the vocabulary is built
//! from the training split ([`Vocabulary::build`]) and travels in the checkpoint's metadata as JSON.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Why a string is not a tokenizable SMILES; `position` is the 0-based character index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizeError {
    pub position: usize,
    pub message: String,
}

impl std::fmt::Display for TokenizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at character {}", self.message, self.position + 1)
    }
}

impl std::error::Error for TokenizeError {}

/// Splits `smiles` into atom-level tokens; every byte belongs to exactly one token.
pub fn tokenize(smiles: &str) -> Result<Vec<&str>, TokenizeError> {
    let bytes = smiles.as_bytes();
    let mut tokens = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let len = match bytes[i] {
            b'[' => match bytes[i + 1..].iter().position(|&b| b == b']' || b == b'[') {
                Some(n) if bytes[i + 1 + n] == b']' && n > 0 => n + 2,
                Some(n) if bytes[i + 1 + n] == b']' => return Err(error(i, "empty bracket atom `[]`")),
                _ => return Err(error(i, "bracket atom `[` is never closed")),
            },
            b'B' if bytes.get(i + 1) == Some(&b'r') => 2,
            b'C' if bytes.get(i + 1) == Some(&b'l') => 2,
            b'B' | b'C' | b'N' | b'O' | b'S' | b'P' | b'F' | b'I' | b'b' | b'c' | b'n' | b'o' | b's' | b'p' | b'*' => 1,
            b'-' | b'=' | b'#' | b'$' | b':' | b'/' | b'\\' | b'~' | b'(' | b')' | b'.' => 1,
            b'0'..=b'9' => 1,
            b'%' => ring_closure_len(bytes, i)?,
            _ => {
                let c = smiles[i..].chars().next().expect("i is a char boundary: every token is ASCII");
                return Err(error(i, &format!("unexpected character `{}` outside a bracket atom", c.escape_default())));
            }
        };
        // Only a bracket atom can span a non-ASCII byte.
        if !bytes[i..i + len].is_ascii() {
            return Err(error(i, "non-ASCII character in a bracket atom"));
        }
        tokens.push(&smiles[i..i + len]);
        i += len;
    }
    Ok(tokens)
}

/// `%nn` (two digits) or `%(n…)` at `i`.
fn ring_closure_len(bytes: &[u8], i: usize) -> Result<usize, TokenizeError> {
    let rest = &bytes[i + 1..];
    if rest.len() >= 2 && rest[0].is_ascii_digit() && rest[1].is_ascii_digit() {
        return Ok(3);
    }
    if rest.first() == Some(&b'(') {
        let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && rest.get(1 + digits) == Some(&b')') {
            return Ok(digits + 3);
        }
    }
    Err(error(i, "`%` must be followed by two digits or `(digits)`"))
}

fn error(position: usize, message: &str) -> TokenizeError {
    TokenizeError { position, message: message.to_string() }
}

/// The inverse of [`tokenize`].
pub fn detokenize<S: AsRef<str>>(tokens: &[S]) -> String {
    tokens.iter().map(AsRef::as_ref).collect()
}

/// Padding (id 0) and unknown-token (id 1) entries of every vocabulary.
pub const PAD: &str = "<pad>";
pub const UNK: &str = "<unk>";
pub const PAD_ID: i64 = 0;
pub const UNK_ID: i64 = 1;

/// Token ↔ id, built from the training split. Ids 0 and 1 are [`PAD`] and [`UNK`]; the rest are the
/// training tokens by falling count, ties by token, so the same split gives the same ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "VocabularyFile", into = "VocabularyFile")]
pub struct Vocabulary {
    tokens: Vec<String>,
    ids: HashMap<String, i64>,
}

/// How a vocabulary is stored: its tokens in id order.
#[derive(Serialize, Deserialize)]
struct VocabularyFile {
    tokens: Vec<String>,
}

/// A stored vocabulary must keep the invariants [`Vocabulary::build`] gives: [`PAD`] and [`UNK`] first,
/// every token once (a duplicate would give one token two ids).
impl TryFrom<VocabularyFile> for Vocabulary {
    type Error = String;

    fn try_from(file: VocabularyFile) -> Result<Self, String> {
        if file.tokens.get(..2) != Some(&[PAD.to_string(), UNK.to_string()][..]) {
            return Err(format!("a SMILES vocabulary must start with {PAD:?} and {UNK:?}"));
        }
        let vocab = Vocabulary::from_tokens(file.tokens);
        if vocab.ids.len() != vocab.tokens.len() {
            return Err("a SMILES vocabulary lists a token twice".to_string());
        }
        Ok(vocab)
    }
}

impl From<Vocabulary> for VocabularyFile {
    fn from(vocab: Vocabulary) -> Self {
        VocabularyFile { tokens: vocab.tokens }
    }
}

/// One SMILES as ids, and what [`Vocabulary::encode`] had to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<i64>,
    /// Tokens not in the vocabulary, mapped to [`UNK_ID`].
    pub unknown: usize,
    /// Tokens cut off beyond the length limit.
    pub truncated: usize,
}

impl Vocabulary {
    /// Tokens of `smiles` (those that tokenize; the caller reports the others) seen at least
    /// `min_count` times.
    pub fn build<'a>(smiles: impl IntoIterator<Item = &'a str>, min_count: usize) -> Vocabulary {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for s in smiles {
            if let Ok(tokens) = tokenize(s) {
                for t in tokens {
                    *counts.entry(t).or_default() += 1;
                }
            }
        }
        Vocabulary::from_counts(counts, min_count)
    }

    /// The vocabulary of `(token, count)` pairs (each token once): tokens seen at least `min_count`
    /// times, by falling count, ties by token.
    pub fn from_counts<'a>(counts: impl IntoIterator<Item = (&'a str, usize)>, min_count: usize) -> Vocabulary {
        let mut ranked: Vec<(&str, usize)> = counts.into_iter().filter(|&(t, n)| n >= min_count.max(1) && t != PAD && t != UNK).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let tokens = [PAD, UNK].into_iter().chain(ranked.into_iter().map(|(t, _)| t)).map(String::from).collect();
        Vocabulary::from_tokens(tokens)
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn id(&self, token: &str) -> Option<i64> {
        self.ids.get(token).copied()
    }

    fn from_tokens(tokens: Vec<String>) -> Vocabulary {
        let ids = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as i64)).collect();
        Vocabulary { tokens, ids }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the vocabulary has no token besides [`PAD`] and [`UNK`].
    pub fn is_empty(&self) -> bool {
        self.tokens.len() <= 2
    }

    pub fn token(&self, id: i64) -> Option<&str> {
        usize::try_from(id).ok().and_then(|i| self.tokens.get(i)).map(String::as_str)
    }

    /// `smiles` as at most `max_len` ids; unknown tokens become [`UNK_ID`].
    pub fn encode(&self, smiles: &str, max_len: usize) -> Result<Encoded, TokenizeError> {
        let tokens = tokenize(smiles)?;
        let truncated = tokens.len().saturating_sub(max_len);
        let mut unknown = 0;
        let ids = tokens[..tokens.len() - truncated]
            .iter()
            .map(|t| {
                self.ids.get(*t).copied().unwrap_or_else(|| {
                    unknown += 1;
                    UNK_ID
                })
            })
            .collect();
        Ok(Encoded { ids, unknown, truncated })
    }

    /// The tokens of `ids` joined (padding skipped, unknown ids shown as [`UNK`]).
    pub fn decode(&self, ids: &[i64]) -> String {
        ids.iter().filter(|&&id| id != PAD_ID).map(|&id| self.token(id).unwrap_or(UNK)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tricky_smiles_tokenize_as_atoms() {
        let cases: &[(&str, &[&str])] = &[
            ("c1cc[nH]c1", &["c", "1", "c", "c", "[nH]", "c", "1"]),
            ("ClCBr", &["Cl", "C", "Br"]),
            ("CCl", &["C", "Cl"]),
            ("BrB", &["Br", "B"]),
            ("C%10CC%10", &["C", "%10", "C", "C", "%10"]),
            ("C%(123)C%(123)", &["C", "%(123)", "C", "%(123)"]),
            ("[NH4+].[Cl-]", &["[NH4+]", ".", "[Cl-]"]),
            ("[13CH3]O", &["[13CH3]", "O"]),
            ("N[C@@H](C)C(=O)O", &["N", "[C@@H]", "(", "C", ")", "C", "(", "=", "O", ")", "O"]),
            ("F/C=C\\F", &["F", "/", "C", "=", "C", "\\", "F"]),
            ("C#N", &["C", "#", "N"]),
            ("*c1ccccc1", &["*", "c", "1", "c", "c", "c", "c", "c", "1"]),
            ("", &[]),
        ];
        for (smiles, expected) in cases {
            let tokens = tokenize(smiles).unwrap();
            assert_eq!(&tokens, expected, "{smiles}");
            assert_eq!(detokenize(&tokens), *smiles);
        }
    }

    #[test]
    fn bad_characters_are_errors_with_positions() {
        let cases = [
            ("CC X", 2, "unexpected character ` `"),
            ("CCX", 2, "unexpected character `X`"),
            ("C[NH4", 1, "never closed"),
            ("C[]", 1, "empty bracket"),
            ("C%1", 1, "`%` must be followed"),
            ("C%(12", 1, "`%` must be followed"),
            ("CÖ", 1, "unexpected character `\\u{d6}`"),
            ("C[Ö]", 1, "non-ASCII"),
        ];
        for (smiles, position, message) in cases {
            let err = tokenize(smiles).unwrap_err();
            assert_eq!(err.position, position, "{smiles}: {err}");
            assert!(err.message.contains(message), "{smiles}: {err}");
        }
    }

    #[test]
    fn vocabulary_is_deterministic_and_round_trips() {
        let train = ["CCO", "c1ccccc1Cl", "CC(=O)O", "C[NH3+]"];
        let vocab = Vocabulary::build(train, 1);
        assert_eq!(vocab.token(PAD_ID), Some(PAD));
        assert_eq!(vocab.token(UNK_ID), Some(UNK));
        // c (6 times) and C (5 times) are the most frequent tokens, so they get the first free ids.
        assert_eq!((vocab.token(2), vocab.token(3)), (Some("c"), Some("C")));
        assert_eq!(Vocabulary::build(train.iter().rev().copied(), 1), vocab);
        let json = serde_json::to_string(&vocab).unwrap();
        let back: Vocabulary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vocab);
        for bad in [r#"{"tokens":["C","<pad>","<unk>"]}"#, r#"{"tokens":["<pad>","<unk>","C","C"]}"#] {
            assert!(serde_json::from_str::<Vocabulary>(bad).is_err(), "{bad}");
        }
        for s in train {
            let e = vocab.encode(s, 510).unwrap();
            assert_eq!((e.unknown, e.truncated), (0, 0));
            assert_eq!(vocab.decode(&e.ids), s);
        }
        let e = vocab.encode("BrCCO", 3).unwrap();
        assert_eq!(e.ids.len(), 3);
        assert_eq!((e.unknown, e.truncated), (1, 1), "Br is unknown; O is cut");
        assert_eq!(vocab.decode(&e.ids), "<unk>CC");
        assert_eq!(Vocabulary::build(train, 5).len(), 4, "only c and C occur 5 times or more");
    }
}
