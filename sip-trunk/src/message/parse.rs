//! Turning bytes into [`SipMessage`]s: one datagram at a time
//! ([`parse_message`]) or from a byte stream in two phases like mini-redis
//! (`Frame::check` then `Frame::parse`): [`check_stream`] says how many bytes
//! the next item needs or that more must be read, [`parse_stream`] parses it.
//!
//! The parser is strict where RFC 4475 says an element must answer 400 (bad
//! start line, broken Via/From/To/CSeq, CSeq method mismatch, duplicated
//! single-value headers, bad Content-Length) and liberal where it says a
//! parser must accept (LWS and line folding anywhere, unknown headers and
//! schemes, escaped characters, trailing bytes after a UDP body). It never
//! panics on input; the fuzz target and `tests/rfc4475.rs` check that.

use std::sync::LazyLock;

use bytes::Bytes;
use memchr::memmem::Finder;

use super::headers::{HeaderError, HeaderName, Headers, names};
use super::typed::{is_token, is_token_char, split_list};
use super::uri::Uri;
use super::{Method, Request, Response, SipMessage, StatusCode};

/// Largest message accepted on any transport (64 KiB).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The message is larger than [`MAX_MESSAGE_SIZE`].
    #[error("message of {size} bytes is larger than 64 KiB")]
    TooLarge {
        /// Size seen so far.
        size: usize,
    },
    /// A stream holds only part of a message; read more bytes and retry.
    #[error("incomplete message, read more")]
    Incomplete,
    /// The start line or header section is not UTF-8.
    #[error("start line or headers are not utf-8")]
    NotUtf8,
    /// The empty line that ends the header section is missing.
    #[error("missing empty line after headers")]
    NoHeaderEnd,
    /// The Request-Line or Status-Line is malformed.
    #[error("malformed start line: {0}")]
    BadStartLine(&'static str),
    /// The SIP version is not 2.0 (answer 505).
    #[error("sip version not supported")]
    VersionNotSupported,
    /// The status code is not three digits between 100 and 699.
    #[error("bad status code")]
    BadStatusCode,
    /// The Request-URI does not parse.
    #[error("malformed request-uri")]
    BadRequestUri,
    /// A header line has no colon or an invalid name.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A header the transaction layer needs is missing, duplicated or malformed.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The CSeq method differs from the Request-Line method.
    #[error("cseq method does not match request method")]
    CSeqMethodMismatch,
    /// The body is shorter than Content-Length says.
    #[error("body shorter than content-length ({expected} > {got})")]
    BodyTooShort {
        /// Content-Length value.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// A stream message has no Content-Length (mandatory on streams).
    #[error("content-length is mandatory on stream transports")]
    MissingContentLength,
}

impl ParseError {
    /// The status a stateless reply should carry, if any: 505 for the version,
    /// 513 for size, 400 otherwise; `None` when more bytes are needed.
    pub fn status(&self) -> Option<u16> {
        match self {
            ParseError::Incomplete => None,
            ParseError::VersionNotSupported => Some(505),
            ParseError::TooLarge { .. } => Some(513),
            _ => Some(400),
        }
    }

    /// A reason phrase that names the problem, e.g. `Bad Request (missing To header)`.
    pub fn reason(&self) -> String {
        match self {
            ParseError::VersionNotSupported => "Version Not Supported".to_string(),
            ParseError::TooLarge { .. } => "Message Too Large".to_string(),
            other => format!("Bad Request ({other})"),
        }
    }

    /// Builds the stateless reply for a refused request whose top Via can be
    /// salvaged (From, To, Call-ID and CSeq are copied when present). Returns
    /// `None` for responses, ACKs, stream underruns and requests whose Via is
    /// unusable: those are dropped and counted.
    pub fn bad_request_reply(&self, raw: &[u8]) -> Option<Vec<u8>> {
        let status = self.status()?;
        let raw = &raw[..raw.len().min(MAX_MESSAGE_SIZE)];
        let raw = &raw[skip_leading_crlf(raw)..];
        let head_len = find_header_end(raw).map_or(raw.len(), |(h, _)| h);
        let text = String::from_utf8_lossy(&raw[..head_len]);
        let mut lines = unfolded_lines(&text);
        let start = lines.next()?;
        if start.starts_with("SIP/") || start.starts_with("ACK ") {
            return None;
        }
        let mut kept: Vec<(&'static str, String)> = Vec::new();
        let mut have_via = false;
        for (name, value) in lines.filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((HeaderName::known(n.trim())?, v.trim().to_string()))
        }) {
            match name {
                names::VIA => {
                    if !have_via {
                        // Only sent-protocol and sent-by matter for routing the
                        // reply, so broken parameters do not prevent it.
                        if !via_routable(split_list(&value)[0]) {
                            return None;
                        }
                        have_via = true;
                    }
                }
                names::CSEQ => {
                    if value.split_whitespace().nth(1) == Some("ACK") {
                        return None;
                    }
                }
                names::FROM | names::TO | names::CALL_ID => {}
                _ => continue,
            }
            kept.push((name, value));
        }
        if !have_via {
            return None;
        }
        let mut out = format!("SIP/2.0 {status} {}\r\n", self.reason());
        for (n, v) in kept {
            out.push_str(n);
            out.push_str(": ");
            out.push_str(&v);
            out.push_str("\r\n");
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        Some(out.into_bytes())
    }
}

/// True when a Via value has a usable transport and sent-by, whatever its
/// version or parameters: enough to send a stateless error back.
fn via_routable(top: &str) -> bool {
    let head = top.split(';').next().unwrap_or(top);
    let Some(slash) = head.rfind('/') else {
        return false;
    };
    let mut words = head[slash + 1..].split_whitespace();
    let (Some(transport), Some(sent_by)) = (words.next(), words.next()) else {
        return false;
    };
    is_token(transport) && super::uri::split_host_port(sent_by).is_ok()
}

/// Finds the end of the header section: returns (length of start line plus
/// headers including the last line break, offset of the body).
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    // The first LF followed by CRLF or by LF ends the headers; memmem keeps
    // this SIMD-fast since it runs on every message.
    static LF_CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));
    static LF_LF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
    match LF_CRLF.find(buf) {
        // A bare-LF end can only win if it comes earlier, so search only there.
        Some(j) => Some(match LF_LF.find(&buf[..j + 2]) {
            Some(k) if k < j => (k + 1, k + 2),
            _ => (j + 1, j + 3),
        }),
        None => LF_LF.find(buf).map(|k| (k + 1, k + 2)),
    }
}

