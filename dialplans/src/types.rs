//! Small validated value types of the schema: login names, extensions,
//! durations, host:port and transports.
//!
//! Each parser returns the reason for a refusal as a plain string; the
//! caller wraps it in an [`ErrorKind::Invalid`](crate::ErrorKind::Invalid)
//! with the position of the value.

use std::fmt;
use std::time::Duration;

/// A validated named login (a tenant such as `acme`, or a sub-name such as `sales`).
///
/// Lowercase ASCII letters, digits, `-` and `.`, 2 to 63 characters, not all
/// digits (so a name never looks like a phone number).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LoginName(String);

impl LoginName {
    /// Checks `s` against the login-name rules.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !(2..=63).contains(&s.len()) {
            return Err("a name has 2 to 63 characters".into());
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
        {
            return Err(format!(
                "character `{c}` is not allowed; use lowercase letters, digits, `-` and `.`"
            ));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err("a name must not be all digits".into());
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LoginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A target on the PBX: an extension number (`100`, `*97`, `#1`) or a SIP user part.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extension(String);

impl Extension {
    /// Checks `s`: 1 to 64 characters, DTMF digits or RFC 3261 user characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 {
            return Err("an extension has 1 to 64 characters".into());
        }
        // RFC 3261 `user`: unreserved / user-unreserved; `#` is added for DTMF-style codes.
        const EXTRA: &str = "-_.!~*'()&=+$,;?/#";
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || EXTRA.contains(*c)))
        {
            return Err(format!(
                "character `{c}` is not allowed; use digits, `*`, `#` or a sip user name"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The extension as text, ready for a SIP Request-URI user part.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a duration such as `30s`, `2m`, `1m30s`, `500ms` or `1h`.
///
/// A bare number is refused: `timeout: 30` could mean seconds or
/// milliseconds, and guessing wrong rings a phone for 8 hours.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("expected a number followed by a unit (ms, s, m, h), e.g. `30s`".into());
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| "number too large".to_string())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "" => return Err("missing unit; write e.g. `30s` or `2m`".into()),
            u => return Err(format!("unknown unit `{u}`; use ms, s, m or h")),
        };
        rest = &rest[unit_len..];
        total = total.saturating_add(part);
    }
    if total.is_zero() {
        return Err("duration must be greater than zero".into());
    }
    if total > Duration::from_secs(24 * 3600) {
        return Err("duration must be at most 24h".into());
    }
    Ok(total)
}

/// A SIP peer address: a host name or IP literal and an optional port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name, IPv4 address or IPv6 address (without brackets).
    pub host: String,
    /// Port; `None` means "resolve by DNS SRV or use the transport's default".
    pub port: Option<u16>,
}

impl HostPort {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or("missing `]` after an ipv6 address")?;
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("`{h}` is not an ipv6 address"))?;
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or("expected `:port` after `]`")?),
                ),
            }
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err("empty host".into());
        }
        if !s.starts_with('[')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err("a host has letters, digits, `.` and `-` (put ipv6 in brackets)".into());
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => {
                    return Err(format!("port `{p}` is not a number from 1 to 65535"));
                }
                Ok(n) => Some(n),
            },
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// SIP transport towards a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// SIP over UDP (the default, what most PBXs expect).
    #[default]
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS.
    Tls,
}

impl Transport {
    /// Parses `udp`, `tcp` or `tls`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "udp" => Ok(Self::Udp),
            "tcp" => Ok(Self::Tcp),
            "tls" => Ok(Self::Tls),
            _ => Err("expected `udp`, `tcp` or `tls`".into()),
        }
    }
}

/// How DTMF digits are sent to a trunk's PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DtmfMode {
    /// RFC 4733 telephone-events in the RTP stream (the default); in-band tones
    /// when the PBX's SDP has no telephone-event.
    #[default]
    Rfc4733,
    /// SIP INFO requests (`application/dtmf-relay`), for PBXs that ask for them.
    Info,
    /// Tones mixed into the audio, even when telephone-event was negotiated.
    Inband,
}

