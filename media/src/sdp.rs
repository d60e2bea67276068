//! SDP (RFC 8866) with a typed model, and RFC 3264 offer/answer for the RTP leg.
//!
//! The model types the fields the gateway decides on (origin, connection, media lines,
//! rtpmap/fmtp, direction, ptime, rtcp-mux) and keeps every other attribute as a generic
//! [`Attribute`], so ICE/DTLS lines from a WebRTC offer survive a parse → serialise round
//! trip untouched. [`RtpSdp`] is the negotiator for the PBX side: it builds offers, answers
//! offers (preferring a codec both legs share so the bridge can pass media through), and
//! reports the outcome as [`NegotiatedAudio`]. Every rejection is a typed [`SdpError`] that
//! the SIP layer turns into a 488.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use thiserror::Error;

use crate::codec::Codec;

/// Why an SDP body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SdpError {
    /// A line could not be parsed.
    #[error("sdp line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// A mandatory line (v=, o=, s=) is missing.
    #[error("sdp is missing the {0} line")]
    Missing(&'static str),
    /// The offer has no usable audio stream.
    #[error("no usable audio stream")]
    NoAudio,
    /// The audio stream shares no codec with us.
    #[error("no common audio codec")]
    NoCommonCodec,
    /// The transport profile is not plain RTP (for example SDES-SRTP).
    #[error("unsupported media transport {0}")]
    UnsupportedProto(String),
    /// The connection address is missing or not an IP address.
    #[error("missing or invalid connection address")]
    BadAddress,
}

/// Media direction attribute (RFC 3264 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Both ways (the default).
    #[default]
    SendRecv,
    /// Only sending.
    SendOnly,
    /// Only receiving.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }

    /// The direction an answer takes for this offered direction.
    pub fn reverse(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            other => other,
        }
    }

    /// True if this side may send.
    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// True if this side expects to receive.
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }
}

/// `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name (`-` if none).
    pub username: String,
    /// Session id.
    pub session_id: u64,
    /// Session version, incremented on each new offer.
    pub session_version: u64,
    /// Unicast address of the originator.
    pub address: String,
}

/// `c=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Address as written (IP or FQDN); `0.0.0.0` means hold (RFC 2543 style).
    pub address: String,
}

impl Connection {
    /// Builds a connection line for an IP address.
    pub fn ip(ip: IpAddr) -> Self {
        Self {
            address: ip.to_string(),
        }
    }

    /// The address as an IP, if it is one.
    pub fn to_ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }

    /// True for the old-style hold address `0.0.0.0`.
    pub fn is_hold(&self) -> bool {
        self.to_ip() == Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// A generic `a=` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Name before the colon.
    pub name: String,
    /// Value after the colon, if any.
    pub value: Option<String>,
}

impl Attribute {
    fn parse(s: &str) -> Self {
        match s.split_once(':') {
            Some((n, v)) => Self {
                name: n.to_string(),
                value: Some(v.to_string()),
            },
            None => Self {
                name: s.to_string(),
                value: None,
            },
        }
    }
}

/// `a=rtpmap:<pt> <name>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub pt: u8,
    /// Encoding name as written.
    pub encoding: String,
    /// Clock rate.
    pub clock_rate: u32,
    /// Channel count, if given.
    pub channels: Option<u8>,
}

impl RtpMap {
    /// The codec this rtpmap names, if known.
    pub fn codec(&self) -> Option<Codec> {
        Codec::from_name(&self.encoding)
    }
}

/// `a=fmtp:<pt> <params>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    /// Payload type.
    pub pt: u8,
    /// Parameters verbatim.
    pub params: String,
}

/// Media kind of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaKind {
    /// `audio`.
    Audio,
    /// `video`.
    Video,
    /// Anything else, kept verbatim (`application`, `text`, ...).
    Other(String),
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Audio => f.write_str("audio"),
            Self::Video => f.write_str("video"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Media kind.
    pub kind: MediaKind,
    /// Transport port (0 = stream rejected/disabled).
    pub port: u16,
    /// Optional port count (`m=audio 5000/2`).
    pub port_count: Option<u16>,
    /// Transport profile, e.g. `RTP/AVP` or `UDP/TLS/RTP/SAVPF`.
    pub proto: String,
    /// Format list (payload types for RTP).
    pub formats: Vec<String>,
    /// `i=` title.
    pub title: Option<String>,
    /// Media-level `c=`.
    pub connection: Option<Connection>,
    /// `b=` lines verbatim (without `b=`).
    pub bandwidth: Vec<String>,
    /// rtpmap attributes.
    pub rtpmaps: Vec<RtpMap>,
    /// fmtp attributes.
    pub fmtps: Vec<Fmtp>,
    /// Direction attribute, if present.
    pub direction: Option<Direction>,
    /// `a=ptime` in ms.
    pub ptime: Option<u32>,
    /// `a=maxptime` in ms.
    pub maxptime: Option<u32>,
    /// `a=rtcp-mux` present.
    pub rtcp_mux: bool,
    /// Other attributes in order (ICE, DTLS, ssrc, mid, ...).
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// An empty section of `kind` on `port` with `proto`.
    pub fn new(kind: MediaKind, port: u16, proto: &str) -> Self {
        Self {
            kind,
            port,
            port_count: None,
            proto: proto.to_string(),
            formats: Vec::new(),
            title: None,
            connection: None,
            bandwidth: Vec::new(),
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            direction: None,
            ptime: None,
            maxptime: None,
            rtcp_mux: false,
            attributes: Vec::new(),
        }
    }

    /// The rtpmap for a payload type, with the RFC 3551 static mapping as fallback.
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap> {
        if let Some(m) = self.rtpmaps.iter().find(|m| m.pt == pt) {
            return Some(m.clone());
        }
        Codec::from_static_pt(pt).map(|c| RtpMap {
            pt,
            encoding: c.encoding_name().to_string(),
            clock_rate: c.clock_rate(),
            channels: None,
        })
    }

    /// The fmtp parameters of a payload type.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|f| f.pt == pt)
            .map(|f| f.params.as_str())
    }

    /// Payload types of the format list that parse as numbers, in order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse().ok())
    }

    /// First generic attribute with `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=`.
    pub origin: Origin,
    /// `s=` (a single space or `-` when nothing to say).
    pub session_name: String,
    /// Lines between `s=` and `c=` (`i=`, `u=`, `e=`, `p=`) verbatim as (type, value).
    pub info_lines: Vec<(char, String)>,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines verbatim.
    pub bandwidth: Vec<String>,
    /// `t=` start and stop.
    pub timing: (u64, u64),
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    /// Other session-level attributes in order.
    pub attributes: Vec<Attribute>,
    /// Media sections.
    pub media: Vec<MediaDescription>,
}

fn syntax(line: usize, reason: &'static str) -> SdpError {
    SdpError::Syntax { line, reason }
}

