//! HTTP digest authentication for SIP (RFC 2617, RFC 7616, RFC 3261 section 22).
//!
//! This file owns both halves of digest auth: the client that answers a
//! `WWW-Authenticate`/`Proxy-Authenticate` challenge from a registrar or PBX,
//! and the verifier that challenges desk phones calling in. Both are pure:
//! the client cnonce comes from an injected RNG and the verifier's nonce
//! lifetime is measured against the `now` the caller passes in, so every rule
//! here is testable with fixed vectors and a hand-driven clock.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use md5::Md5;
use rand::RngCore;
use sha2::{Digest as _, Sha256};

/// Errors from parsing digest headers or answering/verifying a challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The header is not a `Digest` challenge or credentials value.
    #[error("not a digest header")]
    NotDigest,
    /// The header value could not be tokenised.
    #[error("malformed digest header: {0}")]
    Malformed(&'static str),
    /// A mandatory parameter is absent.
    #[error("missing digest parameter {0}")]
    Missing(&'static str),
    /// The algorithm is not one of MD5, MD5-sess, SHA-256, SHA-256-sess.
    #[error("unsupported digest algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The challenge offers only qop values we do not implement.
    #[error("unsupported qop {0}")]
    UnsupportedQop(String),
    /// `authorize` was called before any challenge was accepted.
    #[error("no challenge to answer")]
    NoChallenge,
}

/// Why the verifier refused a set of credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The credentials name another realm.
    #[error("realm mismatch")]
    RealmMismatch,
    /// The `uri` parameter is not the request URI.
    #[error("digest uri does not match the request uri")]
    UriMismatch,
    /// The response hash is wrong (bad password or tampered request).
    #[error("digest response mismatch")]
    BadResponse,
    /// The digest is right but the nonce is unknown or expired: re-challenge with `stale=true`.
    #[error("stale nonce")]
    StaleNonce,
    /// The nonce count did not increase (replayed request).
    #[error("nonce count replayed")]
    Replay,
    /// The algorithm or qop differs from what we offered.
    #[error("unexpected algorithm or qop")]
    Unexpected,
}

/// Digest hash algorithm (RFC 7616 section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// `MD5`, the RFC 2617 default.
    #[default]
    Md5,
    /// `MD5-sess`: HA1 also covers nonce and cnonce.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// Parses an algorithm token, case-insensitively.
    pub fn parse(token: &str) -> Result<Self, AuthError> {
        match token.to_ascii_uppercase().as_str() {
            "MD5" => Ok(Self::Md5),
            "MD5-SESS" => Ok(Self::Md5Sess),
            "SHA-256" => Ok(Self::Sha256),
            "SHA-256-SESS" => Ok(Self::Sha256Sess),
            _ => Err(AuthError::UnsupportedAlgorithm(token.to_owned())),
        }
    }

    /// The token as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }

    /// Preference when a server offers several challenges: SHA-256 beats MD5.
    fn strength(self) -> u8 {
        match self {
            Self::Md5 | Self::Md5Sess => 1,
            Self::Sha256 | Self::Sha256Sess => 2,
        }
    }

    /// Lower-case hex digest of `data`.
    fn hash(self, data: &[u8]) -> String {
        match self {
            Self::Md5 | Self::Md5Sess => hex(&Md5::digest(data)),
            Self::Sha256 | Self::Sha256Sess => hex(&Sha256::digest(data)),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Quality of protection (RFC 7616 section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: authenticates method and URI.
    Auth,
    /// `auth-int`: also covers the message body.
    AuthInt,
}

impl Qop {
    /// The token as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::AuthInt => "auth-int",
        }
    }
}

