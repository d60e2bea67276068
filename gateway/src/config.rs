//! Command line and environment configuration of the `namecall` binary.
//!
//! Every flag has an environment fallback (`NAMECALL_*`) so containers can
//! be configured without a command line. Values are parsed here, at the edge,
//! into typed fields ([`PortRange`], [`SocketAddr`]) that the rest trusts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, Subcommand};

use crate::ice::IceServers;

/// The `namecall` command line.
#[derive(Debug, Parser)]
#[command(
    name = "namecall",
    version,
    about = "Call companies by name: WebRTC to SIP gateway"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: HTTP, WebSocket, web client and media.
    Serve(ServeConfig),
    /// Manage company admin API keys (`Authorization: Bearer` on `/v1/admin`).
    Apikey {
        /// Create or revoke.
        #[command(subcommand)]
        action: ApiKeyAction,
    },
    /// Validate a dialplan folder and print every problem as file:line:column.
    CheckDialplans {
        /// The folder of YAML files.
        #[arg(default_value = "dialplans/examples")]
        dir: PathBuf,
    },
}

/// `namecall apikey` actions.
#[derive(Debug, Subcommand)]
pub enum ApiKeyAction {
    /// Create a key for a company and print it (shown only once).
    Create {
        /// The company's name, e.g. `acme-bank`.
        tenant: String,
        /// The gateway's data directory.
        #[arg(long, env = "NAMECALL_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Revoke a key.
    Revoke {
        /// The key (`nck_...`).
        key: String,
        /// The gateway's data directory.
        #[arg(long, env = "NAMECALL_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

/// Settings of `namecall serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address of the HTTP and WebSocket server (port 0 picks a free port).
    #[arg(long = "http", env = "NAMECALL_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,

    /// Directory for the database and other state.
    #[arg(long, env = "NAMECALL_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address put into ICE candidates; default: the HTTP address, or 127.0.0.1 when that is unspecified.
    #[arg(long, env = "NAMECALL_MEDIA_IP")]
    pub media_ip: Option<IpAddr>,

    /// UDP ports for media sockets, one per call (`first-last`).
    #[arg(long, env = "NAMECALL_RTP_PORTS", default_value = "40000-40999")]
    pub rtp_ports: PortRange,

    /// Directory of dialplan YAML files.
    #[arg(long, env = "NAMECALL_DIALPLANS", default_value = "dialplans/examples")]
    pub dialplans: PathBuf,

    /// SIP listening address (UDP and TCP): trunks register from it, PBXs call it.
    #[arg(long, env = "NAMECALL_SIP", default_value = "0.0.0.0:5060")]
    pub sip: SocketAddr,

    /// Contact push services see in VAPID tokens (`mailto:` or `https:` URL).
    #[arg(
        long,
        env = "NAMECALL_PUSH_SUBJECT",
        default_value = "mailto:push@localhost"
    )]
    pub push_subject: String,

    /// Accept `http://` and loopback/private-address Web Push endpoints (a
    /// local push service, as in tests); browsers' push services are public HTTPS.
    #[arg(long, env = "NAMECALL_PUSH_ALLOW_HTTP")]
    pub push_allow_http: bool,

    /// DNS servers (`ip:port`, comma separated) for RFC 3263 lookups of
    /// trunk peers given by host name (NAPTR, SRV, A/AAAA); default: the
    /// system's (`/etc/resolv.conf`).
    #[arg(
        long = "dns-server",
        env = "NAMECALL_DNS_SERVERS",
        value_delimiter = ','
    )]
    pub dns_servers: Vec<SocketAddr>,

    /// The gateway's public IP when it sits behind 1:1 NAT: our answers then also
    /// carry a server-reflexive candidate `<external-ip>:<same port>` (like Asterisk's
    /// `external_media_address`, FreeSWITCH's `ext-rtp-ip`).
    #[arg(long, env = "NAMECALL_EXTERNAL_IP")]
    pub external_ip: Option<IpAddr>,

    /// STUN/TURN servers handed to web clients for their `RTCPeerConnection`, as a
    /// JSON list of `{"urls": ..., "username": ..., "credential": ...}` (`urls` a
    /// string or a list of `stun:`, `stuns:`, `turn:` or `turns:` URLs).
    #[arg(
        long = "ice-servers",
        env = "NAMECALL_ICE_SERVERS",
        default_value = "[]"
    )]
    pub ice_servers: IceServers,

    /// Shared secret of a coturn-style TURN server (`use-auth-secret`): `turn:`/`turns:`
    /// servers without a username get fresh TURN REST API credentials per session.
    #[arg(long, env = "NAMECALL_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// Lifetime of those TURN credentials, in seconds.
    #[arg(long, env = "NAMECALL_TURN_TTL", default_value = "86400")]
    pub turn_ttl: u64,
}