fn parse_connection(v: &str, line: usize) -> Result<Connection, SdpError> {
    let mut it = v.split_whitespace();
    let (Some("IN"), Some(_addrtype), Some(addr)) = (it.next(), it.next(), it.next()) else {
        return Err(syntax(line, "c= needs IN <addrtype> <address>"));
    };
    // Strip a multicast TTL/count suffix; we never use multicast.
    let addr = addr.split('/').next().unwrap_or(addr);
    Ok(Connection {
        address: addr.to_string(),
    })
}

impl SessionDescription {
    /// Parses an SDP body. Accepts `\r\n` and bare `\n` line ends.
    ///
    /// # Errors
    /// [`SdpError::Syntax`] with the line number, or [`SdpError::Missing`].
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut origin = None;
        let mut session_name = None;
        let mut saw_version = false;
        let mut sd = SessionDescription {
            origin: Origin {
                username: "-".into(),
                session_id: 0,
                session_version: 0,
                address: String::new(),
            },
            session_name: String::new(),
            info_lines: Vec::new(),
            connection: None,
            bandwidth: Vec::new(),
            timing: (0, 0),
            direction: None,
            attributes: Vec::new(),
            media: Vec::new(),
        };
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let b = line.as_bytes();
            if b.len() < 2 || b[1] != b'=' {
                return Err(syntax(n, "expected <type>=<value>"));
            }
            let (ty, v) = (b[0] as char, &line[2..]);
            if !saw_version {
                if ty != 'v' {
                    return Err(SdpError::Missing("v="));
                }
                if v.trim() != "0" {
                    return Err(syntax(n, "only v=0 is supported"));
                }
                saw_version = true;
                continue;
            }
            let in_media = !sd.media.is_empty();
            match ty {
                'o' => {
                    let f: Vec<&str> = v.split_whitespace().collect();
                    if f.len() != 6 {
                        return Err(syntax(n, "o= needs six fields"));
                    }
                    origin = Some(Origin {
                        username: f[0].to_string(),
                        session_id: f[1].parse().map_err(|_| syntax(n, "bad session id"))?,
                        session_version: f[2]
                            .parse()
                            .map_err(|_| syntax(n, "bad session version"))?,
                        address: f[5].to_string(),
                    });
                }
                's' => session_name = Some(v.to_string()),
                'i' if in_media => {
                    if let Some(m) = sd.media.last_mut() {
                        m.title = Some(v.to_string());
                    }
                }
                'i' | 'u' | 'e' | 'p' | 'r' | 'z' | 'k' if !in_media => {
                    sd.info_lines.push((ty, v.to_string()))
                }
                'k' => {}
                'c' => {
                    let c = parse_connection(v, n)?;
                    match sd.media.last_mut() {
                        Some(m) => m.connection = Some(c),
                        None => sd.connection = Some(c),
                    }
                }
                'b' => match sd.media.last_mut() {
                    Some(m) => m.bandwidth.push(v.to_string()),
                    None => sd.bandwidth.push(v.to_string()),
                },
                't' => {
                    let mut it = v.split_whitespace().map(str::parse::<u64>);
                    match (it.next(), it.next()) {
                        (Some(Ok(a)), Some(Ok(b))) => sd.timing = (a, b),
                        _ => return Err(syntax(n, "t= needs two numbers")),
                    }
                }
                'm' => {
                    let f: Vec<&str> = v.split_whitespace().collect();
                    if f.len() < 3 {
                        return Err(syntax(n, "m= needs media, port and proto"));
                    }
                    let kind = match f[0] {
                        "audio" => MediaKind::Audio,
                        "video" => MediaKind::Video,
                        other => MediaKind::Other(other.to_string()),
                    };
                    let (port, count) = match f[1].split_once('/') {
                        Some((p, c)) => {
                            (p, Some(c.parse().map_err(|_| syntax(n, "bad port count"))?))
                        }
                        None => (f[1], None),
                    };
                    let mut m = MediaDescription::new(
                        kind,
                        port.parse().map_err(|_| syntax(n, "bad port"))?,
                        f[2],
                    );
                    m.port_count = count;
                    m.formats = f[3..].iter().map(|s| s.to_string()).collect();
                    sd.media.push(m);
                }
                'a' => {
                    let a = Attribute::parse(v);
                    let Some(m) = sd.media.last_mut() else {
                        match Direction::parse(&a.name) {
                            Some(d) if a.value.is_none() => sd.direction = Some(d),
                            _ => sd.attributes.push(a),
                        }
                        continue;
                    };
                    match (a.name.as_str(), a.value.as_deref()) {
                        ("rtpmap", Some(val)) => m.rtpmaps.push(parse_rtpmap(val, n)?),
                        ("fmtp", Some(val)) => {
                            let (pt, params) = val.split_once(' ').unwrap_or((val, ""));
                            m.fmtps.push(Fmtp {
                                pt: pt.parse().map_err(|_| syntax(n, "bad fmtp payload type"))?,
                                params: params.to_string(),
                            });
                        }
                        ("ptime", Some(val)) => {
                            m.ptime = Some(parse_ms(val).ok_or_else(|| syntax(n, "bad ptime"))?)
                        }
                        ("maxptime", Some(val)) => {
                            m.maxptime =
                                Some(parse_ms(val).ok_or_else(|| syntax(n, "bad maxptime"))?)
                        }
                        ("rtcp-mux", None) => m.rtcp_mux = true,
                        (name, None) if Direction::parse(name).is_some() => {
                            m.direction = Direction::parse(name)
                        }
                        _ => m.attributes.push(a),
                    }
                }
                _ => {
                    // RFC 8866 5: unknown types are ignored.
                }
            }
        }
        if !saw_version {
            return Err(SdpError::Missing("v="));
        }
        sd.origin = origin.ok_or(SdpError::Missing("o="))?;
        sd.session_name = session_name.ok_or(SdpError::Missing("s="))?;
        Ok(sd)
    }

    /// The effective connection of a media section (its own or the session's).
    pub fn media_connection<'a>(&'a self, m: &'a MediaDescription) -> Option<&'a Connection> {
        m.connection.as_ref().or(self.connection.as_ref())
    }

    /// The effective direction of a media section (its own, the session's, or sendrecv).
    pub fn media_direction(&self, m: &MediaDescription) -> Direction {
        m.direction.or(self.direction).unwrap_or_default()
    }
}

fn parse_ms(v: &str) -> Option<u32> {
    // Some phones write "ptime:20.0"; accept a decimal and round.
    let f: f64 = v.trim().parse().ok()?;
    (f > 0.0 && f < 10_000.0).then(|| f.round() as u32)
}

