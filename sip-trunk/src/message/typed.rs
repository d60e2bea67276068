//! Typed views of the header values the transaction and dialog layers need:
//! `Via`, name-addr (`From`, `To`, `Contact`, `Route`) and `CSeq`.
//!
//! They are parsed on demand from the stored text (see [`super::Headers`]) so
//! that the hot path of parsing a datagram only splits lines, and a header
//! nobody reads costs nothing. The grammar is RFC 3261 25.1 with the liberal
//! whitespace rules (SWS around `/ ; = :`) that RFC 4475 3.1.1.1 exercises.

use std::fmt;

use super::uri::{Uri, UriParts, find_byte, split_host_port, valid_host};
use super::{Method, ParamList};

const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let extra = b"-.!%*_+`'~";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

static TOKEN: [bool; 256] = token_table();

/// `token` characters of RFC 3261 25.1.
pub(crate) fn is_token_char(c: u8) -> bool {
    TOKEN[c as usize]
}

/// True when the whole string is a non-empty token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// A small byte cursor over a header value.
pub(crate) struct Cur<'a> {
    pub(crate) s: &'a str,
    pub(crate) i: usize,
}

impl<'a> Cur<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Cur { s, i: 0 }
    }
    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    pub(crate) fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }
    pub(crate) fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }
    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.i;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.i += 1;
        }
        &self.s[start..self.i]
    }
    /// Reads a quoted string starting at `"`; returns the raw inner text with
    /// quoted-pairs left escaped.
    pub(crate) fn quoted(&mut self) -> Result<&'a str, &'static str> {
        if !self.eat(b'"') {
            return Err("expected quoted string");
        }
        let b = self.s.as_bytes();
        let start = self.i;
        while self.i < b.len() {
            match b[self.i] {
                b'\\' => {
                    if self.i + 1 >= b.len() {
                        return Err("unterminated quoted string");
                    }
                    self.i += 2;
                }
                b'"' => {
                    let inner = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(inner);
                }
                _ => self.i += 1,
            }
        }
        Err("unterminated quoted string")
    }
    pub(crate) fn rest(&self) -> &'a str {
        &self.s[self.i.min(self.s.len())..]
    }
}

/// Splits a header value at commas that are outside quotes and `<>`.
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    SplitList::new(value).collect()
}

/// Iterator form of [`split_list`]; allocation-free for the parse hot path.
pub(crate) struct SplitList<'a> {
    value: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> SplitList<'a> {
    pub(crate) fn new(value: &'a str) -> Self {
        SplitList {
            value,
            pos: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for SplitList<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let b = self.value.as_bytes();
        if self.pos == 0 && find_byte(b',', b).is_none() {
            // The common single-value header: no comma, nothing to track.
            self.done = true;
            return Some(self.value.trim());
        }
        let (start, mut i, mut in_q, mut in_a) = (self.pos, self.pos, false, false);
        while i < b.len() {
            match b[i] {
                b'\\' if in_q => i += 1,
                b'"' if !in_a => in_q = !in_q,
                b'<' if !in_q => in_a = true,
                b'>' if !in_q => in_a = false,
                b',' if !in_q && !in_a => {
                    self.pos = i + 1;
                    return Some(self.value[start..i].trim());
                }
                _ => {}
            }
            i += 1;
        }
        self.done = true;
        Some(self.value[start.min(b.len())..].trim())
    }
}

fn is_param_value_char(c: u8) -> bool {
    is_token_char(c) || matches!(c, b':' | b'[' | b']')
}

