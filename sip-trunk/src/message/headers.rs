//! The header list of a SIP message: ordered `(name, value)` pairs with
//! canonical names, plus typed accessors parsed on demand.
//!
//! Names are canonicalised once when a header is stored (compact forms such as
//! `v` become `Via`, `cALL-id` becomes `Call-ID`), so lookups compare one
//! canonical spelling case-insensitively and serialisation writes the long form.
//! Values are kept as received after line unfolding; typed views (`Via`,
//! `NameAddr`, `CSeq`) are built only when asked for.

use std::borrow::Cow;
use std::fmt;

use super::typed::{CSeq, NameAddr, SplitList, Via, split_list};

/// What is wrong with a header when a typed accessor reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A mandatory header is absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header that must appear once appears more than once.
    #[error("duplicate {0} header")]
    Duplicate(&'static str),
    /// The header value does not match its grammar.
    #[error("malformed {name} header: {reason}")]
    Invalid {
        /// Canonical header name.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Canonical names of the headers this crate reads or writes.
pub mod names {
    /// `Via` (compact `v`).
    pub const VIA: &str = "Via";
    /// `From` (compact `f`).
    pub const FROM: &str = "From";
    /// `To` (compact `t`).
    pub const TO: &str = "To";
    /// `Call-ID` (compact `i`).
    pub const CALL_ID: &str = "Call-ID";
    /// `CSeq`.
    pub const CSEQ: &str = "CSeq";
    /// `Contact` (compact `m`).
    pub const CONTACT: &str = "Contact";
    /// `Max-Forwards`.
    pub const MAX_FORWARDS: &str = "Max-Forwards";
    /// `Content-Length` (compact `l`).
    pub const CONTENT_LENGTH: &str = "Content-Length";
    /// `Content-Type` (compact `c`).
    pub const CONTENT_TYPE: &str = "Content-Type";
    /// `Route`.
    pub const ROUTE: &str = "Route";
    /// `Record-Route`.
    pub const RECORD_ROUTE: &str = "Record-Route";
    /// `Expires`.
    pub const EXPIRES: &str = "Expires";
}

/// Known header names in canonical spelling; compact forms map onto these.
/// [`HeaderName::known`] holds the same names bucketed by length; a test
/// checks the two agree.
#[cfg(test)]
const KNOWN: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Route",
    "Record-Route",
    "Expires",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-Info",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Date",
    "Error-Info",
    "Event",
    "In-Reply-To",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "Path",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "RSeq",
    "Reason",
    "Refer-To",
    "Referred-By",
    "Reply-To",
    "Require",
    "Retry-After",
    "Server",
    "Service-Route",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "Unsupported",
    "User-Agent",
    "WWW-Authenticate",
    "Warning",
];

fn compact(c: u8) -> Option<&'static str> {
    Some(match c.to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'o' => "Event",
        b'u' => "Allow-Events",
        b'r' => "Refer-To",
        b'x' => "Session-Expires",
        b'b' => "Referred-By",
        _ => return None,
    })
}