fn parse_rtpmap(v: &str, n: usize) -> Result<RtpMap, SdpError> {
    let (pt, rest) = v
        .split_once(' ')
        .ok_or_else(|| syntax(n, "rtpmap needs <pt> <encoding>"))?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next().unwrap_or_default().to_string();
    let clock_rate = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| syntax(n, "rtpmap needs a clock rate"))?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().map_err(|_| syntax(n, "bad rtpmap channels"))?),
        None => None,
    };
    Ok(RtpMap {
        pt: pt
            .parse()
            .map_err(|_| syntax(n, "bad rtpmap payload type"))?,
        encoding,
        clock_rate,
        channels,
    })
}

fn write_attr(out: &mut String, a: &Attribute) {
    match &a.value {
        Some(v) => {
            let _ = write!(out, "a={}:{}\r\n", a.name, v);
        }
        None => {
            let _ = write!(out, "a={}\r\n", a.name);
        }
    }
}

fn addr_type(addr: &str) -> &'static str {
    if addr.contains(':') { "IP6" } else { "IP4" }
}

impl fmt::Display for SessionDescription {
    /// Serialises with CRLF line ends in RFC 8866 order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let o = &self.origin;
        let _ = write!(
            s,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            addr_type(&o.address),
            o.address,
            self.session_name
        );
        for (t, v) in &self.info_lines {
            let _ = write!(s, "{t}={v}\r\n");
        }
        if let Some(c) = &self.connection {
            let _ = write!(s, "c=IN {} {}\r\n", addr_type(&c.address), c.address);
        }
        for b in &self.bandwidth {
            let _ = write!(s, "b={b}\r\n");
        }
        let _ = write!(s, "t={} {}\r\n", self.timing.0, self.timing.1);
        if let Some(d) = self.direction {
            let _ = write!(s, "a={}\r\n", d.as_str());
        }
        for a in &self.attributes {
            write_attr(&mut s, a);
        }
        for m in &self.media {
            let _ = write!(s, "m={} {}", m.kind, m.port);
            if let Some(c) = m.port_count {
                let _ = write!(s, "/{c}");
            }
            let _ = write!(s, " {}", m.proto);
            for fmt_ in &m.formats {
                let _ = write!(s, " {fmt_}");
            }
            s.push_str("\r\n");
            if let Some(t) = &m.title {
                let _ = write!(s, "i={t}\r\n");
            }
            if let Some(c) = &m.connection {
                let _ = write!(s, "c=IN {} {}\r\n", addr_type(&c.address), c.address);
            }
            for b in &m.bandwidth {
                let _ = write!(s, "b={b}\r\n");
            }
            for r in &m.rtpmaps {
                let _ = write!(s, "a=rtpmap:{} {}/{}", r.pt, r.encoding, r.clock_rate);
                if let Some(ch) = r.channels {
                    let _ = write!(s, "/{ch}");
                }
                s.push_str("\r\n");
            }
            for fp in &m.fmtps {
                let _ = write!(s, "a=fmtp:{} {}\r\n", fp.pt, fp.params);
            }
            if let Some(p) = m.ptime {
                let _ = write!(s, "a=ptime:{p}\r\n");
            }
            if let Some(p) = m.maxptime {
                let _ = write!(s, "a=maxptime:{p}\r\n");
            }
            if m.rtcp_mux {
                s.push_str("a=rtcp-mux\r\n");
            }
            if let Some(d) = m.direction {
                let _ = write!(s, "a={}\r\n", d.as_str());
            }
            for a in &m.attributes {
                write_attr(&mut s, a);
            }
        }
        f.write_str(&s)
    }
}

/// The outcome of negotiation for the RTP leg's audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiatedAudio {
    /// The audio codec both sides will use.
    pub codec: Codec,
    /// Its payload type (the offerer's number).
    pub pt: u8,
    /// telephone-event payload type, if both support it: at the codec's clock, or
    /// else at 8 kHz beside a codec of another clock (see `dtmf_clock`).
    pub dtmf_pt: Option<u8>,
    /// The telephone-event clock when it differs from the codec's (Opus with
    /// `telephone-event/8000` only).
    pub dtmf_clock: Option<u32>,
    /// Packet duration in ms (the remote's `a=ptime`, else 20).
    pub ptime: u32,
    /// Where to send RTP (`0.0.0.0:port` while held old-style).
    pub remote_addr: SocketAddr,
    /// Our direction: what we may do (RecvOnly/Inactive while the peer holds us).
    pub direction: Direction,
    /// RTCP multiplexed on the RTP port.
    pub rtcp_mux: bool,
}

impl NegotiatedAudio {
    /// True when the peer has put the call on hold (sendonly/inactive or c=0.0.0.0).
    pub fn remote_hold(&self) -> bool {
        !self.direction.sends() || self.remote_addr.ip().is_unspecified()
    }
}

/// Offer/answer negotiator for the PBX-facing RTP leg (RFC 3264).
#[derive(Debug, Clone)]
pub struct RtpSdp {
    local: SocketAddr,
    session_id: u64,
    version: u64,
    ptime: u32,
    last_offer: Option<SessionDescription>,
    /// Video offered and answered for passthrough, when the call has it.
    video: Option<VideoOffer>,
}

/// The video m-line the PBX leg offers: our video port and the browser's codec.
#[derive(Debug, Clone)]
struct VideoOffer {
    port: u16,
    /// The browser's video m-line narrowed to the codec it sends.
    template: MediaDescription,
}

/// Keyframe feedback the gateway forwards end to end, offered to the PBX for video.
const VIDEO_RTCP_FB: [&str; 2] = ["nack pli", "ccm fir"];

const DTMF_PT_8K: u8 = 101;
const DTMF_PT_48K: u8 = 110;
const OPUS_PT: u8 = 111;

impl RtpSdp {
    /// Creates a negotiator for a leg whose RTP socket is `local`; `session_id` goes in o=.
    pub fn new(local: SocketAddr, session_id: u64) -> Self {
        Self {
            local,
            session_id,
            version: 0,
            ptime: 20,
            last_offer: None,
            video: None,
        }
    }

    /// Offers and answers video on our `port` too, with the codec of `browser` (the
    /// WebRTC leg's video m-line narrowed to the one payload type the browser sends), for
    /// passthrough: same payload type number, rtpmap and fmtp, `nack pli` and `ccm fir`.
    pub fn set_video(&mut self, port: u16, browser: &MediaDescription) {
        self.video = Some(VideoOffer {
            port,
            template: browser.clone(),
        });
    }

    /// Stops offering video (a failover trunk without `video: true`); the next offer is
    /// audio only and video m-lines in the PBX's offers are refused.
    pub fn clear_video(&mut self) {
        self.video = None;
    }