/// Parses `*( SEMI generic-param )` starting at the cursor, handing each
/// `(name, value)` to `f` without allocating (quoted values keep their quotes).
pub(crate) fn for_each_param<'a>(
    c: &mut Cur<'a>,
    mut f: impl FnMut(&'a str, Option<&'a str>) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    loop {
        c.skip_ws();
        if c.at_end() {
            return Ok(());
        }
        if !c.eat(b';') {
            return Err("expected ';' before parameter");
        }
        c.skip_ws();
        let name = c.take_while(is_token_char);
        if name.is_empty() {
            return Err("empty parameter");
        }
        c.skip_ws();
        if c.eat(b'=') {
            c.skip_ws();
            let v = if c.peek() == Some(b'"') {
                let start = c.i;
                c.quoted()?;
                &c.s[start..c.i]
            } else {
                c.take_while(is_param_value_char)
            };
            if v.is_empty() {
                return Err("empty parameter value");
            }
            f(name, Some(v))?;
        } else {
            f(name, None)?;
        }
    }
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &ParamList) -> fmt::Result {
    for (n, v) in params {
        match v {
            Some(v) => write!(f, ";{n}={v}")?,
            None => write!(f, ";{n}")?,
        }
    }
    Ok(())
}

/// One `Via` value: `SIP/2.0/UDP host:port;branch=..;received=..;rport=..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token, upper-cased (`UDP`, `TCP`, `TLS`, `WS`, or unknown).
    pub transport: String,
    /// The sent-by host (name, IPv4 or `[IPv6]`).
    pub host: String,
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// The `branch` parameter.
    pub branch: Option<String>,
    /// The `received` parameter (RFC 3261 18.2.1).
    pub received: Option<String>,
    /// The `rport` parameter (RFC 3581): `Some(None)` when asked for, `Some(Some(p))` once filled.
    pub rport: Option<Option<u16>>,
    /// Other parameters in order.
    pub params: ParamList,
}

/// The RFC 3261 branch prefix that marks a globally unique branch.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl Via {
    /// A Via for a request we send, asking for `rport`.
    pub fn new(transport: &str, host: &str, port: Option<u16>, branch: &str) -> Via {
        Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_string(),
            port,
            branch: Some(branch.to_string()),
            received: None,
            rport: Some(None),
            params: Vec::new(),
        }
    }

    /// Parses one Via value (no commas).
    ///
    /// # Errors
    /// A short static description of the first syntax error.
    pub fn parse(v: &str) -> Result<Via, &'static str> {
        let mut via = Via {
            transport: String::new(),
            host: String::new(),
            port: None,
            branch: None,
            received: None,
            rport: None,
            params: Vec::new(),
        };
        let (transport, host, port) = Self::scan(v, |n, val| match n {
            ViaParam::Branch(b) => via.branch = Some(b.to_string()),
            ViaParam::Received(r) => via.received = Some(r.to_string()),
            ViaParam::Rport(p) => via.rport = Some(p),
            ViaParam::Other => via
                .params
                .push((val.0.to_string(), val.1.map(str::to_string))),
        })?;
        via.transport = transport.to_ascii_uppercase();
        via.host = host.to_string();
        via.port = port;
        Ok(via)
    }

    /// Checks one Via value without building it (the parse hot path).
    pub(crate) fn check(v: &str) -> Result<(), &'static str> {
        Self::scan(v, |_, _| {}).map(|_| ())
    }

    /// The grammar of one Via value; hands each parameter to `f` and returns
    /// transport, host and port as slices of `v`.
    fn scan<'a>(
        v: &'a str,
        mut f: impl FnMut(ViaParam<'a>, (&'a str, Option<&'a str>)),
    ) -> Result<(&'a str, &'a str, Option<u16>), &'static str> {
        let mut c = Cur::new(v);
        c.skip_ws();
        let proto = c.take_while(is_token_char);
        c.skip_ws();
        if !c.eat(b'/') {
            return Err("bad sent-protocol");
        }
        c.skip_ws();
        let version = c.take_while(is_token_char);
        c.skip_ws();
        if !c.eat(b'/') {
            return Err("bad sent-protocol");
        }
        c.skip_ws();
        let transport = c.take_while(is_token_char);
        if !proto.eq_ignore_ascii_case("SIP") || version != "2.0" || transport.is_empty() {
            return Err("bad sent-protocol");
        }
        let before = c.i;
        c.skip_ws();
        if c.i == before {
            return Err("missing sent-by");
        }
        let host = if c.peek() == Some(b'[') {
            let start = c.i;
            c.take_while(|b| b != b']');
            if !c.eat(b']') {
                return Err("bad sent-by host");
            }
            &c.s[start..c.i]
        } else {
            c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        if !valid_host(host) {
            return Err("bad sent-by host");
        }
        c.skip_ws();
        let port = if c.eat(b':') {
            c.skip_ws();
            let p = c.take_while(|b| b.is_ascii_digit());
            Some(p.parse::<u16>().map_err(|_| "bad sent-by port")?)
        } else {
            None
        };
        for_each_param(&mut c, |n, val| {
            let kind = if n.eq_ignore_ascii_case("branch") {
                ViaParam::Branch(val.ok_or("empty branch")?)
            } else if n.eq_ignore_ascii_case("received") {
                ViaParam::Received(val.ok_or("empty received")?)
            } else if n.eq_ignore_ascii_case("rport") {
                ViaParam::Rport(match val {
                    Some(p) => Some(p.parse::<u16>().map_err(|_| "bad rport")?),
                    None => None,
                })
            } else {
                ViaParam::Other
            };
            f(kind, (n, val));
            Ok(())
        })?;
        Ok((transport, host, port))
    }

    /// `host[:port]` as written.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// True when the branch starts with the RFC 3261 magic cookie.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch
            .as_deref()
            .is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }
}