/// A parsed `WWW-Authenticate` or `Proxy-Authenticate` digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Protection space, shown to users and part of HA1.
    pub realm: String,
    /// Server nonce.
    pub nonce: String,
    /// Opaque string echoed back unchanged.
    pub opaque: Option<String>,
    /// Hash algorithm.
    pub algorithm: Algorithm,
    /// Offered qop values, in server order; empty means RFC 2069 compatibility.
    pub qop: Vec<Qop>,
    /// `stale=true`: the previous credentials were right but the nonce expired.
    pub stale: bool,
}

impl Challenge {
    /// Parses a header value such as `Digest realm="x", nonce="y", qop="auth"`.
    ///
    /// # Errors
    /// [`AuthError`] when the scheme is not Digest, a mandatory parameter is
    /// missing or the algorithm is unknown. Unknown qop tokens are skipped.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let params = parse_digest_params(value)?;
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = Algorithm::Md5;
        let mut qop = Vec::new();
        let mut stale = false;
        for (name, val) in params {
            match name.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(val),
                "nonce" => nonce = Some(val),
                "opaque" => opaque = Some(val),
                "algorithm" => algorithm = Algorithm::parse(&val)?,
                "stale" => stale = val.eq_ignore_ascii_case("true"),
                "qop" => {
                    for tok in val.split(',').map(str::trim) {
                        match tok.to_ascii_lowercase().as_str() {
                            "auth" => qop.push(Qop::Auth),
                            "auth-int" => qop.push(Qop::AuthInt),
                            _ => {}
                        }
                    }
                    if qop.is_empty() {
                        return Err(AuthError::UnsupportedQop(val));
                    }
                }
                _ => {}
            }
        }
        Ok(Self {
            realm: realm.ok_or(AuthError::Missing("realm"))?,
            nonce: nonce.ok_or(AuthError::Missing("nonce"))?,
            opaque,
            algorithm,
            qop,
            stale,
        })
    }

    /// Picks the strongest supported challenge among several header values.
    ///
    /// Servers such as Asterisk send one challenge per algorithm; values that
    /// fail to parse are ignored so one exotic algorithm does not block login.
    pub fn select<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        values.into_iter().filter_map(|v| Self::parse(v).ok()).fold(
            None,
            |best: Option<Self>, c| match best {
                Some(b) if b.algorithm.strength() >= c.algorithm.strength() => Some(b),
                _ => Some(c),
            },
        )
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest realm={}", quote(&self.realm))?;
        write!(f, ", nonce={}", quote(&self.nonce))?;
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque={}", quote(opaque))?;
        }
        write!(f, ", algorithm={}", self.algorithm)?;
        if !self.qop.is_empty() {
            let list: Vec<&str> = self.qop.iter().map(|q| q.as_str()).collect();
            write!(f, ", qop={}", quote(&list.join(",")))?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        Ok(())
    }
}

/// Username and password for one trunk or device.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Authentication user name (often differs from the AOR user part).
    pub username: String,
    /// Shared secret.
    pub password: String,
}

impl Credentials {
    /// Builds credentials from a user name and password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password must never reach a log line.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The parameters of an `Authorization`/`Proxy-Authorization` digest value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// User name.
    pub username: String,
    /// Realm copied from the challenge.
    pub realm: String,
    /// Nonce copied from the challenge.
    pub nonce: String,
    /// Digest URI: the Request-URI of the request.
    pub uri: String,
    /// The computed response hash.
    pub response: String,
    /// Algorithm used.
    pub algorithm: Algorithm,
    /// Opaque copied from the challenge.
    pub opaque: Option<String>,
    /// Chosen qop, with its client nonce and nonce count.
    pub qop: Option<(Qop, String, u32)>,
}