    /// Whether our offers carry video.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// The video m-line of our offers (`direction` as for audio), if video is on.
    fn video_offer(&self, direction: Direction) -> Option<MediaDescription> {
        let v = self.video.as_ref()?;
        let mut m = MediaDescription::new(MediaKind::Video, v.port, "RTP/AVP");
        m.formats = v.template.formats.clone();
        m.rtpmaps = v.template.rtpmaps.clone();
        m.fmtps = v.template.fmtps.clone();
        for pt in v.template.payload_types() {
            for fb in VIDEO_RTCP_FB {
                m.attributes.push(Attribute {
                    name: "rtcp-fb".into(),
                    value: Some(format!("{pt} {fb}")),
                });
            }
        }
        m.direction = Some(direction);
        Some(m)
    }

    /// Our answer to the PBX's video m-line `om`: its payload type for our codec, our
    /// port and the reverse direction; `None` (port 0) when it does not fit.
    fn video_answer(
        &self,
        offer: &SessionDescription,
        om: &MediaDescription,
    ) -> Option<MediaDescription> {
        let v = self.video.as_ref()?;
        let pv = negotiate_pbx_video(&v.template, offer, om)?;
        let pt = pv.video.pt_b;
        let mut am = MediaDescription::new(MediaKind::Video, v.port, &om.proto);
        am.formats = vec![pt.to_string()];
        am.rtpmaps.extend(om.rtpmap(pt));
        if let Some(p) = om.fmtp(pt) {
            am.fmtps.push(Fmtp {
                pt,
                params: p.to_string(),
            });
        }
        for fb in &pv.video.rtcp_fb {
            am.attributes.push(Attribute {
                name: "rtcp-fb".into(),
                value: Some(format!("{pt} {fb}")),
            });
        }
        am.rtcp_mux = om.rtcp_mux;
        am.direction = Some(pv.direction);
        Some(am)
    }

    fn base(&mut self) -> SessionDescription {
        self.version += 1;
        let ip = self.local.ip().to_string();
        SessionDescription {
            origin: Origin {
                username: "namecall".into(),
                session_id: self.session_id,
                session_version: self.version,
                address: ip.clone(),
            },
            session_name: "namecall".into(),
            info_lines: Vec::new(),
            connection: Some(Connection { address: ip }),
            bandwidth: Vec::new(),
            timing: (0, 0),
            direction: None,
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    /// Builds an offer listing `codecs` in preference order plus telephone-event.
    /// `direction` is SendRecv normally, SendOnly to put the peer on hold.
    pub fn offer(&mut self, codecs: &[Codec], direction: Direction) -> SessionDescription {
        let mut sd = self.base();
        let mut m = MediaDescription::new(MediaKind::Audio, self.local.port(), "RTP/AVP");
        let mut clocks = Vec::new();
        for &c in codecs {
            let pt = match c {
                Codec::TelephoneEvent => continue,
                Codec::Opus => OPUS_PT,
                other => match other.static_pt() {
                    Some(pt) => pt,
                    None => continue,
                },
            };
            m.formats.push(pt.to_string());
            m.rtpmaps.push(RtpMap {
                pt,
                encoding: c.encoding_name().into(),
                clock_rate: c.clock_rate(),
                channels: (c == Codec::Opus).then_some(2),
            });
            if c == Codec::Opus {
                m.fmtps.push(Fmtp {
                    pt,
                    params: "minptime=10;useinbandfec=1".into(),
                });
            }
            if !clocks.contains(&c.clock_rate()) {
                clocks.push(c.clock_rate());
            }
        }
        for clock in clocks {
            let pt = if clock == 48000 {
                DTMF_PT_48K
            } else {
                DTMF_PT_8K
            };
            m.formats.push(pt.to_string());
            m.rtpmaps.push(RtpMap {
                pt,
                encoding: "telephone-event".into(),
                clock_rate: clock,
                channels: None,
            });
            m.fmtps.push(Fmtp {
                pt,
                params: "0-16".into(),
            });
        }
        m.ptime = Some(self.ptime);
        m.direction = Some(direction);
        sd.media.push(m);
        sd.media.extend(self.video_offer(direction));
        self.last_offer = Some(sd.clone());
        sd
    }

    /// Answers a remote offer with the first codec of `supported` (our preference order) that
    /// the offer contains; list the codec of the other leg first to get passthrough.
    ///
    /// # Errors
    /// [`SdpError::NoAudio`], [`SdpError::NoCommonCodec`], [`SdpError::UnsupportedProto`] or
    /// [`SdpError::BadAddress`]: all mean "488 Not Acceptable Here".
    pub fn answer(
        &mut self,
        offer: &SessionDescription,
        supported: &[Codec],
    ) -> Result<(SessionDescription, NegotiatedAudio), SdpError> {
        let mut sd = self.base();
        let mut chosen: Option<NegotiatedAudio> = None;
        let mut first_err = SdpError::NoAudio;
        let mut video_done = false;
        for om in &offer.media {
            if om.kind == MediaKind::Video
                && !video_done
                && let Some(vm) = self.video_answer(offer, om)
            {
                video_done = true;
                sd.media.push(vm);
                continue;
            }
            let mut am = MediaDescription::new(om.kind.clone(), 0, &om.proto);
            am.formats = om.formats.clone();
            if chosen.is_none() && om.kind == MediaKind::Audio && om.port != 0 {
                match negotiate_stream(offer, om, supported) {
                    Ok(neg) => {
                        am.port = self.local.port();
                        am.formats = vec![neg.pt.to_string()];
                        if let Some(map) = om.rtpmap(neg.pt) {
                            am.rtpmaps.push(map);
                        }
                        if let Some(p) = om.fmtp(neg.pt) {
                            am.fmtps.push(Fmtp {
                                pt: neg.pt,
                                params: p.to_string(),
                            });
                        }
                        if let Some(d) = neg.dtmf_pt {
                            am.formats.push(d.to_string());
                            am.rtpmaps.extend(om.rtpmap(d));
                            am.fmtps.push(Fmtp {
                                pt: d,
                                params: om.fmtp(d).unwrap_or("0-16").to_string(),
                            });
                        }
                        am.ptime = Some(neg.ptime);
                        am.rtcp_mux = neg.rtcp_mux;
                        am.direction = Some(neg.direction);
                        chosen = Some(neg);
                    }
                    Err(e) => first_err = e,
                }
            }
            sd.media.push(am);
        }
        let neg = chosen.ok_or(first_err)?;
        Ok((sd, neg))
    }

    /// Applies the remote answer to our last offer.
    ///
    /// # Errors
    /// As for [`RtpSdp::answer`]; also [`SdpError::NoAudio`] when no offer is outstanding.
    pub fn process_answer(
        &mut self,
        answer: &SessionDescription,
    ) -> Result<NegotiatedAudio, SdpError> {
        let offer = self.last_offer.take().ok_or(SdpError::NoAudio)?;
        let ours: Vec<Codec> = offer
            .media
            .first()
            .map(|m| {
                m.payload_types()
                    .filter_map(|pt| m.rtpmap(pt).and_then(|r| r.codec()))
                    .filter(|c| *c != Codec::TelephoneEvent)
                    .collect()
            })
            .unwrap_or_default();
        let am = answer
            .media
            .iter()
            .find(|m| m.kind == MediaKind::Audio && m.port != 0)
            .ok_or(SdpError::NoAudio)?;
        // The answerer orders by its preference: its first codec that we offered (at
        // that codec's clock), negotiated alone so the telephone-event found is the
        // one at its clock.
        let first = am
            .payload_types()
            .filter_map(|pt| am.rtpmap(pt))
            .filter_map(|r| r.codec().filter(|c| r.clock_rate == c.clock_rate()))
            .find(|c| ours.contains(c));
        match first {
            Some(c) => negotiate_stream(answer, am, &[c]),
            None => negotiate_stream(answer, am, &ours),
        }
    }
}

fn negotiate_stream(
    sd: &SessionDescription,
    m: &MediaDescription,
    supported: &[Codec],
) -> Result<NegotiatedAudio, SdpError> {
    if !matches!(m.proto.as_str(), "RTP/AVP" | "RTP/AVPF") {
        return Err(SdpError::UnsupportedProto(m.proto.clone()));
    }
    let offered: Vec<(u8, RtpMap)> = m
        .payload_types()
        .filter_map(|pt| m.rtpmap(pt).map(|r| (pt, r)))
        .collect();
    let (pt, codec, clock) = supported
        .iter()
        .filter(|c| **c != Codec::TelephoneEvent)
        .find_map(|&c| {
            offered
                .iter()
                .find(|(_, r)| r.codec() == Some(c) && r.clock_rate == c.clock_rate())
                .map(|(pt, r)| (*pt, c, r.clock_rate))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    // telephone-event at the codec's clock as RFC 4733 asks, else the 8 kHz one many
    // endpoints pair with Opus (durations then count at 8 kHz)
    let event_at = |rate: u32| {
        offered
            .iter()
            .find(|(_, r)| r.codec() == Some(Codec::TelephoneEvent) && r.clock_rate == rate)
            .map(|(pt, _)| *pt)
    };
    let (dtmf_pt, dtmf_clock) = match event_at(clock) {
        Some(pt) => (Some(pt), None),
        None if clock != 8000 => match event_at(8000) {
            Some(pt) => (Some(pt), Some(8000)),
            None => (None, None),
        },
        None => (None, None),
    };
    let conn = sd.media_connection(m).ok_or(SdpError::BadAddress)?;
    let ip = conn.to_ip().ok_or(SdpError::BadAddress)?;
    // Our direction is the reverse of theirs; c=0.0.0.0 also means "do not send to me".
    let mut direction = sd.media_direction(m).reverse();
    if conn.is_hold() {
        direction = match direction {
            Direction::SendRecv | Direction::RecvOnly => Direction::RecvOnly,
            _ => Direction::Inactive,
        };
    }
    Ok(NegotiatedAudio {
        codec,
        pt,
        dtmf_pt,
        dtmf_clock,
        ptime: m.ptime.unwrap_or(20),
        remote_addr: SocketAddr::new(ip, m.port),
        direction,
        rtcp_mux: m.rtcp_mux,
    })
}

/// A video codec the gateway passes through between legs without transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (RFC 7741).
    Vp8,
    /// H.264 (RFC 6184).
    H264,
}

impl VideoCodec {
    /// The codec an rtpmap encoding name stands for (case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("VP8") {
            Some(Self::Vp8)
        } else if name.eq_ignore_ascii_case("H264") {
            Some(Self::H264)
        } else {
            None
        }
    }

    /// The rtpmap encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vp8 => "VP8",
            Self::H264 => "H264",
        }
    }
}

