//! Pure text functions behind search: normalisation (lower-case, diacritics
//! stripped, split into words), the grams stored for fuzzy lookup, and the
//! Damerau-Levenshtein distance used to verify fuzzy candidates.
//!
//! Nothing here touches the database, so ranking rules are tested directly.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Letters that NFKD does not split into base + mark.
fn fold_special(c: char, out: &mut String) -> bool {
    let s = match c {
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        'ø' => "o",
        'ł' => "l",
        'đ' | 'ð' => "d",
        'þ' => "th",
        'ı' => "i",
        _ => return false,
    };
    out.push_str(s);
    true
}

/// Lower-cases, strips diacritics and splits on anything that is not a
/// letter or digit: `"Zürich-Bank  AG"` -> `["zurich", "bank", "ag"]`.
pub fn normalize_words(s: &str) -> Vec<String> {
    let mut folded = String::with_capacity(s.len());
    for c in s.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        for l in c.to_lowercase() {
            if !fold_special(l, &mut folded) {
                folded.push(l);
            }
        }
    }
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The words an entry is found by: the parts of its name (`acme-bank/sales`
/// -> acme, bank, sales), the name's first label written solid
/// (`acmebank`), and the words of its display name. Deduplicated.
pub(crate) fn entry_words(name: &str, display: &str) -> Vec<String> {
    let mut words = normalize_words(name);
    let first = name.split('/').next().unwrap_or(name);
    let solid: String = first.chars().filter(char::is_ascii_alphanumeric).collect();
    if !solid.is_empty() {
        words.push(solid);
    }
    words.extend(normalize_words(display));
    let mut seen = std::collections::HashSet::new();
    words.retain(|w| seen.insert(w.clone()));
    words
}

/// Largest edit distance accepted for a query word of `len` characters.
pub(crate) fn max_distance(len: usize) -> usize {
    match len {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    }
}

/// Trigram keys of a word, padded (`^ac`, `acm`, `cme`, `me$`), each
/// prefixed with `3` so they share a table with deletion keys.
pub(crate) fn trigram_keys(word: &str) -> Vec<String> {
    let chars: Vec<char> = std::iter::once('^')
        .chain(word.chars())
        .chain(std::iter::once('$'))
        .collect();
    let mut keys: Vec<String> = chars
        .windows(3)
        .map(|w| std::iter::once('3').chain(w.iter().copied()).collect())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The word and its one-character deletions, each prefixed with `1`
/// (`acme` -> `1acme 1cme 1ame 1ace 1acm`). Two words within edit distance
/// one (substitution, insertion, deletion or transposition) share a key,
/// which trigrams cannot promise for short words.
pub(crate) fn deletion_keys(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut keys = vec![format!("1{word}")];
    if chars.len() >= 3 {
        for i in 0..chars.len() {
            let v: String = std::iter::once('1')
                .chain(chars[..i].iter().copied())
                .chain(chars[i + 1..].iter().copied())
                .collect();
            keys.push(v);
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// All gram keys stored for a vocabulary word.
pub(crate) fn gram_keys(word: &str) -> Vec<String> {
    let mut k = deletion_keys(word);
    if word.chars().count() >= 5 {
        k.extend(trigram_keys(word));
    }
    k
}

/// Damerau-Levenshtein distance (optimal string alignment) over characters.
pub(crate) fn damerau_levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return n.max(m);
    }
    // three rolling rows: i-2, i-1, i
    let mut prev2 = vec![0usize; m + 1];
    let mut prev: Vec<usize> = (0..=m).collect();
    let mut cur = vec![0usize; m + 1];
    for i in 1..=n {
        cur[0] = i;
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[m]
}

/// The smallest string greater than every string starting with `prefix`,
/// for `x >= prefix AND x < upper` range scans on a text index.
pub(crate) fn prefix_upper_bound(prefix: &str) -> String {
    // U+10FFFF encodes as F4 8F BF BF, above any byte that can follow a
    // valid prefix in UTF-8 except itself, which normalised text never holds.
    format!("{prefix}\u{10FFFF}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Diacritics, case and punctuation do not matter.
    #[test]
    fn normalizes_words() {
        assert_eq!(normalize_words("Zürich-Bank  AG"), ["zurich", "bank", "ag"]);
        assert_eq!(normalize_words("Crédit Agricole"), ["credit", "agricole"]);
        assert_eq!(normalize_words("Straße Øl"), ["strasse", "ol"]);
        assert_eq!(normalize_words("  "), Vec::<String>::new());
        assert_eq!(normalize_words("Москва Банк"), ["москва", "банк"]);
    }

    /// Entry words cover name parts, the solid name and display words once.
    #[test]
    fn entry_words_dedup() {
        assert_eq!(
            entry_words("acme-bank/sales", "Acme Bank Sales"),
            ["acme", "bank", "sales", "acmebank"]
        );
    }

    /// Transpositions cost one edit, like the other typos.
    #[test]
    fn damerau_levenshtein_cases() {
        assert_eq!(damerau_levenshtein("acme", "acme"), 0);
        assert_eq!(damerau_levenshtein("akme", "acme"), 1);
        assert_eq!(damerau_levenshtein("amce", "acme"), 1);
        assert_eq!(damerau_levenshtein("bnk", "bank"), 1);
        assert_eq!(damerau_levenshtein("", "abc"), 3);
        assert_eq!(damerau_levenshtein("kitten", "sitting"), 3);
        assert_eq!(damerau_levenshtein("corporatoin", "corporation"), 1);
    }

    /// Words one edit apart share a deletion key.
    #[test]
    fn deletion_keys_meet() {
        for (a, b) in [
            ("akme", "acme"),
            ("bnk", "bank"),
            ("amce", "acme"),
            ("acmee", "acme"),
        ] {
            let ka = deletion_keys(a);
            let kb = deletion_keys(b);
            assert!(ka.iter().any(|k| kb.contains(k)), "{a} vs {b}");
        }
        assert!(
            !deletion_keys("acme")
                .iter()
                .any(|k| deletion_keys("zeta").contains(k))
        );
    }

    /// The range bound sorts after every extension of the prefix.
    #[test]
    fn prefix_bound_orders() {
        let up = prefix_upper_bound("ac");
        for s in ["ac", "acme", "aczzzz", "ac\u{ffff}"] {
            assert!(s >= "ac" && s < up.as_str(), "{s}");
        }
        assert!("ad" >= up.as_str());
    }
}
