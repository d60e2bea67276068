//! The JSON frames of the client WebSocket protocol (`/v1/ws`), see `docs/protocol.md`.
//!
//! Parsing happens here, once: [`ClientFrame::parse`] turns a text frame into
//! a typed frame or a [`FrameError`] that the session answers with an
//! `error` frame while keeping the socket open.

use serde::{Deserialize, Serialize};

/// Largest accepted text frame, in bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Longest accepted client call id.
const MAX_ID_LEN: usize = 64;

/// A frame sent by the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    /// Start a session as a guest with a login name.
    Hello {
        /// The login name to show.
        login: String,
    },
    /// Start a session with a login and password (an account in the directory).
    Auth {
        /// The login name.
        login: String,
        /// The password.
        password: String,
    },
    /// Create an account (argon2id-hashed password) and start a session with it.
    Register {
        /// The login name to claim.
        login: String,
        /// The password, at least 8 characters.
        password: String,
    },
    /// Resume an account session with the token a `welcome` gave (page reloads).
    Resume {
        /// The session token.
        token: String,
    },
    /// End the account session: the token stops working.
    Logout,
    /// Search the directory of names (exact, prefix, then typo-tolerant).
    Search {
        /// What the user typed, e.g. `acme bnk`.
        query: String,
    },
    /// Call a name with an SDP offer.
    Call {
        /// Client-chosen call id, unique within the socket.
        id: String,
        /// The name to call, e.g. `echo` or `acme-bank/support`.
        to: String,
        /// The WebRTC SDP offer.
        sdp: String,
    },
    /// A trickled ICE candidate for a call; empty means end of candidates.
    Ice {
        /// The call id.
        id: String,
        /// The `candidate:...` line.
        candidate: String,
    },
    /// DTMF digits to send in a call.
    Dtmf {
        /// The call id.
        id: String,
        /// Digits from `0-9*#A-D`; `digit` is accepted too (one key per frame).
        #[serde(alias = "digit")]
        digits: String,
    },
    /// Take an incoming call (from a desk phone) with a WebRTC SDP offer.
    Accept {
        /// The call id from the `incoming` frame.
        id: String,
        /// The WebRTC SDP offer.
        sdp: String,
    },
    /// Refuse an incoming call on this device.
    Decline {
        /// The call id from the `incoming` frame.
        id: String,
    },
    /// End a call.
    Hangup {
        /// The call id.
        id: String,
    },
}

/// A frame sent by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    /// The session is open.
    Welcome {
        /// The login name the session runs as.
        login: String,
        /// True while the login is not backed by an account.
        guest: bool,
        /// Account sessions: a token for `resume` (keep it like a password).
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// STUN/TURN servers for the client's `RTCPeerConnection` (`iceServers`),
        /// TURN ones with fresh credentials; absent when none are configured.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<crate::ice::IceServer>,
    },
    /// The account session ended (`logout`); the socket may log in again.
    #[serde(rename = "logged_out")]
    LoggedOut,
    /// Search results, best first.
    Results {
        /// The query answered.
        query: String,
        /// The matches.
        hits: Vec<crate::accounts::Hit>,
    },
    /// The callee is being alerted.
    Ringing {
        /// The call id.
        id: String,
        /// True when the PBX's early media (ringback, announcements) is
        /// already playing; otherwise the client should play its own ringback.
        early: bool,
    },
    /// The gateway's SDP answer for the caller's WebRTC leg; apply it (media
    /// connects while the callee is still being rung).
    Answer {
        /// The call id.
        id: String,
        /// The SDP answer.
        sdp: String,
    },
    /// A desk phone calls this user: show it, then `accept` or `decline`.
    Incoming {
        /// The call id (server-chosen).
        id: String,
        /// Who calls, as their PBX names them.
        from: String,
        /// The caller's SIP URI.
        from_uri: String,
        /// The desk phone offers video: accept with a camera to see each other
        /// (sent only when true).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        video: bool,
    },
    /// The callee picked up; the call is now in progress.
    Accepted {
        /// The call id.
        id: String,
    },
    /// A key pressed on the callee's side (RFC 4733 event, SIP INFO or in-band
    /// tone), one frame per press.
    Dtmf {
        /// The call id.
        id: String,
        /// The key: `0-9`, `*`, `#` or `A-D`.
        digit: String,
    },
    /// The callee put the call on hold (`on: true`) or resumed it.
    Hold {
        /// The call id.
        id: String,
        /// True while on hold.
        on: bool,
    },
    /// A server ICE candidate; empty means end of candidates.
    Ice {
        /// The call id.
        id: String,
        /// The `candidate:...` line.
        candidate: String,
    },
    /// The call is over.
    Ended {
        /// The call id.
        id: String,
        /// Why, as a short token (`hangup`, `not-found`, `ice-failed`, ...).
        reason: String,
        /// A SIP-like status code (200 normal, 404 unknown name, 408 timeout, 500 failure).
        code: u16,
    },
    /// A frame could not be handled; the socket stays usable.
    Error {
        /// A stable machine-readable code.
        code: String,
        /// A human-readable message.
        message: String,
        /// The call id or frame type this is about, if any.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
}