/// A header name in canonical form; compares case-insensitively.
#[derive(Debug, Clone, Eq)]
pub struct HeaderName(Cow<'static, str>);

impl HeaderName {
    /// Canonicalises a name: compact forms expand, known names take their RFC
    /// spelling, unknown names are kept as given.
    pub fn new(name: &str) -> HeaderName {
        if let Some(k) = Self::known(name) {
            return HeaderName(Cow::Borrowed(k));
        }
        HeaderName(Cow::Owned(name.to_string()))
    }

    /// The canonical static spelling if the name is known or compact.
    pub fn known(name: &str) -> Option<&'static str> {
        let b = name.as_bytes();
        if b.len() == 1 {
            return compact(b[0]);
        }
        // Keyed by length, first and last letter: at most one full
        // case-insensitive compare per lookup (two for Refer-To/Reply-To);
        // this runs for every header line of every message. Must list every
        // KNOWN name (checked by a test).
        let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
            return None;
        };
        let candidates: &[&'static str] = match (b.len(), first | 0x20, last | 0x20) {
            (2, b't', b'o') => &["To"],
            (3, b'v', b'a') => &["Via"],
            (4, b'c', b'q') => &["CSeq"],
            (4, b'd', b'e') => &["Date"],
            (4, b'f', b'm') => &["From"],
            (4, b'p', b'h') => &["Path"],
            (4, b'r', b'k') => &["RAck"],
            (4, b'r', b'q') => &["RSeq"],
            (5, b'a', b'w') => &["Allow"],
            (5, b'e', b't') => &["Event"],
            (5, b'r', b'e') => &["Route"],
            (6, b'a', b't') => &["Accept"],
            (6, b'm', b'e') => &["Min-SE"],
            (6, b'r', b'n') => &["Reason"],
            (6, b's', b'r') => &["Server"],
            (7, b'c', b'd') => &["Call-ID"],
            (7, b'c', b't') => &["Contact"],
            (7, b'e', b's') => &["Expires"],
            (7, b'r', b'e') => &["Require"],
            (7, b's', b't') => &["Subject"],
            (7, b'w', b'g') => &["Warning"],
            (8, b'p', b'y') => &["Priority"],
            (8, b'r', b'o') => &["Refer-To", "Reply-To"],
            (9, b'c', b'o') => &["Call-Info"],
            (9, b's', b'd') => &["Supported"],
            (9, b't', b'p') => &["Timestamp"],
            (10, b'a', b'o') => &["Alert-Info"],
            (10, b'e', b'o') => &["Error-Info"],
            (10, b'u', b't') => &["User-Agent"],
            (11, b'i', b'o') => &["In-Reply-To"],
            (11, b'm', b's') => &["Min-Expires"],
            (11, b'r', b'r') => &["Retry-After"],
            (11, b'r', b'y') => &["Referred-By"],
            (11, b'u', b'd') => &["Unsupported"],
            (12, b'a', b's') => &["Allow-Events"],
            (12, b'c', b'e') => &["Content-Type"],
            (12, b'm', b'n') => &["MIME-Version"],
            (12, b'm', b's') => &["Max-Forwards"],
            (12, b'o', b'n') => &["Organization"],
            (12, b'r', b'e') => &["Record-Route"],
            (13, b'a', b'n') => &["Authorization"],
            (13, b'p', b'e') => &["Proxy-Require"],
            (13, b's', b'e') => &["Service-Route"],
            (14, b'c', b'h') => &["Content-Length"],
            (15, b'a', b'e') => &["Accept-Language"],
            (15, b'a', b'g') => &["Accept-Encoding"],
            (15, b's', b's') => &["Session-Expires"],
            (16, b'c', b'e') => &["Content-Language"],
            (16, b'c', b'g') => &["Content-Encoding"],
            (16, b'w', b'e') => &["WWW-Authenticate"],
            (18, b'p', b'e') => &["Proxy-Authenticate"],
            (18, b's', b'e') => &["Subscription-State"],
            (19, b'a', b'o') => &["Authentication-Info"],
            (19, b'c', b'n') => &["Content-Disposition"],
            (19, b'p', b'n') => &["Proxy-Authorization"],
            _ => return None,
        };
        // Most peers write the canonical spelling: try an exact compare first.
        candidates
            .iter()
            .find(|k| **k == name || k.eq_ignore_ascii_case(name))
            .copied()
    }

    /// The canonical spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Ordered header fields of one message.
///
/// All values live back to back in one string and entries hold ranges into
/// it: parsing a message allocates once for its header text instead of once
/// per header line. Replaced values leave their old text behind until the
/// message is dropped, which is fine for messages of at most 64 KiB.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    buf: String,
    entries: Vec<(HeaderName, usize, usize)>,
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl Eq for Headers {}

fn canonical_query(name: &str) -> Cow<'_, str> {
    match HeaderName::known(name) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Borrowed(name),
    }
}