impl Authorization {
    /// Parses a credentials header value (server side).
    ///
    /// # Errors
    /// [`AuthError`] when the value is not a well-formed digest response.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let params = parse_digest_params(value)?;
        let mut get = HashMap::new();
        for (name, val) in params {
            get.insert(name.to_ascii_lowercase(), val);
        }
        let mut take = |k: &'static str| get.remove(k).ok_or(AuthError::Missing(k));
        let username = take("username")?;
        let realm = take("realm")?;
        let nonce = take("nonce")?;
        let uri = take("uri")?;
        let response = take("response")?;
        let algorithm = match take("algorithm") {
            Ok(a) => Algorithm::parse(&a)?,
            Err(_) => Algorithm::Md5,
        };
        let opaque = take("opaque").ok();
        let qop = match take("qop") {
            Ok(q) => {
                let qop = match q.to_ascii_lowercase().as_str() {
                    "auth" => Qop::Auth,
                    "auth-int" => Qop::AuthInt,
                    _ => return Err(AuthError::UnsupportedQop(q)),
                };
                let cnonce = take("cnonce")?;
                let nc = take("nc")?;
                let nc = u32::from_str_radix(&nc, 16).map_err(|_| AuthError::Malformed("nc"))?;
                Some((qop, cnonce, nc))
            }
            Err(_) => None,
        };
        Ok(Self {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            opaque,
            qop,
        })
    }
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest username={}", quote(&self.username))?;
        write!(f, ", realm={}", quote(&self.realm))?;
        write!(f, ", nonce={}", quote(&self.nonce))?;
        write!(f, ", uri={}", quote(&self.uri))?;
        write!(f, ", response={}", quote(&self.response))?;
        write!(f, ", algorithm={}", self.algorithm)?;
        if let Some((qop, cnonce, nc)) = &self.qop {
            write!(
                f,
                ", cnonce={}, qop={}, nc={nc:08x}",
                quote(cnonce),
                qop.as_str()
            )?;
        }
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque={}", quote(opaque))?;
        }
        Ok(())
    }
}

/// Inputs of the digest computation, for callers that hold every value.
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    /// Hash algorithm.
    pub algorithm: Algorithm,
    /// User name.
    pub username: &'a str,
    /// Realm.
    pub realm: &'a str,
    /// Password.
    pub password: &'a str,
    /// Request method (`REGISTER`, `INVITE`, `GET` in the RFC examples).
    pub method: &'a str,
    /// Digest URI.
    pub uri: &'a str,
    /// Server nonce.
    pub nonce: &'a str,
    /// qop with client nonce and nonce count, or `None` for RFC 2069 mode.
    pub qop: Option<(Qop, &'a str, u32)>,
    /// Message body, hashed only for `auth-int`.
    pub body: &'a [u8],
}

/// Computes the digest `response` value (RFC 7616 section 3.4.1).
pub fn compute_response(i: &DigestInput<'_>) -> String {
    let alg = i.algorithm;
    let mut ha1 = alg.hash(format!("{}:{}:{}", i.username, i.realm, i.password).as_bytes());
    if alg.is_sess() {
        let cnonce = i.qop.map(|(_, c, _)| c).unwrap_or("");
        ha1 = alg.hash(format!("{ha1}:{}:{cnonce}", i.nonce).as_bytes());
    }
    let ha2 = match i.qop {
        Some((Qop::AuthInt, _, _)) => {
            let body = alg.hash(i.body);
            alg.hash(format!("{}:{}:{body}", i.method, i.uri).as_bytes())
        }
        _ => alg.hash(format!("{}:{}", i.method, i.uri).as_bytes()),
    };
    match i.qop {
        Some((qop, cnonce, nc)) => alg
            .hash(format!("{ha1}:{}:{nc:08x}:{cnonce}:{}:{ha2}", i.nonce, qop.as_str()).as_bytes()),
        None => alg.hash(format!("{ha1}:{}:{ha2}", i.nonce).as_bytes()),
    }
}

/// What a newly received challenge means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// A nonce we have not answered yet.
    Fresh,
    /// `stale=true`: our password was right, retry with the new nonce.
    Stale,
    /// The same nonce again without `stale`: the server rejected our answer.
    Repeated,
}

