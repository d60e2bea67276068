//! The STUN/TURN servers web clients get for their `RTCPeerConnection`.
//!
//! The operator lists servers with `--ice-servers` (JSON, parsed and checked here at
//! the edge into [`IceServers`]); with `--turn-secret` a coturn-style TURN server
//! (`use-auth-secret`) gets fresh TURN REST API credentials per session:
//! username `<expiry-unix>:<login>`, credential `base64(HMAC-SHA1(secret, username))`.
//! The session hands the result to the client in its `welcome` frame.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

/// One `RTCIceServer`: its URLs and, for TURN, static credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// The TURN username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The TURN password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl IceServer {
    /// Whether any URL is a TURN one (which needs credentials).
    fn is_turn(&self) -> bool {
        self.urls.iter().any(|u| {
            let scheme = u.split(':').next().unwrap_or_default();
            scheme.eq_ignore_ascii_case("turn") || scheme.eq_ignore_ascii_case("turns")
        })
    }
}

/// The configured list, validated (`--ice-servers`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServers(pub Vec<IceServer>);

/// Why `--ice-servers` (or its pairing with `--turn-secret`) is refused; `key` says
/// where, e.g. `ice_servers[0].urls[1]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {detail}")]
pub struct IceConfigError {
    /// The offending key.
    pub key: String,
    /// What is wrong.
    pub detail: String,
}

/// The JSON shape of one entry, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    urls: Urls,
    username: Option<String>,
    credential: Option<String>,
}

/// `urls` may be one string or a list, as in `RTCIceServer`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Urls {
    One(String),
    Many(Vec<String>),
}

impl FromStr for IceServers {
    type Err = IceConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw: Vec<RawServer> = serde_json::from_str(s).map_err(|e| IceConfigError {
            key: "ice_servers".into(),
            detail: format!("expected a JSON list of {{urls, username?, credential?}}: {e}"),
        })?;
        let mut servers = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let urls = match r.urls {
                Urls::One(u) => vec![u],
                Urls::Many(us) => us,
            };
            if urls.is_empty() {
                return Err(IceConfigError {
                    key: format!("ice_servers[{i}].urls"),
                    detail: "no URL".into(),
                });
            }
            for (j, url) in urls.iter().enumerate() {
                check_url(url).map_err(|detail| IceConfigError {
                    key: format!("ice_servers[{i}].urls[{j}]"),
                    detail,
                })?;
            }
            if r.username.is_some() != r.credential.is_some() {
                return Err(IceConfigError {
                    key: format!("ice_servers[{i}]"),
                    detail: "username and credential go together".into(),
                });
            }
            servers.push(IceServer {
                urls,
                username: r.username,
                credential: r.credential,
            });
        }
        Ok(IceServers(servers))
    }
}

/// Checks one URL (RFC 7064 `stun:`/`stuns:`, RFC 7065 `turn:`/`turns:`): a known
/// scheme and a host.
fn check_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(format!(
            "{url:?} has no scheme (expected stun:, stuns:, turn: or turns:)"
        ));
    };
    if !["stun", "stuns", "turn", "turns"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return Err(format!(
            "unsupported scheme {scheme:?} in {url:?} (expected stun:, stuns:, turn: or turns:)"
        ));
    }
    let host = rest.split(['?', ':']).next().unwrap_or_default();
    let host = if rest.starts_with('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host
    };
    if host.is_empty() || rest.starts_with("//") {
        return Err(format!(
            "{url:?} has no host (e.g. turn:turn.example.com:3478)"
        ));
    }
    Ok(())
}

/// TURN REST API credentials (coturn `use-auth-secret`): username
/// `<expiry_unix>:<login>`, credential `base64(HMAC-SHA1(secret, username))`.
pub fn turn_rest_credentials(secret: &str, login: &str, expiry_unix: u64) -> (String, String) {
    let username = format!("{expiry_unix}:{login}");
    // HMAC takes keys of any length; new_from_slice cannot fail for it
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(e) => unreachable!("hmac accepts any key length: {e}"),
    };
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

/// What sessions hand their clients: the servers, and how to mint TURN credentials.
#[derive(Clone, Default)]
pub struct ClientIce {
    servers: IceServers,
    turn_secret: Option<String>,
    turn_ttl: u64,
}

impl fmt::Debug for ClientIce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIce")
            .field("servers", &self.servers)
            .field("turn_secret", &self.turn_secret.as_ref().map(|_| "<set>"))
            .field("turn_ttl", &self.turn_ttl)
            .finish()
    }
}

impl ClientIce {
    /// Checks the servers against the secret: a TURN server needs a username and
    /// credential, or `--turn-secret` to mint them (browsers refuse TURN without).
    ///
    /// # Errors
    /// [`IceConfigError`] naming the server.
    pub fn new(
        servers: IceServers,
        turn_secret: Option<String>,
        turn_ttl: u64,
    ) -> Result<Self, IceConfigError> {
        if turn_secret.as_deref() == Some("") {
            return Err(IceConfigError {
                key: "turn_secret".into(),
                detail: "empty".into(),
            });
        }
        if turn_ttl == 0 {
            return Err(IceConfigError {
                key: "turn_ttl".into(),
                detail: "must be at least 1 second".into(),
            });
        }
        for (i, s) in servers.0.iter().enumerate() {
            if s.is_turn() && s.username.is_none() && turn_secret.is_none() {
                return Err(IceConfigError {
                    key: format!("ice_servers[{i}]"),
                    detail: "a TURN server needs username and credential, or --turn-secret".into(),
                });
            }
        }
        Ok(ClientIce {
            servers,
            turn_secret,
            turn_ttl,
        })
    }