impl Headers {
    /// An empty list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// An empty list with room for `n` headers.
    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            buf: String::new(),
            entries: Vec::with_capacity(n),
        }
    }

    pub(crate) fn reserve_text(&mut self, bytes: usize) {
        self.buf.reserve(bytes);
    }

    fn append(&mut self, v: &str) -> (usize, usize) {
        let start = self.buf.len();
        self.buf.push_str(v);
        (start, self.buf.len())
    }

    fn value(&self, start: usize, end: usize) -> &str {
        &self.buf[start..end]
    }

    /// Appends a header at the end.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        let (s, e) = self.append(&value.into());
        self.entries.push((HeaderName::new(name), s, e));
    }

    pub(crate) fn push_named(&mut self, name: HeaderName, value: &str) {
        let (s, e) = self.append(value);
        self.entries.push((name, s, e));
    }

    /// Adds text to the value of the last header (folded continuation lines).
    pub(crate) fn extend_last(&mut self, more: &str) {
        let Some(&(_, s, e)) = self.entries.last() else {
            return;
        };
        if e != self.buf.len() {
            // Not at the end of the buffer: copy the value there first.
            let v = self.buf[s..e].to_string();
            let (ns, _) = self.append(&v);
            if let Some(last) = self.entries.last_mut() {
                last.1 = ns;
            }
        }
        self.buf.push_str(more);
        let end = self.buf.len();
        if let Some(last) = self.entries.last_mut() {
            last.2 = end;
        }
    }

    /// The value of the last header, if any.
    pub(crate) fn last_value(&self) -> Option<&str> {
        self.entries.last().map(|&(_, s, e)| self.value(s, e))
    }

    /// Inserts a header before all others (used to add a `Via`).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        let (s, e) = self.append(&value.into());
        self.entries.insert(0, (HeaderName::new(name), s, e));
    }

    /// The first value of a header.
    pub fn get(&self, name: &str) -> Option<&str> {
        let q = canonical_query(name);
        self.entries
            .iter()
            .find(|(n, _, _)| n.0.eq_ignore_ascii_case(&q))
            .map(|&(_, s, e)| self.value(s, e))
    }

    /// All values of a header, one per header line, in order.
    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        let q = canonical_query(name);
        self.entries
            .iter()
            .filter(move |(n, _, _)| n.0.eq_ignore_ascii_case(&q))
            .map(|&(_, s, e)| &self.buf[s..e])
    }

    /// How many header lines carry this name.
    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).count()
    }

    /// True when at least one header has this name.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Removes every header with this name; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let q = canonical_query(name).into_owned();
        let before = self.entries.len();
        self.entries
            .retain(|(n, _, _)| !n.0.eq_ignore_ascii_case(&q));
        before - self.entries.len()
    }

    /// Replaces all headers of this name by one value, at the first one's place.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let hn = HeaderName::new(name);
        let (s, e) = self.append(&value.into());
        match self.entries.iter().position(|(n, _, _)| *n == hn) {
            Some(pos) => {
                self.entries[pos].1 = s;
                self.entries[pos].2 = e;
                let mut i = 0;
                self.entries.retain(|(n, _, _)| {
                    let keep = i <= pos || *n != hn;
                    i += 1;
                    keep
                });
            }
            None => self.entries.push((hn, s, e)),
        }
    }

    /// Iterates over `(name, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &str)> {
        self.entries.iter().map(|(n, s, e)| (n, &self.buf[*s..*e]))
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Values of a header given by its canonical static name: stored known
    /// names are exactly that string, so no case folding is needed.
    fn canonical_all<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _, _)| n.0 == name)
            .map(|&(_, s, e)| &self.buf[s..e])
    }

    fn single(&self, name: &'static str) -> Result<Option<&str>, HeaderError> {
        let mut it = self.canonical_all(name);
        let first = it.next();
        if first.is_some() && it.next().is_some() {
            return Err(HeaderError::Duplicate(name));
        }
        Ok(first)
    }

    fn required(&self, name: &'static str) -> Result<&str, HeaderError> {
        self.single(name)?.ok_or(HeaderError::Missing(name))
    }

    /// The top-most `Via` value.
    ///
    /// # Errors
    /// Missing or malformed Via.
    pub fn via(&self) -> Result<Via, HeaderError> {
        let first = self
            .get(names::VIA)
            .ok_or(HeaderError::Missing(names::VIA))?;
        let top = SplitList::new(first).next().unwrap_or(first);
        Via::parse(top).map_err(|reason| HeaderError::Invalid {
            name: names::VIA,
            reason,
        })
    }

    /// Every `Via` value, top first, across header lines and comma lists.
    ///
    /// # Errors
    /// Missing Via or any malformed element.
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        let mut out = Vec::new();
        for line in self.canonical_all(names::VIA) {
            for v in SplitList::new(line) {
                out.push(Via::parse(v).map_err(|reason| HeaderError::Invalid {
                    name: names::VIA,
                    reason,
                })?);
            }
        }
        if out.is_empty() {
            return Err(HeaderError::Missing(names::VIA));
        }
        Ok(out)
    }

    /// Checks every Via value like [`Headers::vias`] without building them.
    pub(crate) fn check_vias(&self) -> Result<(), HeaderError> {
        let mut any = false;
        for line in self.canonical_all(names::VIA) {
            for v in SplitList::new(line) {
                Via::check(v).map_err(|reason| HeaderError::Invalid {
                    name: names::VIA,
                    reason,
                })?;
                any = true;
            }
        }
        if any {
            Ok(())
        } else {
            Err(HeaderError::Missing(names::VIA))
        }
    }

    /// Checks a single name-addr header like [`Headers::from`] without building it.
    pub(crate) fn check_name_addr(&self, name: &'static str) -> Result<(), HeaderError> {
        NameAddr::check(self.required(name)?)
            .map_err(|reason| HeaderError::Invalid { name, reason })
    }

    /// Checks every Contact like [`Headers::contact`] without building them.
    pub(crate) fn check_contact(&self) -> Result<(), HeaderError> {
        if self.contact_is_wildcard() {
            return Ok(());
        }
        for line in self.canonical_all(names::CONTACT) {
            for v in SplitList::new(line) {
                NameAddr::check(v).map_err(|reason| HeaderError::Invalid {
                    name: names::CONTACT,
                    reason,
                })?;
            }
        }
        Ok(())
    }

    /// Replaces the top-most Via value, keeping any other values on that line.
    pub fn set_top_via(&mut self, via: &Via) {
        let hn = HeaderName(Cow::Borrowed(names::VIA));
        if let Some(pos) = self.entries.iter().position(|(n, _, _)| *n == hn) {
            let (_, s, e) = self.entries[pos];
            let parts = split_list(&self.buf[s..e]);
            let mut v = via.to_string();
            for p in &parts[1..] {
                v.push_str(", ");
                v.push_str(p);
            }
            let (ns, ne) = self.append(&v);
            self.entries[pos].1 = ns;
            self.entries[pos].2 = ne;
        } else {
            self.push_front(names::VIA, via.to_string());
        }
    }

    fn name_addr(&self, name: &'static str) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(self.required(name)?)
            .map_err(|reason| HeaderError::Invalid { name, reason })
    }

    /// The `From` header.
    ///
    /// # Errors
    /// Missing, duplicated or malformed From.
    pub fn from(&self) -> Result<NameAddr, HeaderError> {
        self.name_addr(names::FROM)
    }

    /// The `To` header.
    ///
    /// # Errors
    /// Missing, duplicated or malformed To.
    pub fn to(&self) -> Result<NameAddr, HeaderError> {
        self.name_addr(names::TO)
    }

    /// The `Call-ID` value.
    ///
    /// # Errors
    /// Missing, duplicated or empty Call-ID.
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        let v = self.required(names::CALL_ID)?;
        if v.is_empty() || v.bytes().any(|c| c == b' ' || c == b'\t') {
            return Err(HeaderError::Invalid {
                name: names::CALL_ID,
                reason: "not a word",
            });
        }
        Ok(v)
    }

    /// The `CSeq` header.
    ///
    /// # Errors
    /// Missing, duplicated or malformed CSeq.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.required(names::CSEQ)?).map_err(|reason| HeaderError::Invalid {
            name: names::CSEQ,
            reason,
        })
    }

    fn name_addr_list(&self, name: &'static str) -> Result<Vec<NameAddr>, HeaderError> {
        let mut out = Vec::new();
        for line in self.canonical_all(name) {
            for v in SplitList::new(line) {
                out.push(
                    NameAddr::parse(v).map_err(|reason| HeaderError::Invalid { name, reason })?,
                );
            }
        }
        Ok(out)
    }

    /// Every `Contact` value; empty when absent or when the value is `*`
    /// (see [`Headers::contact_is_wildcard`]).
    ///
    /// # Errors
    /// Any malformed element.
    pub fn contact(&self) -> Result<Vec<NameAddr>, HeaderError> {
        if self.contact_is_wildcard() {
            return Ok(Vec::new());
        }
        self.name_addr_list(names::CONTACT)
    }

    /// True for `Contact: *` (REGISTER removing all bindings).
    pub fn contact_is_wildcard(&self) -> bool {
        self.get(names::CONTACT).is_some_and(|v| v.trim() == "*")
    }

    /// The `Route` set, top first.
    ///
    /// # Errors
    /// Any malformed element.
    pub fn route(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.name_addr_list(names::ROUTE)
    }

    /// The `Record-Route` set, top first.
    ///
    /// # Errors
    /// Any malformed element.
    pub fn record_route(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.name_addr_list(names::RECORD_ROUTE)
    }

    fn number(&self, name: &'static str, max: u64) -> Result<Option<u64>, HeaderError> {
        let Some(v) = self.single(name)? else {
            return Ok(None);
        };
        let v = v.trim();
        let bad = HeaderError::Invalid {
            name,
            reason: "not a number in range",
        };
        if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad);
        }
        match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(Some(n)),
            _ => Err(bad),
        }
    }

    /// `Max-Forwards` (0..=255).
    ///
    /// # Errors
    /// Duplicated, non-numeric or above 255.
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        Ok(self
            .number(names::MAX_FORWARDS, 255)?
            .and_then(|n| u8::try_from(n).ok()))
    }

    /// `Content-Length`.
    ///
    /// # Errors
    /// Duplicated, negative or non-numeric.
    pub fn content_length(&self) -> Result<Option<usize>, HeaderError> {
        Ok(self
            .number(names::CONTENT_LENGTH, u32::MAX as u64)?
            .map(|n| n as usize))
    }

    /// `Content-Type`, trimmed (`application/sdp`).
    pub fn content_type(&self) -> Option<&str> {
        self.get(names::CONTENT_TYPE).map(str::trim)
    }

    /// `Expires` in seconds (0..=2**32-1).
    ///
    /// # Errors
    /// Duplicated, non-numeric or out of range.
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        Ok(self
            .number(names::EXPIRES, u32::MAX as u64)?
            .map(|n| n as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_is_found_by_the_length_buckets() {
        for k in KNOWN {
            assert_eq!(HeaderName::known(&k.to_ascii_lowercase()), Some(*k));
        }
        assert_eq!(HeaderName::known("X-Unknown"), None);
    }

    #[test]
    fn compact_and_case_insensitive_names() {
        let mut h = Headers::new();
        h.push("v", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1");
        h.push(
            "VIA",
            "SIP/2.0/UDP b.example.com;branch=z9hG4bK2, SIP/2.0/TCP c.example.com",
        );
        h.push("cALL-iD", "abc");
        h.push("X-Custom", "1");
        assert_eq!(h.iter().next().unwrap().0.as_str(), "Via");
        assert_eq!(h.call_id().unwrap(), "abc");
        assert_eq!(h.get("i"), Some("abc"));
        assert_eq!(h.get("x-custom"), Some("1"));
        let vias = h.vias().unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[2].transport, "TCP");
        assert_eq!(h.via().unwrap().host, "a.example.com");
    }

    #[test]
    fn set_replaces_all_and_remove_counts() {
        let mut h = Headers::new();
        h.push("Contact", "<sip:a@x>");
        h.push("To", "<sip:b@x>");
        h.push("m", "<sip:c@x>");
        h.set("Contact", "*");
        assert_eq!(h.count("Contact"), 1);
        assert!(h.contact_is_wildcard());
        assert!(h.contact().unwrap().is_empty());
        assert_eq!(h.remove("to"), 1);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn set_top_via_keeps_the_rest_of_the_line() {
        let mut h = Headers::new();
        h.push(
            "Via",
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
        );
        let mut v = h.via().unwrap();
        v.received = Some("192.0.2.1".into());
        h.set_top_via(&v);
        let all = h.vias().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].received.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn numbers_and_duplicates() {
        let mut h = Headers::new();
        h.push("Max-Forwards", "300");
        h.push("l", "-1");
        h.push("CSeq", "1 INVITE");
        h.push("CSeq", "2 INVITE");
        assert!(h.max_forwards().is_err());
        assert!(h.content_length().is_err());
        assert_eq!(h.cseq(), Err(HeaderError::Duplicate("CSeq")));
        assert_eq!(h.from(), Err(HeaderError::Missing("From")));
    }
}
