//! SIP messages: the types, their wire form and the builders the transaction
//! and dialog layers use.
//!
//! We keep our own parser instead of `rsip` (last release 0.4.0, 2022) or the
//! `sip` types inside `rsipstack` (they do not build without its
//! `platform-tokio` feature, which would pull tokio and a second transaction
//! layer into this sans-IO crate). See the crate docs for the decision.
//!
//! Parsing lives in [`parse`] (datagram and stream framing), header storage in
//! [`headers`], URIs in [`uri`] and typed header views in [`typed`].

pub mod headers;
pub mod parse;
pub mod typed;
pub mod uri;

use std::fmt;

use bytes::Bytes;

pub use headers::{HeaderError, HeaderName, Headers, names};
pub use parse::{
    MAX_MESSAGE_SIZE, ParseError, StreamItem, check_stream, parse_message, parse_stream,
};
pub use typed::{CSeq, MAGIC_COOKIE, NameAddr, Via};
pub use uri::{Scheme, Uri, UriError};

/// Ordered `name[=value]` parameters.
pub type ParamList = Vec<(String, Option<String>)>;

/// A request method. Methods are case-sensitive (RFC 3261 7.1): `invite` is
/// an extension method, not INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// REGISTER
    Register,
    /// OPTIONS
    Options,
    /// MESSAGE (RFC 3428)
    Message,
    /// INFO (RFC 6086)
    Info,
    /// UPDATE (RFC 3311)
    Update,
    /// REFER (RFC 3515)
    Refer,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// Any other token.
    Extension(String),
}

impl Method {
    /// Maps a token to a method; unknown tokens become `Extension`.
    pub fn from_token(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "MESSAGE" => Method::Message,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "REFER" => Method::Refer,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            other => Method::Extension(other.to_string()),
        }
    }

    /// The wire token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Refer => "REFER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A response status code, 100..=699.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// 1xx.
    pub fn is_provisional(self) -> bool {
        self.0 < 200
    }
    /// 2xx.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }
    /// 200..=699.
    pub fn is_final(self) -> bool {
        self.0 >= 200
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method of the Request-Line.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// Header fields in order.
    pub headers: Headers,
    /// The body (opaque to this crate; SDP is handled by `media`).
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The reason phrase (may be empty).
    pub reason: String,
    /// Header fields in order.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// Either kind of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipMessage {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

fn encode_headers(headers: &Headers, body: &[u8], out: &mut Vec<u8>) {
    for (n, v) in headers.iter() {
        if n.as_str() == names::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // Always computed from the body we actually send, never copied.
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push(name, value);
        self
    }

    /// Sets the body and its `Content-Type` (builder style).
    pub fn with_body(mut self, content_type: &str, body: impl Into<Bytes>) -> Request {
        self.headers.set(names::CONTENT_TYPE, content_type);
        self.body = body.into();
        self
    }

    /// Appends the wire form to `out`, with a correct Content-Length.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.to_string().as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        encode_headers(&self.headers, &self.body, out);
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(512 + self.body.len());
        self.encode(&mut v);
        v
    }
}

impl Response {
    /// A response with no headers.
    pub fn new(status: u16, reason: &str) -> Response {
        Response {
            status: StatusCode(status),
            reason: reason.to_string(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `req` per RFC 3261 8.2.6: copies every Via (in order),
    /// From, To, Call-ID and CSeq. The To tag is left as received; add one
    /// with [`Response::with_to_tag`].
    pub fn from_request(req: &Request, status: u16, reason: &str) -> Response {
        let mut r = Response::new(status, reason);
        for (n, v) in req.headers.iter() {
            if matches!(
                n.as_str(),
                names::VIA | names::FROM | names::TO | names::CALL_ID | names::CSEQ
            ) {
                r.headers.push_named(n.clone(), v);
            }
        }
        // 100 Trying echoes Timestamp (RFC 3261 8.2.6.1).
        if status == 100
            && let Some(ts) = req.headers.get("Timestamp")
        {
            r.headers.push("Timestamp", ts);
        }
        r
    }

    /// Adds `;tag=` to the To header unless it already has a tag (builder style).
    pub fn with_to_tag(mut self, tag: &str) -> Response {
        if let Ok(to) = self.headers.to()
            && to.tag.is_none()
            && let Some(v) = self.headers.get(names::TO)
        {
            let v = format!("{v};tag={tag}");
            self.headers.set(names::TO, v);
        }
        self
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push(name, value);
        self
    }

    /// Sets the body and its `Content-Type` (builder style).
    pub fn with_body(mut self, content_type: &str, body: impl Into<Bytes>) -> Response {
        self.headers.set(names::CONTENT_TYPE, content_type);
        self.body = body.into();
        self
    }

    /// Appends the wire form to `out`, with a correct Content-Length.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(self.status.0.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        encode_headers(&self.headers, &self.body, out);
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(512 + self.body.len());
        self.encode(&mut v);
        v
    }
}

impl SipMessage {
    /// The header list of either kind.
    pub fn headers(&self) -> &Headers {
        match self {
            SipMessage::Request(r) => &r.headers,
            SipMessage::Response(r) => &r.headers,
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SipMessage::Request(r) => r.to_bytes(),
            SipMessage::Response(r) => r.to_bytes(),
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for SipMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Request {
        Request::new(Method::Invite, Uri::parse("sip:bob@example.com").unwrap())
            .with_header(
                "Via",
                "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds",
            )
            .with_header("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1")
            .with_header("Max-Forwards", "70")
            .with_header("To", "Bob <sip:bob@example.com>")
            .with_header("From", "Alice <sip:alice@example.com>;tag=1928301774")
            .with_header("Call-ID", "a84b4c76e66710@pc33.example.com")
            .with_header("CSeq", "314159 INVITE")
            .with_header("Content-Length", "999")
            .with_body("application/sdp", &b"v=0\r\n"[..])
    }

    #[test]
    fn serialisation_writes_the_real_content_length() {
        let bytes = invite().to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("INVITE sip:bob@example.com SIP/2.0\r\n"));
        assert!(text.contains("\r\nContent-Length: 5\r\n\r\nv=0\r\n"));
        assert!(!text.contains("999"));
        let back = parse_message(&bytes).unwrap();
        match back {
            SipMessage::Request(r) => assert_eq!(r.body.as_ref(), b"v=0\r\n"),
            SipMessage::Response(_) => panic!("expected a request"),
        }
    }

    #[test]
    fn response_from_request_copies_the_rfc_8_2_6_headers() {
        let req = invite();
        let resp = Response::from_request(&req, 180, "Ringing").with_to_tag("xyz");
        assert_eq!(resp.headers.vias().unwrap().len(), 2);
        assert_eq!(resp.headers.to().unwrap().tag.as_deref(), Some("xyz"));
        assert_eq!(resp.headers.cseq().unwrap().seq, 314159);
        assert!(!resp.headers.contains("Max-Forwards"));
        // An existing tag is kept.
        let again = resp.clone().with_to_tag("other");
        assert_eq!(again.headers.to().unwrap().tag.as_deref(), Some("xyz"));
        let text = resp.to_string();
        assert!(text.starts_with("SIP/2.0 180 Ringing\r\n"));
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(Method::from_token("INVITE"), Method::Invite);
        assert_eq!(
            Method::from_token("invite"),
            Method::Extension("invite".into())
        );
    }
}