/// Lines of the head with folded continuation lines joined by one space.
fn unfolded_lines(head: &str) -> impl Iterator<Item = String> + '_ {
    let mut raw = head
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .peekable();
    std::iter::from_fn(move || {
        let mut line = raw.next()?.to_string();
        while let Some(next) = raw.peek() {
            if next.starts_with([' ', '\t']) {
                line.push(' ');
                line.push_str(next.trim_start());
                raw.next();
            } else {
                break;
            }
        }
        Some(line)
    })
}

fn skip_leading_crlf(data: &[u8]) -> usize {
    data.iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count()
}

/// Parses one datagram. Bytes after `Content-Length` are ignored (RFC 3261
/// 18.3); without Content-Length the body runs to the end of the datagram.
///
/// # Errors
/// [`ParseError`] for anything that is not a well-formed SIP message.
pub fn parse_message(data: &[u8]) -> Result<SipMessage, ParseError> {
    if data.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge { size: data.len() });
    }
    let data = &data[skip_leading_crlf(data)..];
    let (head_len, body_start) = find_header_end(data).ok_or(ParseError::NoHeaderEnd)?;
    let head = std::str::from_utf8(&data[..head_len]).map_err(|_| ParseError::NotUtf8)?;
    let hb = head.as_bytes();
    // Lines are cut with memchr on the bytes; every cut is at an ASCII byte,
    // so slicing the str there is always on a char boundary.
    let first_nl = memchr::memchr(b'\n', hb).unwrap_or(hb.len());
    let start = strip_cr(&head[..first_nl]);

    let mut headers = Headers::with_capacity(16);
    headers.reserve_text(head.len());
    let mut pos = first_nl + 1;
    // One iterator for the whole head: cheaper than a memchr call per line.
    let base = pos.min(hb.len());
    let mut ends = memchr::memchr_iter(b'\n', &hb[base..]).map(move |i| i + base);
    while pos < hb.len() {
        let nl = ends.next().unwrap_or(hb.len());
        let line = strip_cr(&head[pos..nl]);
        pos = nl + 1;
        let lb = line.as_bytes();
        let Some(&c0) = lb.first() else {
            continue;
        };
        if c0 == b' ' || c0 == b'\t' {
            // Folded continuation (LWS): join with one space.
            let Some(prev) = headers.last_value() else {
                return Err(ParseError::BadHeaderLine);
            };
            let prev_empty = prev.is_empty();
            let t = line.trim();
            if !t.is_empty() {
                if !prev_empty {
                    headers.extend_last(" ");
                }
                headers.extend_last(t);
            }
            continue;
        }
        // header-name = token, then optional LWS, then the colon.
        let name_len = lb.iter().take_while(|&&c| is_token_char(c)).count();
        let colon = name_len
            + lb[name_len..]
                .iter()
                .take_while(|&&c| c == b' ' || c == b'\t')
                .count();
        if name_len == 0 || lb.get(colon) != Some(&b':') {
            return Err(ParseError::BadHeaderLine);
        }
        let name = &line[..name_len];
        let value = trim_lws_end(trim_lws_start(&line[colon + 1..]));
        headers.push_named(HeaderName::new(name), value);
    }

    let rest = &data[body_start..];
    let body = match headers.content_length()? {
        Some(n) if n > rest.len() => {
            return Err(ParseError::BodyTooShort {
                expected: n,
                got: rest.len(),
            });
        }
        Some(n) => Bytes::copy_from_slice(&rest[..n]),
        None => Bytes::copy_from_slice(rest),
    };

    if let Some(rest) = start.strip_prefix("SIP/") {
        let resp = parse_status_line(rest, headers, body)?;
        validate_common(&resp.headers)?;
        Ok(SipMessage::Response(resp))
    } else {
        let req = parse_request_line(start, headers, body)?;
        let cseq = validate_common(&req.headers)?;
        if cseq.method != req.method {
            return Err(ParseError::CSeqMethodMismatch);
        }
        req.headers.max_forwards()?;
        req.headers.check_contact()?;
        Ok(SipMessage::Request(req))
    }
}