/// Why a client frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes is over the 65536 byte limit")]
    TooLarge(usize),
    /// The frame is not a JSON object with a string `type`.
    #[error("frame is not a json object with a string type")]
    NotJson,
    /// The `type` is not one we know.
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    /// A known type with missing, extra or wrongly typed fields.
    #[error("malformed {kind} frame: {detail}")]
    Malformed {
        /// The frame type.
        kind: String,
        /// What serde said.
        detail: String,
    },
    /// A field has a value we refuse (empty id, bad digits, ...).
    #[error("invalid {field}: {detail}")]
    Invalid {
        /// The field name.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The binary frames are not part of the protocol.
    #[error("binary frames are not supported")]
    Binary,
}

impl FrameError {
    /// The stable code sent in the `error` frame.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge(_) => "too-large",
            FrameError::NotJson => "bad-json",
            FrameError::UnknownType(_) => "unknown-type",
            FrameError::Malformed { .. } => "bad-frame",
            FrameError::Invalid { .. } => "invalid",
            FrameError::Binary => "binary",
        }
    }
}

const KNOWN_TYPES: &[&str] = &[
    "hello", "auth", "register", "resume", "logout", "search", "call", "accept", "decline", "ice",
    "dtmf", "hangup",
];

impl ClientFrame {
    /// Parses and validates one text frame.
    ///
    /// # Errors
    /// A [`FrameError`] saying what is wrong; never panics.
    pub fn parse(text: &str) -> Result<(Self, Option<String>), (FrameError, Option<String>)> {
        if text.len() > MAX_FRAME_BYTES {
            return Err((FrameError::TooLarge(text.len()), None));
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| (FrameError::NotJson, None))?;
        let kind = value
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or((FrameError::NotJson, None))?
            .to_owned();
        let reference = value
            .get("id")
            .and_then(|i| i.as_str())
            .map(str::to_owned)
            .or_else(|| Some(kind.clone()));
        if !KNOWN_TYPES.contains(&kind.as_str()) {
            return Err((FrameError::UnknownType(kind), reference));
        }
        let frame: ClientFrame = serde_json::from_value(value).map_err(|e| {
            (
                FrameError::Malformed {
                    kind: kind.clone(),
                    detail: e.to_string(),
                },
                reference.clone(),
            )
        })?;
        frame.validate().map_err(|e| (e, reference.clone()))?;
        Ok((frame, reference))
    }

    /// Field checks serde cannot express.
    fn validate(&self) -> Result<(), FrameError> {
        let id = match self {
            ClientFrame::Hello { login }
            | ClientFrame::Auth { login, .. }
            | ClientFrame::Register { login, .. } => {
                return validate_login(login);
            }
            ClientFrame::Resume { token } => {
                if token.is_empty() || token.len() > 256 {
                    return Err(FrameError::Invalid {
                        field: "token",
                        detail: "empty or longer than 256 bytes".into(),
                    });
                }
                return Ok(());
            }
            ClientFrame::Logout => return Ok(()),
            ClientFrame::Search { query } => {
                if query.chars().count() > 256 {
                    return Err(FrameError::Invalid {
                        field: "query",
                        detail: "longer than 256 characters".into(),
                    });
                }
                return Ok(());
            }
            ClientFrame::Call { id, to, .. } => {
                if to.trim().is_empty() {
                    return Err(FrameError::Invalid {
                        field: "to",
                        detail: "empty".into(),
                    });
                }
                id
            }
            ClientFrame::Dtmf { id, digits } => {
                if digits.is_empty() || !digits.chars().all(is_dtmf_digit) {
                    return Err(FrameError::Invalid {
                        field: "digits",
                        detail: "use 0-9, *, #, A-D".into(),
                    });
                }
                id
            }
            ClientFrame::Ice { id, .. }
            | ClientFrame::Hangup { id }
            | ClientFrame::Accept { id, .. }
            | ClientFrame::Decline { id } => id,
        };
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(FrameError::Invalid {
                field: "id",
                detail: format!("must be 1 to {MAX_ID_LEN} characters"),
            });
        }
        Ok(())
    }
}

/// A DTMF digit as in RFC 4733 events 0-15.
fn is_dtmf_digit(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D' | 'a'..='d')
}