impl DtmfMode {
    /// Parses `rfc4733`, `info` or `inband`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "rfc4733" => Ok(Self::Rfc4733),
            "info" => Ok(Self::Info),
            "inband" => Ok(Self::Inband),
            _ => Err("expected `rfc4733`, `info` or `inband`".into()),
        }
    }
}

/// An audio codec the gateway may use with a trunk's PBX (`codecs: [opus, pcmu]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// Opus (RFC 7587): passed through from the browser untouched.
    Opus,
    /// G.722, wideband.
    G722,
    /// G.711 mu-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
}

impl AudioCodec {
    /// The default list, in preference order: Opus first (passthrough, no
    /// transcoding), then G.722 (wideband), then G.711, which every PBX speaks.
    pub const DEFAULT: [AudioCodec; 4] = [
        AudioCodec::Opus,
        AudioCodec::G722,
        AudioCodec::Pcmu,
        AudioCodec::Pcma,
    ];

    /// Parses `opus`, `g722`, `pcmu` (or `ulaw`) and `pcma` (or `alaw`), any case.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "opus" => Ok(Self::Opus),
            "g722" => Ok(Self::G722),
            "pcmu" | "ulaw" => Ok(Self::Pcmu),
            "pcma" | "alaw" => Ok(Self::Pcma),
            _ => Err("expected `opus`, `g722`, `pcmu` or `pcma`".into()),
        }
    }
}

/// A video codec a trunk passes through untouched (`video: [vp8, h264]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// VP8, what browsers send first.
    Vp8,
    /// H.264 (constrained baseline / main), what most SIP video phones speak.
    H264,
}

impl VideoCodec {
    /// What `video: true` means: VP8 first, then H.264.
    pub const DEFAULT: [VideoCodec; 2] = [VideoCodec::Vp8, VideoCodec::H264];

    /// Parses `vp8` or `h264` (any case).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("vp8") {
            Ok(Self::Vp8)
        } else if s.eq_ignore_ascii_case("h264") {
            Ok(Self::H264)
        } else {
            Err("expected `vp8` or `h264`".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Login names follow the named-login rules.
    #[test]
    fn login_names() {
        for ok in ["acme", "acme-bank", "a1", "acme.de", "24x7"] {
            assert!(LoginName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a",
            "Acme",
            "acme_bank",
            "123",
            "acme/sales",
            &"x".repeat(64),
            "",
        ] {
            assert!(LoginName::parse(bad).is_err(), "{bad}");
        }
    }

    /// Extensions accept DTMF codes and sip user parts, nothing else.
    #[test]
    fn extensions() {
        for ok in ["100", "*97", "#1", "alice", "sales.queue", "0049301234"] {
            assert!(Extension::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1 00", "a@b", "<100>", "ä"] {
            assert!(Extension::parse(bad).is_err(), "{bad}");
        }
    }

    /// Durations need a unit and stay within 24h.
    #[test]
    fn durations() {
        let table = [
            ("30s", Some(30_000u32)),
            ("2m", Some(120_000)),
            ("1m30s", Some(90_000)),
            ("500ms", Some(500)),
            ("1h", Some(3_600_000)),
            ("30", None),
            ("0s", None),
            ("25h", None),
            ("3d", None),
            ("s", None),
            ("", None),
            ("99999999999999999999999s", None),
        ];
        for (text, want) in table {
            let got = parse_duration(text).ok().map(|d| d.as_millis());
            assert_eq!(got, want.map(u128::from), "{text}");
        }
    }

    /// Host and port parse for names, IPv4 and bracketed IPv6.
    #[test]
    fn host_ports() {
        let hp = HostPort::parse("127.0.0.1:5070").expect("valid");
        assert_eq!((hp.host.as_str(), hp.port), ("127.0.0.1", Some(5070)));
        let hp = HostPort::parse("[::1]:5060").expect("valid");
        assert_eq!((hp.host.as_str(), hp.port), ("::1", Some(5060)));
        assert_eq!(hp.to_string(), "[::1]:5060");
        assert_eq!(
            HostPort::parse("pbx.example.com").expect("valid").port,
            None
        );
        for bad in [
            "",
            ":5060",
            "pbx:0",
            "pbx:70000",
            "pbx:x",
            "[::1",
            "pbx host",
            "::1",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }
}