/// Video both legs can exchange untouched: the same codec (and, for H.264, the same
/// profile and packetization mode), with each leg's own payload type so the relay can
/// rewrite it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedVideo {
    /// The shared codec.
    pub codec: VideoCodec,
    /// Its payload type on leg A.
    pub pt_a: u8,
    /// Its payload type on leg B.
    pub pt_b: u8,
    /// Leg A's fmtp for it, to repeat towards leg B.
    pub fmtp: Option<String>,
    /// `a=rtcp-fb` values both legs list for it (e.g. `nack pli`, `ccm fir`), without
    /// the payload type: keyframe requests are forwarded end to end only for these.
    pub rtcp_fb: Vec<String>,
}

fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

/// H.264 streams are compatible when packetization-mode (default 0) and the profile
/// (profile_idc and constraint flags, the first 4 hex digits of profile-level-id,
/// default 42e0) agree; the level may differ, the lower one is what both decode.
fn h264_compatible(a: Option<&str>, b: Option<&str>) -> bool {
    let mode = |f: Option<&str>| {
        f.and_then(|f| fmtp_param(f, "packetization-mode"))
            .unwrap_or("0")
            .to_string()
    };
    let profile = |f: Option<&str>| {
        f.and_then(|f| fmtp_param(f, "profile-level-id"))
            .and_then(|p| p.get(..4))
            .unwrap_or("42e0")
            .to_ascii_lowercase()
    };
    mode(a) == mode(b) && profile(a) == profile(b)
}

fn rtcp_fb(m: &MediaDescription, pt: u8) -> Vec<String> {
    let pt_s = pt.to_string();
    m.attributes
        .iter()
        .filter(|a| a.name == "rtcp-fb")
        .filter_map(|a| a.value.as_deref())
        .filter_map(|v| {
            let (p, rest) = v.split_once(' ')?;
            (p == pt_s || p == "*").then(|| rest.trim().to_string())
        })
        .collect()
}

/// The PBX's side of passthrough video, from its SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbxVideo {
    /// The shared codec; leg A is the browser, leg B the PBX.
    pub video: NegotiatedVideo,
    /// Where to send video RTP.
    pub remote: SocketAddr,
    /// Our direction towards the PBX (RecvOnly/Inactive while it holds us).
    pub direction: Direction,
    /// RTCP multiplexed on the RTP port.
    pub rtcp_mux: bool,
}

/// Negotiates the PBX's video m-line `m` of `sd` (an answer to our offer, or a
/// re-INVITE's offer) against the browser's m-line narrowed to its codec. `None` when
/// the PBX refused video (port 0), shares no codec, or gives no usable address.
pub fn negotiate_pbx_video(
    browser: &MediaDescription,
    sd: &SessionDescription,
    m: &MediaDescription,
) -> Option<PbxVideo> {
    if !matches!(m.proto.as_str(), "RTP/AVP" | "RTP/AVPF") {
        return None;
    }
    let codecs: Vec<VideoCodec> = browser
        .rtpmaps
        .iter()
        .filter_map(|r| VideoCodec::from_name(&r.encoding))
        .collect();
    let video = negotiate_video_passthrough(browser, m, &codecs)?;
    let conn = sd.media_connection(m)?;
    let ip = conn.to_ip()?;
    let mut direction = sd.media_direction(m).reverse();
    if conn.is_hold() {
        direction = match direction {
            Direction::SendRecv | Direction::RecvOnly => Direction::RecvOnly,
            _ => Direction::Inactive,
        };
    }
    Some(PbxVideo {
        video,
        remote: SocketAddr::new(ip, m.port),
        direction,
        rtcp_mux: m.rtcp_mux,
    })
}