/// A Via parameter as [`Via::scan`] classifies it.
enum ViaParam<'a> {
    Branch(&'a str),
    Received(&'a str),
    Rport(Option<u16>),
    Other,
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(b) = &self.branch {
            write!(f, ";branch={b}")?;
        }
        write_params(f, &self.params)?;
        if let Some(r) = &self.received {
            write!(f, ";received={r}")?;
        }
        match self.rport {
            Some(Some(p)) => write!(f, ";rport={p}")?,
            Some(None) => f.write_str(";rport")?,
            None => {}
        }
        Ok(())
    }
}

/// A name-addr or addr-spec with header parameters (`From`, `To`, `Contact`, `Route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name; for a quoted name the text between the quotes with its
    /// backslash escapes kept.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// The `tag` parameter.
    pub tag: Option<String>,
    /// Other header parameters in order (`expires`, `q`, `lr` on routes...).
    pub params: ParamList,
}

impl NameAddr {
    /// `<uri>` without display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            tag: None,
            params: Vec::new(),
        }
    }

    /// Parses one value (no top-level commas).
    ///
    /// # Errors
    /// A short static description of the first syntax error.
    pub fn parse(v: &str) -> Result<NameAddr, &'static str> {
        let mut tag = None;
        let mut params = Vec::new();
        let (display, uri) = Self::scan(v, |n, val| {
            if n.eq_ignore_ascii_case("tag") {
                tag = val.map(str::to_string);
            } else {
                params.push((n.to_string(), val.map(str::to_string)));
            }
        })?;
        Ok(NameAddr {
            display: display.map(str::to_string),
            uri: uri.to_uri(),
            tag,
            params,
        })
    }

    /// Checks one value without building it (the parse hot path).
    pub(crate) fn check(v: &str) -> Result<(), &'static str> {
        Self::scan(v, |_, _| {}).map(|_| ())
    }

    /// The grammar of one value: hands each header parameter to `f` and
    /// returns the display name and the checked URI as slices of `v`.
    fn scan<'a>(
        v: &'a str,
        mut f: impl FnMut(&'a str, Option<&'a str>),
    ) -> Result<(Option<&'a str>, UriParts<'a>), &'static str> {
        let mut c = Cur::new(v);
        c.skip_ws();
        let mut display = None;
        let angle = if c.peek() == Some(b'"') {
            display = Some(c.quoted()?);
            c.skip_ws();
            if c.peek() != Some(b'<') {
                return Err("expected '<' after display name");
            }
            true
        } else if let Some(lt) = find_byte(b'<', c.rest().as_bytes()) {
            let name = c.rest()[..lt].trim();
            if !name.is_empty() {
                if !name
                    .split([' ', '\t'])
                    .filter(|t| !t.is_empty())
                    .all(is_token)
                {
                    return Err("display name has non-token characters");
                }
                display = Some(name);
            }
            c.i += lt;
            true
        } else {
            false
        };
        let uri = if angle {
            c.eat(b'<');
            let inner = c.take_while(|b| b != b'>');
            if !c.eat(b'>') {
                return Err("missing '>'");
            }
            Uri::scan(inner).map_err(|_| "bad uri")?
        } else {
            let text = c.take_while(|b| b != b';');
            let text = text.trim_end();
            if text.contains(['?', ',']) {
                return Err("uri with headers must be enclosed in <>");
            }
            Uri::scan(text).map_err(|_| "bad uri")?
        };
        for_each_param(&mut c, |n, val| {
            if n.eq_ignore_ascii_case("tag") && val.is_none() {
                return Err("empty tag");
            }
            f(n, val);
            Ok(())
        })?;
        Ok((display, uri))
    }

    /// The value of a header parameter other than `tag`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{d}\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        if let Some(t) = &self.tag {
            write!(f, ";tag={t}")?;
        }
        write_params(f, &self.params)
    }
}