/// Checks the headers every element relies on (RFC 3261 8.1.1) with the
/// same grammar as the typed accessors, but without building the values:
/// a message that passes here gives `Ok` from `vias()`, `from()`, `to()`.
fn validate_common(h: &Headers) -> Result<super::CSeq, ParseError> {
    h.check_vias()?;
    h.check_name_addr(names::FROM)?;
    h.check_name_addr(names::TO)?;
    h.call_id()?;
    Ok(h.cseq()?)
}

fn strip_cr(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

fn trim_lws_start(s: &str) -> &str {
    let n = s.bytes().take_while(|&c| c == b' ' || c == b'\t').count();
    &s[n..]
}

fn trim_lws_end(s: &str) -> &str {
    let n = s
        .bytes()
        .rev()
        .take_while(|&c| c == b' ' || c == b'\t')
        .count();
    &s[..s.len() - n]
}

fn parse_status_line(rest: &str, headers: Headers, body: Bytes) -> Result<Response, ParseError> {
    let (version, rest) = rest
        .split_once(' ')
        .ok_or(ParseError::BadStartLine("no status code"))?;
    if version != "2.0" {
        return Err(ParseError::VersionNotSupported);
    }
    let (code, reason) = match rest.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (rest, ""),
    };
    if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ParseError::BadStatusCode);
    }
    let code: u16 = code.parse().map_err(|_| ParseError::BadStatusCode)?;
    if !(100..=699).contains(&code) {
        return Err(ParseError::BadStatusCode);
    }
    if reason.bytes().any(|c| c < b' ' && c != b'\t') {
        return Err(ParseError::BadStartLine("control character in reason"));
    }
    Ok(Response {
        status: StatusCode(code),
        reason: reason.to_string(),
        headers,
        body,
    })
}

