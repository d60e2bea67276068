//! SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966), plus an opaque form for
//! any other scheme so that a request with an unknown scheme can still be
//! parsed and answered with 416 by the layer above.
//!
//! Escapes (`%HH`) are kept exactly as received: RFC 4475 3.1.1.3 shows that
//! unescaping must never be applied twice, so the URI stores the wire form and
//! [`unescape`] is offered to callers that compare user parts.

use std::fmt;

/// What went wrong while parsing a URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// The scheme is missing or has characters outside ALPHA/DIGIT/+-.
    #[error("bad uri scheme")]
    BadScheme,
    /// The user or password part has a character that is not allowed there.
    #[error("bad user part")]
    BadUser,
    /// The host is empty or not a hostname, IPv4 or bracketed IPv6 reference.
    #[error("bad host")]
    BadHost,
    /// The port is not a number between 0 and 65535.
    #[error("bad port")]
    BadPort,
    /// A `;name=value` parameter is empty or has a forbidden character.
    #[error("bad uri parameter")]
    BadParam,
    /// A `?name=value` header is malformed.
    #[error("bad uri header")]
    BadHeader,
    /// The opaque part of a non-SIP URI is empty or holds whitespace.
    #[error("bad opaque uri")]
    BadOpaque,
}

/// The scheme of a [`Uri`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:`
    Tel,
    /// Any other scheme, lower-cased; the rest of the URI is kept opaque in `host`.
    Other(String),
}

impl Scheme {
    /// The scheme as written on the wire (without the colon).
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

/// A parsed URI. For `sip`/`sips` every field is used; for `tel` the number is
/// in `host` and the parameters in `params`; for other schemes `host` holds the
/// opaque remainder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// The scheme.
    pub scheme: Scheme,
    /// User part, still escaped.
    pub user: Option<String>,
    /// Password part, still escaped.
    pub password: Option<String>,
    /// Host name, IPv4 address, `[IPv6]` reference, tel number or opaque part.
    pub host: String,
    /// Port, if written.
    pub port: Option<u16>,
    /// URI parameters in order (`;lr`, `;transport=tcp`); names keep their case.
    pub params: Vec<(String, Option<String>)>,
    /// URI headers in order (`?Subject=x&Priority=urgent`).
    pub headers: Vec<(String, String)>,
}

const MARK: &[u8] = b"-_.!~*'()";

/// A 256-entry membership table: unreserved characters plus `extra`.
/// Lookups replace per-character scans of small slices on the parse hot path.
const fn table(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < MARK.len() {
        t[MARK[i] as usize] = true;
        i += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

type CharSet = [bool; 256];
static USER: CharSet = table(b"&=+$,;?/");
static PASSWORD: CharSet = table(b"&=+$,");
static PARAM: CharSet = table(b"[]/:&+$");
static HEADER: CharSet = table(b"[]/?:+$");
static TEL: CharSet = table(b"+-.()");

/// True when every byte is in `set` or part of a `%HH` escape.
fn all_chars(s: &str, set: &CharSet) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
            continue;
        }
        if !set[c as usize] {
            return false;
        }
        i += 1;
    }
    true
}

/// Position of `c` in `h`: a plain loop, which beats memchr's SIMD setup on
/// the few dozen bytes of a URI or header value.
pub(crate) fn find_byte(c: u8, h: &[u8]) -> Option<usize> {
    h.iter().position(|&x| x == c)
}

/// Checks a hostname, IPv4 address or `[IPv6]` reference.
pub(crate) fn valid_host(h: &str) -> bool {
    if h.is_empty() {
        return false;
    }
    if let Some(inner) = h.strip_prefix('[') {
        return match inner.strip_suffix(']') {
            Some(v6) => {
                !v6.is_empty()
                    && v6
                        .bytes()
                        .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            }
            None => false,
        };
    }
    h.bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
        && !h.starts_with('.')
        && !h.starts_with('-')
}

/// Splits `host[:port]` where host may be a bracketed IPv6 reference.
pub(crate) fn split_host_port(s: &str) -> Result<(&str, Option<u16>), UriError> {
    let (host, rest) = if s.starts_with('[') {
        match find_byte(b']', s.as_bytes()) {
            Some(end) => (&s[..=end], &s[end + 1..]),
            None => return Err(UriError::BadHost),
        }
    } else {
        match find_byte(b':', s.as_bytes()) {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    };
    if !valid_host(host) {
        return Err(UriError::BadHost);
    }
    let port = if rest.is_empty() {
        None
    } else {
        let p = rest.strip_prefix(':').ok_or(UriError::BadPort)?;
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(UriError::BadPort);
        }
        Some(p.parse::<u16>().map_err(|_| UriError::BadPort)?)
    };
    Ok((host, port))
}