/// The first video m-line of `sd` negotiated as [`negotiate_pbx_video`] does.
pub fn pbx_video(browser: &MediaDescription, sd: &SessionDescription) -> Option<PbxVideo> {
    let m = sd.media.iter().find(|m| m.kind == MediaKind::Video)?;
    negotiate_pbx_video(browser, sd, m)
}

/// Picks the first codec of `prefer` that video m-lines `a` and `b` (one per leg) both
/// offer, for passthrough without transcoding. `None` when a side has no video (port 0)
/// or nothing matches: the video stream is then rejected on both legs.
pub fn negotiate_video_passthrough(
    a: &MediaDescription,
    b: &MediaDescription,
    prefer: &[VideoCodec],
) -> Option<NegotiatedVideo> {
    if a.kind != MediaKind::Video || b.kind != MediaKind::Video || a.port == 0 || b.port == 0 {
        return None;
    }
    let maps = |m: &MediaDescription| -> Vec<(u8, VideoCodec)> {
        m.payload_types()
            .filter_map(|pt| {
                let r = m.rtpmap(pt)?;
                (r.clock_rate == 90_000).then_some(())?;
                Some((pt, VideoCodec::from_name(&r.encoding)?))
            })
            .collect()
    };
    let (ma, mb) = (maps(a), maps(b));
    for &want in prefer {
        for &(pt_a, _) in ma.iter().filter(|(_, c)| *c == want) {
            let fa = a.fmtp(pt_a);
            let found = mb
                .iter()
                .filter(|(_, c)| *c == want)
                .find(|&&(pt_b, _)| want != VideoCodec::H264 || h264_compatible(fa, b.fmtp(pt_b)));
            if let Some(&(pt_b, _)) = found {
                let fb_b = rtcp_fb(b, pt_b);
                return Some(NegotiatedVideo {
                    codec: want,
                    pt_a,
                    pt_b,
                    fmtp: fa.map(str::to_string),
                    rtcp_fb: rtcp_fb(a, pt_a)
                        .into_iter()
                        .filter(|f| fb_b.contains(f))
                        .collect(),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod video_tests {
    use super::*;

    fn video(text: &str) -> MediaDescription {
        let sd = SessionDescription::parse(&format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{text}"
        ))
        .expect("sdp parses");
        sd.media.into_iter().next().expect("one m-line")
    }

    const BROWSER_VP8: &str = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n\
        a=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 ccm fir\r\n";

    fn session(media: &str) -> SessionDescription {
        SessionDescription::parse(&format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
             m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{media}"
        ))
        .expect("sdp parses")
    }

    /// The PBX offer carries the browser's codec on our video port with PLI/FIR feedback;
    /// a desk phone's answer gives its address, payload type and the feedback both list;
    /// a refused (port 0) or codec-less answer means audio only.
    #[test]
    fn pbx_offer_and_answer_with_video() {
        let mut sdp = RtpSdp::new("127.0.0.1:20000".parse().expect("addr"), 7);
        sdp.set_video(20002, &video(BROWSER_VP8));
        let offer = sdp.offer(&[Codec::Pcmu], Direction::SendRecv);
        let text = offer.to_string();
        assert!(text.contains("m=video 20002 RTP/AVP 96\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:96 VP8/90000\r\n"));
        assert!(
            text.contains("a=rtcp-fb:96 nack pli\r\n") && text.contains("a=rtcp-fb:96 ccm fir\r\n")
        );
        assert!(!text.contains("goog-remb"), "only the feedback we forward");
        let answer = session(
            "m=video 30002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:* nack pli\r\na=sendrecv\r\n",
        );
        let neg = sdp.process_answer(&answer).expect("audio still negotiates");
        assert_eq!(neg.codec, Codec::Pcmu);
        let v = pbx_video(&video(BROWSER_VP8), &answer).expect("video agreed");
        assert_eq!(v.remote, "192.0.2.10:30002".parse().expect("addr"));
        assert_eq!((v.video.pt_a, v.video.pt_b), (96, 96));
        assert_eq!(v.video.rtcp_fb, ["nack pli"]);
        assert_eq!(v.direction, Direction::SendRecv);
        let refused = session("m=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n");
        assert_eq!(pbx_video(&video(BROWSER_VP8), &refused), None);
        let h264 = session("m=video 30002 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\n");
        assert_eq!(pbx_video(&video(BROWSER_VP8), &h264), None);
        assert_eq!(pbx_video(&video(BROWSER_VP8), &session("")), None);
    }

    /// A hold re-INVITE from the PBX with video gets video back on our port, recvonly, in
    /// its payload type; a video m-line we cannot take is refused with port 0.
    #[test]
    fn reinvite_answers_video() {
        let mut sdp = RtpSdp::new("127.0.0.1:20000".parse().expect("addr"), 7);
        sdp.set_video(20002, &video(BROWSER_VP8));
        let hold = session(
            "a=sendonly\r\nm=video 30002 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\na=sendonly\r\n",
        );
        let (answer, neg) = sdp.answer(&hold, &[Codec::Pcmu]).expect("answer");
        assert!(neg.remote_hold());
        let vm = &answer.media[1];
        assert_eq!((vm.kind.clone(), vm.port), (MediaKind::Video, 20002));
        assert_eq!(
            (vm.formats.clone(), vm.direction),
            (vec!["100".to_string()], Some(Direction::RecvOnly))
        );
        let h264 = session("m=video 30002 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\n");
        let (answer, _) = sdp.answer(&h264, &[Codec::Pcmu]).expect("answer");
        assert_eq!(answer.media[1].port, 0);
        // video switched off (failover to a trunk without video): audio-only offers,
        // and the PBX's video is refused
        assert!(sdp.has_video());
        sdp.clear_video();
        assert!(!sdp.has_video());
        let offer = sdp.offer(&[Codec::Pcmu], Direction::SendRecv);
        assert_eq!(offer.media.len(), 1);
        let (answer, _) = sdp.answer(&hold, &[Codec::Pcmu]).expect("answer");
        assert_eq!(answer.media[1].port, 0);
    }

    #[test]
    fn vp8_and_h264_pass_through_with_each_legs_pt() {
        let browser = video(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 102 108\r\na=rtpmap:96 VP8/90000\r\n\
             a=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 goog-remb\r\n\
             a=rtpmap:102 H264/90000\r\n\
             a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
             a=rtpmap:108 H264/90000\r\n\
             a=fmtp:108 packetization-mode=0;profile-level-id=42e01f\r\n",
        );
        let pbx = video(
            "m=video 5004 RTP/AVPF 99 100\r\na=rtpmap:99 H264/90000\r\n\
             a=fmtp:99 profile-level-id=42e01e\r\na=rtcp-fb:* nack pli\r\n\
             a=rtpmap:100 VP8/90000\r\n",
        );
        let v = negotiate_video_passthrough(&browser, &pbx, &[VideoCodec::Vp8, VideoCodec::H264])
            .expect("vp8");
        assert_eq!((v.codec, v.pt_a, v.pt_b), (VideoCodec::Vp8, 96, 100));
        assert_eq!(v.rtcp_fb, vec!["nack pli".to_string()]);
        // H.264 pairs only with the same profile and packetization mode (108, not 102).
        let h = negotiate_video_passthrough(&browser, &pbx, &[VideoCodec::H264]).expect("h264");
        assert_eq!((h.pt_a, h.pt_b), (108, 99));
        assert!(h.fmtp.as_deref().is_some_and(|f| f.contains("42e01f")));
    }

    #[test]
    fn no_common_video_or_rejected_stream() {
        let a = video("m=video 9 RTP/AVPF 96\r\na=rtpmap:96 VP8/90000\r\n");
        let b = video("m=video 5004 RTP/AVPF 97\r\na=rtpmap:97 H264/90000\r\n");
        assert_eq!(
            negotiate_video_passthrough(&a, &b, &[VideoCodec::Vp8, VideoCodec::H264]),
            None
        );
        let off = video("m=video 0 RTP/AVPF 96\r\na=rtpmap:96 VP8/90000\r\n");
        assert_eq!(
            negotiate_video_passthrough(&a, &off, &[VideoCodec::Vp8]),
            None
        );
        let audio = video("m=audio 4000 RTP/AVP 0\r\n");
        assert_eq!(
            negotiate_video_passthrough(&a, &audio, &[VideoCodec::Vp8]),
            None
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASTERISK_OFFER: &str = "v=0\r\no=- 1234 1234 IN IP4 192.0.2.10\r\ns=Asterisk\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 17000 RTP/AVP 8 0 9 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:30\r\na=maxptime:150\r\na=sendrecv\r\n";

    const WEBRTC_OFFER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\na=ice-options:trickle\r\na=fingerprint:sha-256 AA:BB:CC\r\na=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=rtcp-mux\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=rtpmap:126 telephone-event/8000\r\na=ssrc:1 cname:x\r\n";

    /// A WebRTC offer with ICE/DTLS attributes survives parse → serialise → parse unchanged.
    #[test]
    fn webrtc_offer_round_trips_unknown_attributes() {
        let sd = SessionDescription::parse(WEBRTC_OFFER).expect("valid");
        let m = &sd.media[0];
        assert_eq!(m.proto, "UDP/TLS/RTP/SAVPF");
        assert!(m.rtcp_mux);
        assert_eq!(m.direction, Some(Direction::SendRecv));
        assert_eq!(
            m.attribute("ice-ufrag").and_then(|a| a.value.as_deref()),
            Some("abcd")
        );
        assert_eq!(
            m.attribute("setup").and_then(|a| a.value.as_deref()),
            Some("actpass")
        );
        assert_eq!(
            m.rtpmap(111).map(|r| (r.codec(), r.channels)),
            Some((Some(Codec::Opus), Some(2)))
        );
        assert_eq!(m.fmtp(111), Some("minptime=10;useinbandfec=1"));
        assert_eq!(sd.attributes[0].value.as_deref(), Some("BUNDLE 0"));
        let text = sd.to_string();
        assert_eq!(SessionDescription::parse(&text), Ok(sd));
        assert!(text.contains("a=fingerprint:sha-256 AA:BB:CC\r\n"));
    }

    /// telephone-event at Opus's 48 kHz is taken when offered; a phone that pairs Opus
    /// with `telephone-event/8000` only (baresip, older Asterisk) still gets RFC 4733,
    /// with the 8 kHz clock noted for the event durations.
    #[test]
    fn opus_telephone_event_clock() {
        let local: SocketAddr = "198.51.100.1:40000".parse().expect("addr");
        let offer = |events: &str| {
            SessionDescription::parse(&format!(
                "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
                 m=audio 17000 RTP/AVP 96 {events}\r\na=rtpmap:96 opus/48000/2\r\n\
                 a=rtpmap:101 telephone-event/8000\r\na=rtpmap:110 telephone-event/48000\r\n"
            ))
            .expect("valid")
        };
        let codecs = [Codec::Opus, Codec::Pcmu, Codec::TelephoneEvent];
        let (_, n) = RtpSdp::new(local, 1)
            .answer(&offer("101 110"), &codecs)
            .expect("answer");
        assert_eq!(
            (n.codec, n.dtmf_pt, n.dtmf_clock),
            (Codec::Opus, Some(110), None)
        );
        let (answer, n) = RtpSdp::new(local, 1)
            .answer(&offer("101"), &codecs)
            .expect("answer");
        assert_eq!((n.dtmf_pt, n.dtmf_clock), (Some(101), Some(8000)));
        assert!(
            answer
                .to_string()
                .contains("a=rtpmap:101 telephone-event/8000")
        );
        let (_, n) = RtpSdp::new(local, 1)
            .answer(&offer(""), &codecs)
            .expect("answer");
        assert_eq!((n.dtmf_pt, n.dtmf_clock), (None, None));
    }

    /// An answer listing several of our codecs: the answerer's first one is taken, with
    /// the telephone-event at its clock (PCMU with te/8000 even though Opus and
    /// te/48000 are listed too; Opus with te/8000 only notes the 8 kHz event clock).
    #[test]
    fn process_answer_takes_the_answerers_codec_and_its_event_clock() {
        let local: SocketAddr = "198.51.100.1:40000".parse().expect("addr");
        let codecs = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::TelephoneEvent];
        let answer = |fmts: &str| {
            SessionDescription::parse(&format!(
                "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
                 m=audio 17000 RTP/AVP {fmts}\r\na=rtpmap:0 PCMU/8000\r\n\
                 a=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
                 a=rtpmap:110 telephone-event/48000\r\n"
            ))
            .expect("valid")
        };
        let negotiate = |fmts: &str| {
            let mut sdp = RtpSdp::new(local, 1);
            sdp.offer(&codecs, Direction::SendRecv);
            sdp.process_answer(&answer(fmts)).expect("usable answer")
        };
        let n = negotiate("0 111 101 110");
        assert_eq!(
            (n.codec, n.pt, n.dtmf_pt, n.dtmf_clock),
            (Codec::Pcmu, 0, Some(101), None)
        );
        let n = negotiate("111 0 101 110");
        assert_eq!(
            (n.codec, n.pt, n.dtmf_pt, n.dtmf_clock),
            (Codec::Opus, 111, Some(110), None)
        );
        let n = negotiate("111 0 101");
        assert_eq!(
            (n.codec, n.dtmf_pt, n.dtmf_clock),
            (Codec::Opus, Some(101), Some(8000))
        );
    }

    /// Answering an Asterisk offer: passthrough codec preferred, offerer's PTs, ptime, DTMF.
    #[test]
    fn answer_prefers_shared_codec_and_keeps_offer_pts() {
        let offer = SessionDescription::parse(ASTERISK_OFFER).expect("valid");
        let local: SocketAddr = "198.51.100.1:40000".parse().expect("addr");
        let mut neg = RtpSdp::new(local, 42);
        let (ans, a) = neg
            .answer(&offer, &[Codec::Opus, Codec::Pcmu, Codec::Pcma])
            .expect("answer");
        assert_eq!(
            a.codec,
            Codec::Pcmu,
            "our preference wins among offered codecs"
        );
        assert_eq!((a.pt, a.dtmf_pt, a.ptime), (0, Some(101), 30));
        assert_eq!(
            a.remote_addr,
            "192.0.2.10:17000".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(a.direction, Direction::SendRecv);
        assert!(!a.remote_hold());
        let text = ans.to_string();
        assert!(text.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{text}");
        assert!(text.contains("c=IN IP4 198.51.100.1\r\n"));
        assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        // Passthrough: if the other leg is G.722 capable... here PCMA first picks PCMA.
        let (_, a) = neg
            .answer(&offer, &[Codec::Pcma, Codec::Pcmu])
            .expect("answer");
        assert_eq!((a.codec, a.pt), (Codec::Pcma, 8));
    }

    /// Hold is detected from sendonly, inactive and c=0.0.0.0; answers mirror the direction.
    #[test]
    fn hold_detection() {
        let local: SocketAddr = "198.51.100.1:40000".parse().expect("addr");
        let mut neg = RtpSdp::new(local, 1);
        let cases = [
            (
                ASTERISK_OFFER.replace("a=sendrecv", "a=sendonly"),
                Direction::RecvOnly,
            ),
            (
                ASTERISK_OFFER.replace("a=sendrecv", "a=inactive"),
                Direction::Inactive,
            ),
            (
                ASTERISK_OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0"),
                Direction::RecvOnly,
            ),
        ];
        for (text, want) in cases {
            let offer = SessionDescription::parse(&text).expect("valid");
            let (ans, a) = neg.answer(&offer, &[Codec::Pcmu]).expect("answer");
            assert!(a.remote_hold(), "{text}");
            assert_eq!(a.direction, want);
            assert_eq!(ans.media[0].direction, Some(want));
        }
    }

    /// Our offer lists codecs with PTs and telephone-event; the answer is applied.
    #[test]
    fn offer_then_process_answer() {
        let local: SocketAddr = "198.51.100.1:40000".parse().expect("addr");
        let mut neg = RtpSdp::new(local, 7);
        let offer = neg.offer(
            &[Codec::Pcmu, Codec::Pcma, Codec::Opus],
            Direction::SendRecv,
        );
        let text = offer.to_string();
        assert!(
            text.contains("m=audio 40000 RTP/AVP 0 8 111 101 110\r\n"),
            "{text}"
        );
        assert!(text.contains("a=rtpmap:111 opus/48000/2\r\n"));
        assert!(text.contains("a=rtpmap:110 telephone-event/48000\r\n"));
        assert_eq!(offer.origin.session_version, 1);
        let answer = "v=0\r\no=pbx 5 5 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 30000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n";
        let a = neg
            .process_answer(&SessionDescription::parse(answer).expect("valid"))
            .expect("negotiated");
        assert_eq!((a.codec, a.pt, a.dtmf_pt), (Codec::Pcma, 8, Some(101)));
        assert_eq!(a.remote_addr.port(), 30000);
        assert_eq!(
            neg.process_answer(&SessionDescription::parse(answer).expect("valid")),
            Err(SdpError::NoAudio)
        );
    }

    /// Bad bodies give typed errors for a 488, never a panic.
    #[test]
    fn typed_errors() {
        let local: SocketAddr = "198.51.100.1:40000".parse().expect("addr");
        let mut neg = RtpSdp::new(local, 1);
        assert_eq!(SessionDescription::parse(""), Err(SdpError::Missing("v=")));
        assert_eq!(
            SessionDescription::parse("v=0\r\ns=x\r\n"),
            Err(SdpError::Missing("o="))
        );
        assert!(matches!(
            SessionDescription::parse("v=0\r\nbogus\r\n"),
            Err(SdpError::Syntax { line: 2, .. })
        ));
        assert!(matches!(
            SessionDescription::parse(&ASTERISK_OFFER.replace("17000", "70000")),
            Err(SdpError::Syntax { line: 6, .. })
        ));
        let offer = SessionDescription::parse(ASTERISK_OFFER).expect("valid");
        assert_eq!(
            neg.answer(&offer, &[Codec::Opus]).map(|_| ()),
            Err(SdpError::NoCommonCodec)
        );
        let webrtc = SessionDescription::parse(WEBRTC_OFFER).expect("valid");
        assert!(matches!(
            neg.answer(&webrtc, &[Codec::Opus]),
            Err(SdpError::UnsupportedProto(_))
        ));
        let no_c = ASTERISK_OFFER.replace("c=IN IP4 192.0.2.10\r\n", "");
        let offer = SessionDescription::parse(&no_c).expect("valid");
        assert_eq!(
            neg.answer(&offer, &[Codec::Pcmu]).map(|_| ()),
            Err(SdpError::BadAddress)
        );
        // Video-only offer: no audio.
        let video = ASTERISK_OFFER.replace("m=audio", "m=video");
        let offer = SessionDescription::parse(&video).expect("valid");
        assert_eq!(
            neg.answer(&offer, &[Codec::Pcmu]).map(|_| ()),
            Err(SdpError::NoAudio)
        );
        // Pseudo-random mutations of a valid offer never panic.
        let base = ASTERISK_OFFER.as_bytes();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut b = base.to_vec();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pos = (x as usize) % b.len();
                b[pos] = (x >> 32) as u8;
            }
            if let Ok(text) = std::str::from_utf8(&b)
                && let Ok(sd) = SessionDescription::parse(text)
            {
                let _ = RtpSdp::new(local, 1).answer(&sd, &[Codec::Pcmu]);
            }
        }
        // Garbage never panics.
        for s in [
            "v=0\r\no=\r\n",
            "v=0\n=\n",
            "v=0\r\nm=\r\n",
            "v=0\r\na=rtpmap:\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:x\r\n",
            "\u{1F600}=x",
        ] {
            let _ = SessionDescription::parse(s);
        }
    }
}