fn parse_request_line(line: &str, headers: Headers, body: Bytes) -> Result<Request, ParseError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadStartLine(
            "request line is not 'method SP uri SP version'",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token_char) {
        return Err(ParseError::BadStartLine("bad method"));
    }
    if version != "SIP/2.0" {
        let looks_sip = version
            .strip_prefix("SIP/")
            .is_some_and(|v| v.contains('.') && v.bytes().all(|c| c.is_ascii_digit() || c == b'.'));
        return Err(if looks_sip {
            ParseError::VersionNotSupported
        } else {
            ParseError::BadStartLine("bad version")
        });
    }
    let uri = Uri::parse(uri).map_err(|_| ParseError::BadRequestUri)?;
    // Headers are not allowed in a SIP Request-URI (RFC 3261 19.1.5, RFC 4475 3.1.2.11).
    if uri.is_sip() && !uri.headers.is_empty() {
        return Err(ParseError::BadRequestUri);
    }
    Ok(Request {
        method: Method::from_token(method),
        uri,
        headers,
        body,
    })
}

/// One item of a stream transport.
// Boxing the message would cost an allocation per message to shrink the
// rare keep-alive variant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// CRLF keep-alive bytes (RFC 5626 3.5.1 ping `CRLFCRLF` / pong `CRLF`).
    KeepAlive,
    /// A full message.
    Message(SipMessage),
}

fn stream_content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let text = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let mut found = None;
    for line in unfolded_lines(text).skip(1) {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        if HeaderName::known(n.trim()) == Some(names::CONTENT_LENGTH) {
            let v = v.trim();
            if found.is_some() {
                return Err(HeaderError::Duplicate(names::CONTENT_LENGTH).into());
            }
            if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) || v.len() > 9 {
                return Err(HeaderError::Invalid {
                    name: names::CONTENT_LENGTH,
                    reason: "not a number in range",
                }
                .into());
            }
            found = Some(v.parse::<usize>().map_err(|_| ParseError::BadHeaderLine)?);
        }
    }
    Ok(found)
}

/// First phase of stream framing: how many bytes the next item uses.
///
/// # Errors
/// [`ParseError::Incomplete`] when more bytes must be read; any other error
/// means the stream cannot be resynchronised and should be closed.
pub fn check_stream(buf: &[u8]) -> Result<usize, ParseError> {
    let crlf = skip_leading_crlf(buf);
    if crlf > 0 {
        return Ok(crlf);
    }
    let window = &buf[..buf.len().min(MAX_MESSAGE_SIZE)];
    let Some((head_len, body_start)) = find_header_end(window) else {
        return Err(if buf.len() >= MAX_MESSAGE_SIZE {
            ParseError::TooLarge { size: buf.len() }
        } else {
            ParseError::Incomplete
        });
    };
    let cl = stream_content_length(&buf[..head_len])?.ok_or(ParseError::MissingContentLength)?;
    let total = body_start + cl;
    if total > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge { size: total });
    }
    if buf.len() < total {
        return Err(ParseError::Incomplete);
    }
    Ok(total)
}