/// Client side of digest auth: remembers the current challenge and counts `nc` per nonce.
#[derive(Debug, Clone)]
pub struct DigestClient {
    credentials: Credentials,
    challenge: Option<Challenge>,
    /// Nonce count already used with `challenge.nonce`; reset when the nonce changes.
    nc: u32,
}

impl DigestClient {
    /// A client for these credentials, with no challenge yet.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            challenge: None,
            nc: 0,
        }
    }

    /// The credentials this client answers with.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The challenge currently answered, if any.
    pub fn challenge(&self) -> Option<&Challenge> {
        self.challenge.as_ref()
    }

    /// Stores a challenge and classifies it; the caller decides whether to retry.
    pub fn accept_challenge(&mut self, challenge: Challenge) -> ChallengeKind {
        let same_nonce = self
            .challenge
            .as_ref()
            .is_some_and(|c| c.nonce == challenge.nonce && c.realm == challenge.realm);
        let kind = if challenge.stale {
            ChallengeKind::Stale
        } else if same_nonce {
            ChallengeKind::Repeated
        } else {
            ChallengeKind::Fresh
        };
        if !same_nonce {
            self.nc = 0;
        }
        self.challenge = Some(challenge);
        kind
    }

    /// Forgets the challenge, e.g. after the trunk configuration changed.
    pub fn reset(&mut self) {
        self.challenge = None;
        self.nc = 0;
    }

    /// Builds credentials for a request, drawing a fresh cnonce from `rng`.
    ///
    /// # Errors
    /// [`AuthError::NoChallenge`] when no challenge was accepted yet.
    pub fn authorize(
        &mut self,
        method: &str,
        uri: &str,
        body: &[u8],
        rng: &mut dyn RngCore,
    ) -> Result<Authorization, AuthError> {
        let mut raw = [0u8; 12];
        rng.fill_bytes(&mut raw);
        self.authorize_with_cnonce(method, uri, body, &hex(&raw))
    }

    /// Like [`authorize`](Self::authorize) with a caller-chosen cnonce (test vectors).
    ///
    /// # Errors
    /// [`AuthError::NoChallenge`] when no challenge was accepted yet.
    pub fn authorize_with_cnonce(
        &mut self,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Result<Authorization, AuthError> {
        let ch = self.challenge.as_ref().ok_or(AuthError::NoChallenge)?;
        // Prefer plain auth: auth-int breaks as soon as a proxy rewrites the SDP.
        let qop = if ch.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else {
            ch.qop.first().copied()
        };
        let qop = qop.map(|q| {
            self.nc = self.nc.wrapping_add(1);
            (q, cnonce, self.nc)
        });
        let response = compute_response(&DigestInput {
            algorithm: ch.algorithm,
            username: &self.credentials.username,
            realm: &ch.realm,
            password: &self.credentials.password,
            method,
            uri,
            nonce: &ch.nonce,
            qop,
            body,
        });
        Ok(Authorization {
            username: self.credentials.username.clone(),
            realm: ch.realm.clone(),
            nonce: ch.nonce.clone(),
            uri: uri.to_owned(),
            response,
            algorithm: ch.algorithm,
            opaque: ch.opaque.clone(),
            qop: qop.map(|(q, c, n)| (q, c.to_owned(), n)),
        })
    }
}

/// Verifier settings.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Realm we challenge with.
    pub realm: String,
    /// Algorithm we offer.
    pub algorithm: Algorithm,
    /// How long an issued nonce stays valid before it is answered with `stale=true`.
    pub nonce_lifetime: Duration,
    /// Upper bound on remembered nonces; the oldest is forgotten first.
    pub max_nonces: usize,
}