/// Checks `name[=value]` parameters separated by `;` without storing them.
fn check_params(s: &str, set: &CharSet) -> Result<(), UriError> {
    for p in s.split(';') {
        let (name, value) = match find_byte(b'=', p.as_bytes()) {
            Some(i) => (&p[..i], Some(&p[i + 1..])),
            None => (p, None),
        };
        if name.is_empty() || !all_chars(name, set) {
            return Err(UriError::BadParam);
        }
        if let Some(v) = value
            && (v.is_empty() || !all_chars(v, set))
        {
            return Err(UriError::BadParam);
        }
    }
    Ok(())
}

/// Splits parameters already checked by [`check_params`].
fn own_params(s: Option<&str>) -> Vec<(String, Option<String>)> {
    let Some(s) = s else {
        return Vec::new();
    };
    s.split(';')
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (p.to_string(), None),
        })
        .collect()
}

/// Checks `?name=value&..` URI headers without storing them.
fn check_headers(h: &str) -> Result<(), UriError> {
    for pair in h.split('&') {
        let (n, v) = pair.split_once('=').ok_or(UriError::BadHeader)?;
        if n.is_empty() || !all_chars(n, &HEADER) || !all_chars(v, &HEADER) {
            return Err(UriError::BadHeader);
        }
    }
    Ok(())
}

/// The scheme of a [`UriParts`], without allocating for unknown schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemeRef<'a> {
    Sip,
    Sips,
    Tel,
    Other(&'a str),
}

/// A checked URI as slices of its text: the allocation-free result of
/// [`Uri::scan`], used to validate messages on the parse hot path and turned
/// into an owned [`Uri`] only when someone asks for one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UriParts<'a> {
    pub(crate) scheme: SchemeRef<'a>,
    pub(crate) user: Option<&'a str>,
    pub(crate) password: Option<&'a str>,
    pub(crate) host: &'a str,
    pub(crate) port: Option<u16>,
    /// Raw `a;b=c` text after the first `;`, already checked.
    pub(crate) params: Option<&'a str>,
    /// Raw `a=b&c=d` text after `?`, already checked.
    pub(crate) headers: Option<&'a str>,
}

impl UriParts<'_> {
    /// The owned URI.
    pub(crate) fn to_uri(self) -> Uri {
        Uri {
            scheme: match self.scheme {
                SchemeRef::Sip => Scheme::Sip,
                SchemeRef::Sips => Scheme::Sips,
                SchemeRef::Tel => Scheme::Tel,
                SchemeRef::Other(s) => Scheme::Other(s.to_ascii_lowercase()),
            },
            user: self.user.map(str::to_string),
            password: self.password.map(str::to_string),
            host: self.host.to_string(),
            port: self.port,
            params: own_params(self.params),
            headers: match self.headers {
                Some(h) => h
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                None => Vec::new(),
            },
        }
    }
}