/// A guest login: 1 to 64 characters of letters, digits, `.`, `_`, `-`, not all digits.
fn validate_login(login: &str) -> Result<(), FrameError> {
    let ok = !login.is_empty()
        && login.len() <= 64
        && login
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !login.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(FrameError::Invalid {
            field: "login",
            detail: "1-64 letters, digits, '.', '_' or '-', not only digits".into(),
        })
    }
}

impl ServerFrame {
    /// The frame as JSON text.
    pub fn to_text(&self) -> String {
        // serializing these plain structs cannot fail: all keys are strings
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
    }

    /// An `error` frame for a refused client frame.
    pub fn from_error(err: &FrameError, reference: Option<String>) -> Self {
        ServerFrame::Error {
            code: err.code().to_owned(),
            message: err.to_string(),
            reference,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every client frame type parses from its documented JSON.
    #[test]
    fn parses_documented_frames() {
        let cases = [
            (
                r#"{"type":"hello","login":"alice"}"#,
                ClientFrame::Hello {
                    login: "alice".into(),
                },
            ),
            (
                r#"{"type":"call","id":"c1","to":"echo","sdp":"v=0"}"#,
                ClientFrame::Call {
                    id: "c1".into(),
                    to: "echo".into(),
                    sdp: "v=0".into(),
                },
            ),
            (
                r#"{"type":"ice","id":"c1","candidate":""}"#,
                ClientFrame::Ice {
                    id: "c1".into(),
                    candidate: "".into(),
                },
            ),
            (
                r#"{"type":"dtmf","id":"c1","digits":"12#"}"#,
                ClientFrame::Dtmf {
                    id: "c1".into(),
                    digits: "12#".into(),
                },
            ),
            (
                r#"{"type":"dtmf","id":"c1","digit":"5"}"#,
                ClientFrame::Dtmf {
                    id: "c1".into(),
                    digits: "5".into(),
                },
            ),
            (
                r#"{"type":"hangup","id":"c1"}"#,
                ClientFrame::Hangup { id: "c1".into() },
            ),
        ];
        for (text, want) in cases {
            let (got, _) = ClientFrame::parse(text).expect(text);
            assert_eq!(got, want);
        }
    }

    /// Bad frames get distinct error codes and carry the call id when there is one.
    #[test]
    fn refuses_bad_frames_with_codes() {
        let code = |t: &str| ClientFrame::parse(t).map(|_| ()).unwrap_err().0.code();
        assert_eq!(code("not json"), "bad-json");
        assert_eq!(code(r#"{"id":"x"}"#), "bad-json");
        assert_eq!(code(r#"{"type":"fly","id":"x"}"#), "unknown-type");
        assert_eq!(code(r#"{"type":"call","id":"x"}"#), "bad-frame");
        assert_eq!(code(r#"{"type":"hangup","id":"x","extra":1}"#), "bad-frame");
        assert_eq!(code(r#"{"type":"dtmf","id":"x","digits":"9z"}"#), "invalid");
        assert_eq!(code(r#"{"type":"dtmf","id":"x","digit":"x"}"#), "invalid");
        assert_eq!(code(r#"{"type":"hangup","id":""}"#), "invalid");
        assert_eq!(code(r#"{"type":"hello","login":"12345"}"#), "invalid");
        let big = format!(r#"{{"type":"hello","login":"{}"}}"#, "a".repeat(70_000));
        assert_eq!(code(&big), "too-large");
        let (_, reference) = ClientFrame::parse(r#"{"type":"call","id":"c9"}"#).unwrap_err();
        assert_eq!(reference.as_deref(), Some("c9"));
    }

    /// Server frames serialize with `type` and `ref` as documented.
    #[test]
    fn server_frames_serialize() {
        let e = ServerFrame::Error {
            code: "x".into(),
            message: "m".into(),
            reference: Some("c1".into()),
        };
        assert_eq!(
            e.to_text(),
            r#"{"type":"error","code":"x","message":"m","ref":"c1"}"#
        );
        let ended = ServerFrame::Ended {
            id: "c1".into(),
            reason: "hangup".into(),
            code: 200,
        };
        assert_eq!(
            ended.to_text(),
            r#"{"type":"ended","id":"c1","reason":"hangup","code":200}"#
        );
        let welcome = |ice_servers| ServerFrame::Welcome {
            login: "alice".into(),
            guest: true,
            token: None,
            ice_servers,
        };
        assert_eq!(
            welcome(vec![]).to_text(),
            r#"{"type":"welcome","login":"alice","guest":true}"#
        );
        let turn = crate::ice::IceServer {
            urls: vec!["turn:t.example:3478".into()],
            username: Some("1700000000:alice".into()),
            credential: Some("c".into()),
        };
        assert_eq!(
            welcome(vec![turn]).to_text(),
            r#"{"type":"welcome","login":"alice","guest":true,"ice_servers":[{"urls":["turn:t.example:3478"],"username":"1700000000:alice","credential":"c"}]}"#
        );
    }
}
