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
/// (`acmebank`, only when it has several parts), and the words of its
/// display name. Deduplicated.
pub(crate) fn entry_words(name: &str, display: &str) -> Vec<String> {
    let mut words = normalize_words(name);
    if let Some(solid) = solid_word(name) {
        words.push(solid);
    }
    words.extend(normalize_words(display));
    let mut seen = std::collections::HashSet::new();
    words.retain(|w| seen.insert(w.clone()));
    words
}

/// The first label of a multi-part name written solid (`acme-bank/x` ->
/// `acmebank`). It is found by exact and prefix search only: giving every
/// such (nearly unique) word fuzzy keys would multiply the fuzzy index.
pub(crate) fn solid_word(name: &str) -> Option<String> {
    let first = name.split('/').next().unwrap_or(name);
    if !first.contains(['-', '.']) {
        return None;
    }
    Some(first.chars().filter(char::is_ascii_alphanumeric).collect())
}

/// Largest edit distance accepted for a query word of `len` characters.
pub(crate) fn max_distance(len: usize) -> usize {
    match len {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    }
}

/// Longest word that gets deletion keys; longer words are only found
/// exactly or by prefix.
const MAX_GRAM_WORD: usize = 24;

/// `word` with the characters at the given (sorted, distinct) indices removed.
fn without(chars: &[char], skip: &[usize]) -> String {
    chars
        .iter()
        .enumerate()
        .filter(|(i, _)| !skip.contains(i))
        .map(|(_, c)| *c)
        .collect()
}

/// Keys stored for a vocabulary word: the word and its one-character
/// deletions (`acme` -> `acme cme ame ace acm`). Two words within edit
/// distance one (substitution, insertion, deletion or transposition) share
/// a key, which trigrams cannot promise for short words.
pub(crate) fn gram_keys(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut keys = vec![word.to_owned()];
    if (3..=MAX_GRAM_WORD).contains(&chars.len()) {
        keys.extend((0..chars.len()).map(|i| without(&chars, &[i])));
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Keys to look up for a query word: the word, its one-character deletions
/// and, when two edits are allowed, its two-character deletions. Matching
/// those against the stored one-deletion keys finds every word one edit
/// away and most words two edits away (all but two substitutions), with
/// exact index lookups instead of long trigram posting lists.
pub(crate) fn query_keys(word: &str, max_distance: usize) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let n = chars.len();
    let mut keys = vec![word.to_owned()];
    if max_distance >= 1 && n >= 3 {
        keys.extend((0..n).map(|i| without(&chars, &[i])));
    }
    if max_distance >= 2 && n >= 4 {
        for i in 0..n {
            for j in i + 1..n {
                keys.push(without(&chars, &[i, j]));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
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

    /// Query keys meet stored keys for words one edit apart, and for
    /// words two edits apart when two are allowed.
    #[test]
    fn deletion_keys_meet() {
        let meet = |q: &str, w: &str, d| query_keys(q, d).iter().any(|k| gram_keys(w).contains(k));
        for (q, w) in [
            ("akme", "acme"),
            ("bnk", "bank"),
            ("amce", "acme"),
            ("acmee", "acme"),
        ] {
            assert!(meet(q, w, 1), "{q} vs {w}");
        }
        assert!(!meet("acme", "zeta", 1));
        assert!(!meet("consolidatde", "consolidated", 0));
        assert!(meet("consolidatde", "consolidated", 2));
        assert!(meet("corportaion", "corporation", 2));
        assert!(meet("corporaton", "corporation", 2));
        assert!(meet("corpoation", "corporation", 2));
    }

    /// Multi-part names get a solid word; single labels do not.
    #[test]
    fn solid_words() {
        assert_eq!(solid_word("acme-bank/sales").as_deref(), Some("acmebank"));
        assert_eq!(solid_word("a.b"), Some("ab".into()));
        assert_eq!(solid_word("acme/sales"), None);
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