impl Uri {
    /// A `sip:` URI with the given user (optional) and host.
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_string),
            password: None,
            host: host.to_string(),
            port,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Parses a URI as found in a Request-Line or inside `<>`.
    ///
    /// # Errors
    /// Returns [`UriError`] naming the first part that does not match the grammar.
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        Ok(Self::scan(s)?.to_uri())
    }

    /// Checks a URI and returns it as slices of `s` (no allocation).
    pub(crate) fn scan(s: &str) -> Result<UriParts<'_>, UriError> {
        let colon = find_byte(b':', s.as_bytes()).ok_or(UriError::BadScheme)?;
        let scheme_str = &s[..colon];
        let rest = &s[colon + 1..];
        let sb = scheme_str.as_bytes();
        if sb.is_empty()
            || !sb[0].is_ascii_alphabetic()
            || !sb
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(UriError::BadScheme);
        }
        let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
            SchemeRef::Sip
        } else if scheme_str.eq_ignore_ascii_case("sips") {
            SchemeRef::Sips
        } else if scheme_str.eq_ignore_ascii_case("tel") {
            SchemeRef::Tel
        } else {
            SchemeRef::Other(scheme_str)
        };
        let mut parts = UriParts {
            scheme,
            user: None,
            password: None,
            host: rest,
            port: None,
            params: None,
            headers: None,
        };
        match scheme {
            SchemeRef::Sip | SchemeRef::Sips => Self::scan_sip(parts, rest),
            SchemeRef::Tel => {
                let (num, params) = match find_byte(b';', rest.as_bytes()) {
                    Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                    None => (rest, None),
                };
                if num.is_empty() || !all_chars(num, &TEL) {
                    return Err(UriError::BadHost);
                }
                if let Some(p) = params {
                    check_params(p, &PARAM)?;
                }
                parts.host = num;
                parts.params = params;
                Ok(parts)
            }
            SchemeRef::Other(_) => {
                if rest.is_empty() || rest.bytes().any(|c| c <= b' ' || c == 0x7f || c == b'>') {
                    return Err(UriError::BadOpaque);
                }
                Ok(parts)
            }
        }
    }

    fn scan_sip<'a>(mut parts: UriParts<'a>, rest: &'a str) -> Result<UriParts<'a>, UriError> {
        // '@' cannot appear unescaped in params or headers (RFC 3261 25.1), so
        // the first one ends the userinfo even when the user holds ';' or '?'.
        let (userinfo, hostpart) = match find_byte(b'@', rest.as_bytes()) {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        if let Some(ui) = userinfo {
            let (u, p) = match find_byte(b':', ui.as_bytes()) {
                Some(i) => (&ui[..i], Some(&ui[i + 1..])),
                None => (ui, None),
            };
            if u.is_empty() || !all_chars(u, &USER) {
                return Err(UriError::BadUser);
            }
            if let Some(p) = p
                && !all_chars(p, &PASSWORD)
            {
                return Err(UriError::BadUser);
            }
            parts.user = Some(u);
            parts.password = p;
        }
        let (before_headers, headers) = match find_byte(b'?', hostpart.as_bytes()) {
            Some(i) => (&hostpart[..i], Some(&hostpart[i + 1..])),
            None => (hostpart, None),
        };
        let (hostport, params) = match find_byte(b';', before_headers.as_bytes()) {
            Some(i) => (&before_headers[..i], Some(&before_headers[i + 1..])),
            None => (before_headers, None),
        };
        let (host, port) = split_host_port(hostport)?;
        if let Some(p) = params {
            check_params(p, &PARAM)?;
        }
        if let Some(h) = headers {
            check_headers(h)?;
        }
        parts.host = host;
        parts.port = port;
        parts.params = params;
        parts.headers = headers;
        Ok(parts)
    }

    /// True for `sip:` and `sips:` URIs.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The value of a URI parameter (name compared case-insensitively);
    /// `Some(None)` for a parameter without value such as `lr`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The `transport=` parameter, lower-cased.
    pub fn transport_param(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(str::to_ascii_lowercase)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme.as_str())?;
        f.write_str(":")?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        for (i, (n, v)) in self.headers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{n}={v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Uri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Uri, UriError> {
        Uri::parse(s)
    }
}

/// Decodes `%HH` escapes; invalid escapes are kept as they are. Bytes that do
/// not form UTF-8 are replaced, so use this for comparison and display only.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_round_trips() {
        let s = "sip:alice:secret@example.com:5070;transport=tcp;lr?Subject=hi&X=1";
        let u = Uri::parse(s).unwrap();
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.transport_param().as_deref(), Some("tcp"));
        assert_eq!(u.headers.len(), 2);
        assert_eq!(u.to_string(), s);
    }

    #[test]
    fn ipv6_reference() {
        let u = Uri::parse("sips:[2001:db8::10]:5061;maddr=[2001:db8::1]").unwrap();
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(
            u.to_string(),
            "sips:[2001:db8::10]:5061;maddr=[2001:db8::1]"
        );
        assert!(Uri::parse("sip:[2001:db8::10").is_err());
    }

    #[test]
    fn escaped_user_is_kept_and_unescape_decodes() {
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.user.as_deref(), Some("sips%3Auser%40example.com"));
        assert_eq!(
            unescape(u.user.as_deref().unwrap()),
            "sips:user@example.com"
        );
        assert!(Uri::parse("sip:bad%zzuser@example.com").is_err());
        assert!(Uri::parse("sip:bad%4@example.com").is_err());
    }

    #[test]
    fn tel_and_other_schemes() {
        let t = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(t.scheme, Scheme::Tel);
        assert_eq!(t.host, "+1-201-555-0123");
        assert_eq!(
            t.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
        let o = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(o.scheme, Scheme::Other("soap.beep".into()));
        assert_eq!(o.to_string(), "soap.beep://192.0.2.103:3002");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "sip:",
            "<sip:a@b>",
            "sip:user@exa mple.com",
            "sip:user@host:99999",
            "sip:user@host;",
            "1sip:x",
            "sip:@host",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}