/// Second phase: parses the next item and says how many bytes to consume.
///
/// # Errors
/// As [`check_stream`], plus any [`parse_message`] error for the framed bytes
/// (the caller may then skip `check_stream`'s length and go on).
pub fn parse_stream(buf: &[u8]) -> Result<(StreamItem, usize), ParseError> {
    let n = check_stream(buf)?;
    if buf[0] == b'\r' || buf[0] == b'\n' {
        return Ok((StreamItem::KeepAlive, n));
    }
    Ok((StreamItem::Message(parse_message(&buf[..n])?), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn parses_a_plain_invite() {
        let SipMessage::Request(r) = parse_message(INVITE.as_bytes()).unwrap() else {
            panic!("request expected");
        };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.body.as_ref(), b"v=0\n");
        assert_eq!(r.headers.from().unwrap().tag.as_deref(), Some("9fxced76sl"));
        assert_eq!(r.headers.max_forwards().unwrap(), Some(70));
    }

    #[test]
    fn stream_framing_in_two_phases() {
        let mut buf = b"\r\n\r\n".to_vec();
        buf.extend_from_slice(INVITE.as_bytes());
        buf.extend_from_slice(&INVITE.as_bytes()[..40]);
        let (item, n) = parse_stream(&buf).unwrap();
        assert_eq!(item, StreamItem::KeepAlive);
        assert_eq!(n, 4);
        let buf = &buf[n..];
        let (item, n) = parse_stream(buf).unwrap();
        assert!(matches!(item, StreamItem::Message(SipMessage::Request(_))));
        assert_eq!(n, INVITE.len());
        assert_eq!(check_stream(&buf[n..]), Err(ParseError::Incomplete));
        // Content-Length is mandatory on streams.
        let no_cl = INVITE.replace("Content-Length: 4\r\n", "");
        assert_eq!(
            check_stream(no_cl.as_bytes()),
            Err(ParseError::MissingContentLength)
        );
    }

    #[test]
    fn refuses_more_than_64_kib() {
        let big = vec![b'a'; MAX_MESSAGE_SIZE + 1];
        assert!(matches!(
            parse_message(&big),
            Err(ParseError::TooLarge { .. })
        ));
        let mut msg = INVITE
            .replace("Content-Length: 4", "Content-Length: 70000")
            .into_bytes();
        msg.resize(msg.len() + 10, b'x');
        assert!(matches!(
            check_stream(&msg),
            Err(ParseError::TooLarge { .. })
        ));
        let endless = vec![b'a'; MAX_MESSAGE_SIZE + 10];
        assert!(matches!(
            check_stream(&endless),
            Err(ParseError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_request_reply_names_the_problem() {
        let raw = INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        let err = parse_message(raw.as_bytes()).unwrap_err();
        assert_eq!(err, ParseError::CSeqMethodMismatch);
        let reply = String::from_utf8(err.bad_request_reply(raw.as_bytes()).unwrap()).unwrap();
        assert!(reply.starts_with(
            "SIP/2.0 400 Bad Request (cseq method does not match request method)\r\n"
        ));
        assert!(reply.contains(
            "\r\nVia: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n"
        ));
        assert!(reply.contains("\r\nCall-ID: 3848276298220188511@atlanta.example.com\r\n"));
        assert!(reply.ends_with("Content-Length: 0\r\n\r\n"));
        // No Via: nothing to answer to.
        let raw = INVITE.replace(
            "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n",
            "",
        );
        let err = parse_message(raw.as_bytes()).unwrap_err();
        assert_eq!(err.bad_request_reply(raw.as_bytes()), None);
        // Responses are never answered.
        let resp = b"SIP/2.0 999 Nope\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        let err = parse_message(resp).unwrap_err();
        assert_eq!(err.bad_request_reply(resp), None);
    }

    #[test]
    fn version_error_maps_to_505() {
        let raw = INVITE.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
        let err = parse_message(raw.as_bytes()).unwrap_err();
        assert_eq!(err, ParseError::VersionNotSupported);
        let reply = err.bad_request_reply(raw.as_bytes()).unwrap();
        assert!(reply.starts_with(b"SIP/2.0 505 Version Not Supported\r\n"));
    }
}