impl ServeConfig {
    /// Settings for tests: loopback everywhere, a free HTTP port, the given data dir.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        ServeConfig {
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            data_dir,
            media_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            rtp_ports: PortRange { first: 0, last: 0 },
            dialplans: PathBuf::from("dialplans/examples"),
            sip: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            push_subject: "mailto:push@localhost".to_owned(),
            push_allow_http: true,
            dns_servers: Vec::new(),
            external_ip: None,
            ice_servers: IceServers::default(),
            turn_secret: None,
            turn_ttl: 86_400,
        }
    }

    /// The IP our ICE host candidates carry.
    pub fn effective_media_ip(&self) -> IpAddr {
        match self.media_ip {
            Some(ip) => ip,
            None if self.http.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => self.http.ip(),
        }
    }
}

/// An inclusive UDP port range; `0-0` lets the OS pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

/// Why a port range did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortRangeError {
    /// The text is not `first-last` with two port numbers.
    #[error("expected first-last, e.g. 40000-40999")]
    Syntax,
    /// The first port is above the last.
    #[error("first port {0} is above last port {1}")]
    Reversed(u16, u16),
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once('-').ok_or(PortRangeError::Syntax)?;
        let first: u16 = a.trim().parse().map_err(|_| PortRangeError::Syntax)?;
        let last: u16 = b.trim().parse().map_err(|_| PortRangeError::Syntax)?;
        if first > last {
            return Err(PortRangeError::Reversed(first, last));
        }
        Ok(PortRange { first, last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Port ranges parse and reject reversed or malformed input.
    #[test]
    fn port_range_parses() {
        assert_eq!(
            "40000-40999".parse::<PortRange>(),
            Ok(PortRange {
                first: 40000,
                last: 40999
            })
        );
        assert_eq!(
            "5-4".parse::<PortRange>(),
            Err(PortRangeError::Reversed(5, 4))
        );
        assert_eq!("40000".parse::<PortRange>(), Err(PortRangeError::Syntax));
        assert_eq!("a-b".parse::<PortRange>(), Err(PortRangeError::Syntax));
    }

    /// A bad `--ice-servers` is refused when the command line is parsed, naming the
    /// flag and the key at fault; a good one reaches the config.
    #[test]
    fn ice_servers_flag_is_checked() {
        let err = Cli::try_parse_from([
            "namecall",
            "serve",
            "--ice-servers",
            r#"[{"urls":"stun:127.0.0.1"},{"urls":["turns:t.example","https://t.example"]}]"#,
        ])
        .expect_err("http scheme refused")
        .to_string();
        assert!(err.contains("--ice-servers"), "{err}");
        assert!(
            err.contains("ice_servers[1].urls[1]: unsupported scheme \"https\""),
            "{err}"
        );
        let cli = Cli::try_parse_from([
            "namecall",
            "serve",
            "--ice-servers",
            r#"[{"urls":"turn:t.example:3478"}]"#,
            "--turn-secret",
            "s",
            "--external-ip",
            "203.0.113.7",
        ])
        .expect("valid flags");
        let Command::Serve(c) = cli.command else {
            panic!("serve parsed as another command");
        };
        assert_eq!(c.ice_servers.0.len(), 1);
        assert_eq!(c.turn_secret.as_deref(), Some("s"));
        assert_eq!(c.turn_ttl, 86_400);
        assert_eq!(c.external_ip, Some("203.0.113.7".parse().expect("literal")));
    }

    /// The media IP falls back to the HTTP address, then to loopback.
    #[test]
    fn media_ip_fallbacks() {
        let mut c = ServeConfig::for_tests(PathBuf::from("/tmp"));
        c.media_ip = None;
        c.http = "10.1.2.3:80".parse().expect("literal address");
        assert_eq!(c.effective_media_ip().to_string(), "10.1.2.3");
        c.http = "0.0.0.0:80".parse().expect("literal address");
        assert_eq!(c.effective_media_ip().to_string(), "127.0.0.1");
        c.media_ip = Some("192.0.2.9".parse().expect("literal address"));
        assert_eq!(c.effective_media_ip().to_string(), "192.0.2.9");
    }
}