impl VerifierConfig {
    /// Defaults for a realm: MD5 (what desk phones support), 5 minute nonces.
    pub fn new(realm: impl Into<String>) -> Self {
        Self {
            realm: realm.into(),
            algorithm: Algorithm::Md5,
            nonce_lifetime: Duration::from_secs(300),
            max_nonces: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct NonceState {
    issued: Instant,
    last_nc: u32,
}

/// Server side of digest auth: issues nonces and checks answers against them.
#[derive(Debug)]
pub struct DigestVerifier {
    config: VerifierConfig,
    nonces: HashMap<String, NonceState>,
}

impl DigestVerifier {
    /// A verifier with no nonces issued.
    pub fn new(config: VerifierConfig) -> Self {
        Self {
            config,
            nonces: HashMap::new(),
        }
    }

    /// Issues a new challenge; `stale` is set after [`VerifyError::StaleNonce`].
    pub fn challenge(&mut self, now: Instant, stale: bool, rng: &mut dyn RngCore) -> Challenge {
        self.prune(now);
        let mut raw = [0u8; 16];
        rng.fill_bytes(&mut raw);
        let nonce = hex(&raw);
        self.nonces.insert(
            nonce.clone(),
            NonceState {
                issued: now,
                last_nc: 0,
            },
        );
        Challenge {
            realm: self.config.realm.clone(),
            nonce,
            opaque: None,
            algorithm: self.config.algorithm,
            qop: vec![Qop::Auth],
            stale,
        }
    }

    /// Checks credentials for a request with `method`, `request_uri` and `body`.
    ///
    /// # Errors
    /// [`VerifyError`]: on `StaleNonce` send a new challenge with `stale=true`;
    /// on the others answer 403 or a fresh challenge.
    pub fn verify(
        &mut self,
        now: Instant,
        auth: &Authorization,
        method: &str,
        request_uri: &str,
        password: &str,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        if auth.realm != self.config.realm {
            return Err(VerifyError::RealmMismatch);
        }
        if auth.algorithm != self.config.algorithm {
            return Err(VerifyError::Unexpected);
        }
        if auth.uri != request_uri {
            return Err(VerifyError::UriMismatch);
        }
        let Some((qop, cnonce, nc)) = &auth.qop else {
            // We always offer qop=auth; a response without it is a downgrade.
            return Err(VerifyError::Unexpected);
        };
        let expected = compute_response(&DigestInput {
            algorithm: auth.algorithm,
            username: &auth.username,
            realm: &auth.realm,
            password,
            method,
            uri: &auth.uri,
            nonce: &auth.nonce,
            qop: Some((*qop, cnonce, *nc)),
            body,
        });
        if !constant_time_eq(
            expected.as_bytes(),
            auth.response.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(VerifyError::BadResponse);
        }
        let lifetime = self.config.nonce_lifetime;
        match self.nonces.get_mut(&auth.nonce) {
            Some(st) if now.saturating_duration_since(st.issued) <= lifetime => {
                if *nc <= st.last_nc {
                    return Err(VerifyError::Replay);
                }
                st.last_nc = *nc;
                Ok(())
            }
            _ => Err(VerifyError::StaleNonce),
        }
    }

    /// Number of nonces currently remembered.
    pub fn outstanding(&self) -> usize {
        self.nonces.len()
    }

    fn prune(&mut self, now: Instant) {
        let lifetime = self.config.nonce_lifetime;
        self.nonces
            .retain(|_, st| now.saturating_duration_since(st.issued) <= lifetime);
        while self.nonces.len() >= self.config.max_nonces.max(1) {
            let oldest = self
                .nonces
                .iter()
                .min_by_key(|(_, st)| st.issued)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.nonces.remove(&k);
                }
                None => break,
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Quotes a value as an RFC 3261 quoted-string, escaping `"` and `\`.
fn quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// Splits `Digest a=b, c="d, e"` into `(name, unquoted value)` pairs.
fn parse_digest_params(value: &str) -> Result<Vec<(String, String)>, AuthError> {
    let value = value.trim_start();
    let (scheme, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(AuthError::NotDigest);
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
        {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_ascii_whitespace() || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(AuthError::Malformed("expected '=' after parameter name"));
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(e) => val.push(e),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    _ => val.push(c),
                }
            }
            if !closed {
                return Err(AuthError::Malformed("unterminated quoted string"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        if name.is_empty() {
            return Err(AuthError::Malformed("empty parameter name"));
        }
        out.push((name, val));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// RFC 2617 section 3.5: the Mufasa example with qop=auth.
    #[test]
    fn rfc2617_example_response() {
        let ch = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .expect("valid challenge");
        assert_eq!(ch.qop, vec![Qop::Auth, Qop::AuthInt]);
        let mut client = DigestClient::new(Credentials::new("Mufasa", "Circle Of Life"));
        assert_eq!(client.accept_challenge(ch), ChallengeKind::Fresh);
        let auth = client
            .authorize_with_cnonce("GET", "/dir/index.html", b"", "0a4f113b")
            .expect("challenge present");
        assert_eq!(auth.response, "6629fae49393a05397450978507c4ef1");
        let text = auth.to_string();
        assert!(text.contains("nc=00000001"), "{text}");
        assert!(text.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#));
    }

    fn rfc7616_response(alg: &str) -> String {
        let ch = Challenge::parse(&format!(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
        ))
        .expect("valid challenge");
        let mut client = DigestClient::new(Credentials::new("Mufasa", "Circle of Life"));
        client.accept_challenge(ch);
        client
            .authorize_with_cnonce(
                "GET",
                "/dir/index.html",
                b"",
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            )
            .expect("challenge present")
            .response
    }

    /// RFC 7616 section 3.9.1 with MD5.
    #[test]
    fn rfc7616_md5_response() {
        assert_eq!(rfc7616_response("MD5"), "8ca523f5e9506fed4657c9700eebdbec");
    }

    /// RFC 7616 section 3.9.1 with SHA-256.
    #[test]
    fn rfc7616_sha256_response() {
        assert_eq!(
            rfc7616_response("SHA-256"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    /// Quoted strings keep escaped quotes and commas; unknown params are ignored.
    #[test]
    fn parses_escapes_and_flags() {
        let ch = Challenge::parse(
            r#"digest realm="a \"quoted\", realm", nonce=abc, stale=TRUE, algorithm=md5-sess, foo="bar""#,
        )
        .expect("valid challenge");
        assert_eq!(ch.realm, r#"a "quoted", realm"#);
        assert_eq!(ch.nonce, "abc");
        assert!(ch.stale);
        assert_eq!(ch.algorithm, Algorithm::Md5Sess);
        assert!(ch.qop.is_empty());
        let again = Challenge::parse(&ch.to_string()).expect("round trip");
        assert_eq!(again, ch);
    }

    /// Bad values are errors, never panics.
    #[test]
    fn rejects_malformed_challenges() {
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(AuthError::NotDigest)
        );
        assert_eq!(
            Challenge::parse("Digest nonce=\"x\""),
            Err(AuthError::Missing("realm"))
        );
        assert!(matches!(
            Challenge::parse("Digest realm=\"x\", nonce=\"y\", algorithm=SHA-512-256"),
            Err(AuthError::UnsupportedAlgorithm(_))
        ));
        assert!(Challenge::parse("Digest realm=\"x").is_err());
        assert!(Challenge::parse("Digest realm").is_err());
        assert!(Challenge::parse("").is_err());
    }

    /// SHA-256 wins over MD5 when both are offered.
    #[test]
    fn selects_strongest_challenge() {
        let ch = Challenge::select([
            r#"Digest realm="r", nonce="1", algorithm=MD5"#,
            r#"Digest realm="r", nonce="2", algorithm=SHA-256"#,
            r#"Digest realm="r", nonce="3", algorithm=FOO"#,
        ])
        .expect("one supported");
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        assert_eq!(ch.nonce, "2");
    }

    /// nc counts per nonce and restarts at 1 when the nonce changes; stale and repeats are classified.
    #[test]
    fn nonce_count_and_stale_handling() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut client = DigestClient::new(Credentials::new("u", "p"));
        let ch = |nonce: &str, stale: bool| Challenge {
            realm: "r".into(),
            nonce: nonce.into(),
            opaque: None,
            algorithm: Algorithm::Md5,
            qop: vec![Qop::Auth],
            stale,
        };
        assert_eq!(
            client.accept_challenge(ch("n1", false)),
            ChallengeKind::Fresh
        );
        let a1 = client
            .authorize("REGISTER", "sip:r", b"", &mut rng)
            .expect("ok");
        let a2 = client
            .authorize("REGISTER", "sip:r", b"", &mut rng)
            .expect("ok");
        assert_eq!(a1.qop.as_ref().map(|q| q.2), Some(1));
        assert_eq!(a2.qop.as_ref().map(|q| q.2), Some(2));
        assert_ne!(a1.qop.map(|q| q.1), a2.qop.map(|q| q.1), "cnonce is fresh");
        assert_eq!(
            client.accept_challenge(ch("n1", false)),
            ChallengeKind::Repeated
        );
        assert_eq!(
            client.accept_challenge(ch("n2", true)),
            ChallengeKind::Stale
        );
        let a3 = client
            .authorize("REGISTER", "sip:r", b"", &mut rng)
            .expect("ok");
        assert_eq!(a3.qop.map(|q| q.2), Some(1));
        assert_eq!(a3.nonce, "n2");
    }

    /// auth-int covers the body: changing the body changes the response.
    #[test]
    fn auth_int_hashes_body() {
        let base = DigestInput {
            algorithm: Algorithm::Sha256Sess,
            username: "u",
            realm: "r",
            password: "p",
            method: "INVITE",
            uri: "sip:x@y",
            nonce: "n",
            qop: Some((Qop::AuthInt, "c", 1)),
            body: b"v=0",
        };
        let other = DigestInput {
            body: b"v=1",
            ..base
        };
        assert_ne!(compute_response(&base), compute_response(&other));
    }

    /// Server round trip: a good answer passes, replay/bad password/expiry are told apart.
    #[test]
    fn verifier_round_trip() {
        let mut rng = StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        let mut verifier = DigestVerifier::new(VerifierConfig::new("namecall"));
        let ch = verifier.challenge(t0, false, &mut rng);
        let header = ch.to_string();

        let mut client = DigestClient::new(Credentials::new("desk1", "s3cret"));
        client.accept_challenge(Challenge::parse(&header).expect("own challenge parses"));
        let auth = client
            .authorize("INVITE", "sip:alice@gw", b"", &mut rng)
            .expect("ok");
        let parsed = Authorization::parse(&auth.to_string()).expect("own header parses");
        assert_eq!(parsed, auth);
        let check = |v: &mut DigestVerifier, a: &Authorization, pw: &str, at: Instant| {
            v.verify(at, a, "INVITE", "sip:alice@gw", pw, b"")
        };
        assert_eq!(check(&mut verifier, &parsed, "s3cret", t0), Ok(()));
        assert_eq!(
            check(&mut verifier, &parsed, "s3cret", t0),
            Err(VerifyError::Replay)
        );
        assert_eq!(
            check(&mut verifier, &parsed, "wrong", t0),
            Err(VerifyError::BadResponse)
        );
        assert_eq!(
            verifier.verify(t0, &parsed, "INVITE", "sip:bob@gw", "s3cret", b""),
            Err(VerifyError::UriMismatch)
        );
        let next = client
            .authorize("INVITE", "sip:alice@gw", b"", &mut rng)
            .expect("ok");
        let late = t0 + Duration::from_secs(301);
        assert_eq!(
            check(&mut verifier, &next, "s3cret", late),
            Err(VerifyError::StaleNonce)
        );
        let stale = verifier.challenge(late, true, &mut rng);
        assert!(stale.to_string().contains("stale=true"));
        assert_eq!(verifier.outstanding(), 1, "expired nonce pruned");
    }
}