/// The `CSeq` header: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, below 2**31 when we generate it (RFC 3261 8.1.1.5).
    pub seq: u32,
    /// Method, which must equal the request method.
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`.
    ///
    /// # Errors
    /// A short static description of the first syntax error.
    pub fn parse(v: &str) -> Result<CSeq, &'static str> {
        let mut c = Cur::new(v);
        c.skip_ws();
        let digits = c.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err("missing sequence number");
        }
        let seq = digits
            .parse::<u32>()
            .map_err(|_| "sequence number out of range")?;
        let before = c.i;
        c.skip_ws();
        if c.i == before {
            return Err("missing method");
        }
        let m = c.take_while(is_token_char);
        c.skip_ws();
        if m.is_empty() || !c.at_end() {
            return Err("bad method");
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(m),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Parses `host[:port]` for callers that resolve sent-by or Route hosts.
pub fn parse_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    split_host_port(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_lws_everywhere() {
        let v =
            Via::parse("SIP  /   2.0 /UDP    192.0.2.2 ;  branch =  z9hG4bK390 ;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.branch.as_deref(), Some("z9hG4bK390"));
        assert_eq!(v.rport, Some(None));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK390;rport"
        );
    }

    #[test]
    fn via_ipv6_and_received() {
        let v = Via::parse(
            "SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKx;received=[2001:db8::1];rport=4000",
        )
        .unwrap();
        assert_eq!(v.host, "[2001:db8::9]");
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.received.as_deref(), Some("[2001:db8::1]"));
        assert_eq!(v.rport, Some(Some(4000)));
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse("SIP/7.0/UDP host").is_err());
        assert!(Via::parse("").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n =
            NameAddr::parse("\"J Rosenberg \\\\\\\"\"  <sip:jdrosen@example.com> ; tag = 98asjd8")
                .unwrap();
        assert_eq!(n.display.as_deref(), Some("J Rosenberg \\\\\\\""));
        assert_eq!(n.tag.as_deref(), Some("98asjd8"));
        let a = NameAddr::parse("sip:watson@example.com;tag=x;unknownparam").unwrap();
        assert_eq!(a.uri.user.as_deref(), Some("watson"));
        assert_eq!(a.tag.as_deref(), Some("x"));
        assert_eq!(a.param("unknownparam"), Some(None));
        let t = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(t.display.as_deref(), Some("caller"));
        assert_eq!(t.to_string(), "\"caller\" <sip:caller@example.com>;tag=323");
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a@example.com>").is_err());
        assert!(NameAddr::parse("\"W\" < sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:x%3E").is_err());
    }

    #[test]
    fn cseq_limits() {
        assert_eq!(CSeq::parse("0009\r\n  INVITE").unwrap().seq, 9);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("INVITE").is_err());
        assert!(CSeq::parse("1INVITE").is_err());
    }

    #[test]
    fn list_split_respects_quotes_and_angles() {
        let parts = split_list("\"a,b\" <sip:x@y;p=1,2>, <sip:z@w>");
        assert_eq!(parts, vec!["\"a,b\" <sip:x@y;p=1,2>", "<sip:z@w>"]);
    }
}