    /// The servers for `login`'s client at `now`: TURN servers without static
    /// credentials get TURN REST ones that expire `turn_ttl` seconds from now.
    pub fn for_login(&self, login: &str, now: SystemTime) -> Vec<IceServer> {
        let unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.servers
            .0
            .iter()
            .map(|s| {
                let mut s = s.clone();
                if let (true, None, Some(secret)) = (s.is_turn(), &s.username, &self.turn_secret) {
                    let (u, c) =
                        turn_rest_credentials(secret, login, unix.saturating_add(self.turn_ttl));
                    s.username = Some(u);
                    s.credential = Some(c);
                }
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The credential matches one computed by OpenSSL:
    /// `printf 1700000000:alice | openssl dgst -sha1 -hmac north -binary | base64`.
    #[test]
    fn turn_rest_credential_known_vector() {
        let (u, c) = turn_rest_credentials("north", "alice", 1_700_000_000);
        assert_eq!(u, "1700000000:alice");
        assert_eq!(c, OPENSSL_VECTOR);
    }

    const OPENSSL_VECTOR: &str = "Cd/49soE35ICqcJF/bCTn8Z4OyE=";

    /// RFC 2202 test case 2 (HMAC-SHA1, key "Jefe"): the MAC itself, base64 encoded.
    #[test]
    fn hmac_sha1_rfc2202() {
        let mut mac = Hmac::<Sha1>::new_from_slice(b"Jefe").expect("any key length");
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    /// Valid lists parse; `urls` may be a string or a list.
    #[test]
    fn parses_ice_servers() {
        let s: IceServers = r#"[{"urls":"stun:127.0.0.1:3478"},
            {"urls":["turn:turn.example.com:3478?transport=udp","turns:[2001:db8::1]:5349"],
             "username":"u","credential":"p"}]"#
            .parse()
            .expect("valid");
        assert_eq!(s.0.len(), 2);
        assert_eq!(s.0[0].urls, vec!["stun:127.0.0.1:3478".to_owned()]);
        assert_eq!(s.0[1].username.as_deref(), Some("u"));
        assert_eq!("[]".parse::<IceServers>(), Ok(IceServers::default()));
    }

    /// Bad input is a config error that names the key.
    #[test]
    fn rejects_bad_ice_servers() {
        let err = |s: &str| s.parse::<IceServers>().expect_err(s);
        let e = err(r#"[{"urls":"stun:a"},{"urls":["turn:b","http://c"]}]"#);
        assert_eq!(e.key, "ice_servers[1].urls[1]");
        assert!(e.detail.contains("unsupported scheme \"http\""), "{e}");
        assert!(e.to_string().starts_with("ice_servers[1].urls[1]: "), "{e}");
        assert_eq!(err(r#"[{"urls":"turn:"}]"#).key, "ice_servers[0].urls[0]");
        assert_eq!(err(r#"[{"urls":"turn"}]"#).key, "ice_servers[0].urls[0]");
        assert_eq!(err(r#"[{"urls":[]}]"#).key, "ice_servers[0].urls");
        assert_eq!(
            err(r#"[{"urls":"turn:a","username":"u"}]"#).key,
            "ice_servers[0]"
        );
        assert_eq!(err(r#"[{"urls":"stun:a","pass":"x"}]"#).key, "ice_servers");
        assert_eq!(err("stun:a").key, "ice_servers");
    }

    /// A TURN server without credentials needs the secret; with it, each login gets
    /// fresh credentials; static ones and STUN servers pass unchanged.
    #[test]
    fn mints_credentials_per_login() {
        let servers: IceServers = r#"[{"urls":"stun:127.0.0.1:3478"},
            {"urls":"turn:127.0.0.1:3478"},
            {"urls":"turn:10.0.0.1","username":"s","credential":"t"}]"#
            .parse()
            .expect("valid");
        let e = ClientIce::new(servers.clone(), None, 60).expect_err("turn needs a secret");
        assert_eq!(e.key, "ice_servers[1]");
        assert_eq!(
            ClientIce::new(servers.clone(), Some(String::new()), 60)
                .expect_err("empty secret")
                .key,
            "turn_secret"
        );
        let ice = ClientIce::new(servers, Some("north".into()), 300).expect("valid");
        let now = UNIX_EPOCH + Duration::from_secs(1_699_999_700);
        let got = ice.for_login("alice", now);
        assert_eq!(got[0].username, None);
        assert_eq!(got[1].username.as_deref(), Some("1700000000:alice"));
        assert_eq!(got[1].credential.as_deref(), Some(OPENSSL_VECTOR));
        assert_eq!(got[2].username.as_deref(), Some("s"));
        assert_eq!(got[2].credential.as_deref(), Some("t"));
        let json = serde_json::to_string(&got[0]).expect("serializes");
        assert_eq!(json, r#"{"urls":["stun:127.0.0.1:3478"]}"#);
    }
}
