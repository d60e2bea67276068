//! The chat vocabulary: who (`Login`, `DeviceId`), where (`ConversationId`),
//! what (`Body`, `Payload`) and when (`Timestamp`, `Seq`). Everything that
//! comes from a client is validated here, once, so the store and the state
//! machines can trust their inputs.

use serde::{Deserialize, Serialize};

use crate::error::{ChatError, Result};

/// Largest text message, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Largest group title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;
/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// Largest group, in members.
pub const MAX_GROUP_MEMBERS: usize = 1024;

/// Wall-clock time in unix milliseconds, always passed in by the caller.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// This time plus `ms` milliseconds (saturating).
    pub fn plus_ms(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

/// Per-conversation message number assigned by the server: 1, 2, 3 …
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub i64);

/// A named login (`alice`, `acme-bank`).
///
/// Same rules as `directory::LoginName` (2-63 of `a-z 0-9 - .`, not all
/// digits, no `-`/`.` at the edges, no `..`); kept local so that bridges
/// builds while the directory crate moves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Login(String);

impl Login {
    /// Parses and validates a login.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Err(ChatError::invalid("login", why));
        if !(2..=63).contains(&s.len()) {
            return bad("length must be 2-63");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return bad("only a-z 0-9 - . are allowed");
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return bad("must not be all digits");
        }
        let edge = |b: Option<&u8>| matches!(b, Some(b'-' | b'.'));
        if edge(s.as_bytes().first()) || edge(s.as_bytes().last()) || s.contains("..") {
            return bad("misplaced - or .");
        }
        Ok(Login(s.to_owned()))
    }

    /// The login as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Login {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Login::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One connected device of a user (a browser tab, a phone), chosen by the
/// gateway; stable across reconnects so its sync cursor survives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(pub String);

/// Client-chosen id of a message or group, for idempotent retries
/// (1-64 of `A-Z a-z 0-9 - _`, a UUID fits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    /// Parses and validates a client id.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() || s.len() > MAX_CLIENT_ID_LEN {
            return Err(ChatError::invalid("client_id", "length must be 1-64"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ChatError::invalid("client_id", "only A-Z a-z 0-9 - _"));
        }
        Ok(ClientId(s.to_owned()))
    }

    /// The id of a message that arrived as SIP MESSAGE: derived from its
    /// Call-ID and CSeq, so a repeated request is stored once.
    pub fn for_sip(call_id: &str, cseq: u32) -> Self {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("{call_id}\n{cseq}").as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        ClientId(format!("sip-{hex}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ClientId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A company name a messenger user chats with: the company itself (`acme`,
/// its tenant login) or one of its sub-names (`acme/sales`).
///
/// Both parts follow the [`Login`] rules, so the name never contains `+` or
/// `:` and fits in a [`ConversationId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CompanyName(String);

impl CompanyName {
    /// Parses `tenant` or `tenant/sub`.
    pub fn parse(s: &str) -> Result<Self> {
        let (tenant, sub) = match s.split_once('/') {
            Some((t, sub)) => (t, Some(sub)),
            None => (s, None),
        };
        Login::parse(tenant).map_err(|_| ChatError::invalid("company", "bad company name"))?;
        if let Some(sub) = sub {
            Login::parse(sub).map_err(|_| ChatError::invalid("company", "bad sub-name"))?;
        }
        Ok(CompanyName(s.to_owned()))
    }

    /// The company's tenant login (`acme` of `acme/sales`): who its
    /// messages come from and whose receipts a sender sees.
    pub fn tenant(&self) -> Login {
        let t = self.0.split_once('/').map_or(self.0.as_str(), |(t, _)| t);
        // validated in `parse`
        Login(t.to_owned())
    }

    /// The sub-name (`sales`), or `""` for the company itself.
    pub fn sub(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, s)| s)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CompanyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A conversation: `dm:<a>+<b>` (logins sorted), `g:<creator>:<client id>`
/// or `co:<login>+<company name>` (a user and a company, over SIP MESSAGE).
///
/// `+` and `:` cannot occur in a login or a company name, so every form is
/// unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ConversationId(String);

impl ConversationId {
    /// The one-to-one conversation of two logins; the same whichever order.
    pub fn direct(a: &Login, b: &Login) -> Self {
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        ConversationId(format!("dm:{x}+{y}"))
    }

    /// The group created by `creator` with the client id of its create request.
    pub fn group(creator: &Login, client_id: &ClientId) -> Self {
        ConversationId(format!("g:{creator}:{}", client_id.as_str()))
    }

    /// The conversation of `user` with `company`.
    pub fn company(user: &Login, company: &CompanyName) -> Self {
        ConversationId(format!("co:{user}+{company}"))
    }

    /// Parses an id received from a client.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || ChatError::invalid("conversation", "not a conversation id");
        if let Some(rest) = s.strip_prefix("co:") {
            let (user, company) = rest.split_once('+').ok_or_else(bad)?;
            let (user, company) = (Login::parse(user)?, CompanyName::parse(company)?);
            // the company's own login would be both sides of the conversation
            if company.tenant() == user {
                return Err(bad());
            }
            Ok(ConversationId::company(&user, &company))
        } else if let Some(rest) = s.strip_prefix("dm:") {
            let (a, b) = rest.split_once('+').ok_or_else(bad)?;
            let (a, b) = (Login::parse(a)?, Login::parse(b)?);
            if a >= b {
                return Err(bad());
            }
            Ok(ConversationId::direct(&a, &b))
        } else if let Some(rest) = s.strip_prefix("g:") {
            let (creator, cid) = rest.split_once(':').ok_or_else(bad)?;
            Ok(ConversationId::group(
                &Login::parse(creator)?,
                &ClientId::parse(cid)?,
            ))
        } else {
            Err(bad())
        }
    }

    /// For a one-to-one conversation, its two logins.
    pub fn direct_pair(&self) -> Option<(Login, Login)> {
        let (a, b) = self.0.strip_prefix("dm:")?.split_once('+')?;
        Some((Login::parse(a).ok()?, Login::parse(b).ok()?))
    }

    /// For a company conversation, its user and company.
    pub fn company_pair(&self) -> Option<(Login, CompanyName)> {
        let (u, c) = self.0.strip_prefix("co:")?.split_once('+')?;
        Some((Login::parse(u).ok()?, CompanyName::parse(c).ok()?))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ConversationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ConversationId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ConversationId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A reference to an uploaded file (the upload service is separate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaRef {
    /// Id returned by the upload endpoint.
    pub upload_id: String,
    /// MIME type, e.g. `image/jpeg`.
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
    /// Upload id of a small preview image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_id: Option<String>,
    /// Original file name, for files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A shared location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude in degrees, -90..=90.
    pub lat: f64,
    /// Longitude in degrees, -180..=180.
    pub lon: f64,
    /// Accuracy radius in metres, >= 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
    /// A human label ("Home").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A shared contact card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactCard {
    /// Display name.
    pub name: String,
    /// The contact's namecall login, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    /// Phone numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
}

/// What a user writes: the content of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// Plain UTF-8 text.
    Text {
        /// The text, at most [`MAX_TEXT_BYTES`].
        text: String,
    },
    /// An image upload.
    Image(MediaRef),
    /// A video upload.
    Video(MediaRef),
    /// Any other file upload.
    File(MediaRef),
    /// A location.
    Location(Location),
    /// A contact card.
    Contact(ContactCard),
}

fn check_short(what: &'static str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(ChatError::invalid(what, format!("longer than {max} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(ChatError::invalid(what, "contains control characters"));
    }
    Ok(())
}

impl Body {
    /// Checks sizes and ranges; called by the store before anything is written.
    pub fn validate(&self) -> Result<()> {
        match self {
            Body::Text { text } => {
                if text.trim().is_empty() {
                    return Err(ChatError::invalid("text", "empty"));
                }
                if text.len() > MAX_TEXT_BYTES {
                    return Err(ChatError::invalid(
                        "text",
                        format!("longer than {MAX_TEXT_BYTES} bytes"),
                    ));
                }
            }
            Body::Image(m) | Body::Video(m) | Body::File(m) => {
                if m.upload_id.is_empty() {
                    return Err(ChatError::invalid("upload_id", "empty"));
                }
                check_short("upload_id", &m.upload_id, 128)?;
                check_short("mime", &m.mime, 128)?;
                if !m.mime.contains('/') {
                    return Err(ChatError::invalid("mime", "expected type/subtype"));
                }
                if let Some(t) = &m.thumbnail_id {
                    check_short("thumbnail_id", t, 128)?;
                }
                if let Some(n) = &m.name {
                    check_short("name", n, 255)?;
                }
            }
            Body::Location(l) => {
                if !(-90.0..=90.0).contains(&l.lat) {
                    return Err(ChatError::invalid("lat", "must be within -90..=90"));
                }
                if !(-180.0..=180.0).contains(&l.lon) {
                    return Err(ChatError::invalid("lon", "must be within -180..=180"));
                }
                if let Some(a) = l.accuracy_m
                    && !(a.is_finite() && a >= 0.0)
                {
                    return Err(ChatError::invalid("accuracy_m", "must be >= 0"));
                }
                if let Some(label) = &l.label {
                    check_short("label", label, 255)?;
                }
            }
            Body::Contact(c) => {
                if c.name.trim().is_empty() {
                    return Err(ChatError::invalid("name", "empty"));
                }
                check_short("name", &c.name, 255)?;
                if c.phones.len() > 16 {
                    return Err(ChatError::invalid("phones", "more than 16"));
                }
                for p in &c.phones {
                    if p.is_empty()
                        || p.len() > 32
                        || !p
                            .bytes()
                            .all(|b| b.is_ascii_digit() || b"+-() ".contains(&b))
                    {
                        return Err(ChatError::invalid("phones", "not a phone number"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A change to a group, recorded in the conversation so that every device
/// learns it through the same ordered stream as messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GroupEvent {
    /// The group was created with these members (creator is admin).
    Created {
        /// Title.
        title: String,
        /// Initial members, creator included.
        members: Vec<Login>,
    },
    /// The title changed.
    Renamed {
        /// New title.
        title: String,
    },
    /// Members were added.
    Added {
        /// Who joined.
        members: Vec<Login>,
    },
    /// A member was removed by an admin.
    Removed {
        /// Who was removed.
        member: Login,
    },
    /// A member left on their own.
    Left {
        /// Who left.
        member: Login,
    },
    /// A member was made admin.
    Promoted {
        /// The new admin.
        member: Login,
    },
}

/// What a stored entry of a conversation is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Payload {
    /// A new message.
    Post {
        /// Its content.
        body: Body,
    },
    /// The sender replaced the content of an earlier message.
    Edit {
        /// Seq of the edited message.
        target: Seq,
        /// The new content.
        body: Body,
    },
    /// The sender deleted an earlier message (it stays as a tombstone).
    Delete {
        /// Seq of the deleted message.
        target: Seq,
    },
    /// A group change.
    Group {
        /// What changed.
        change: GroupEvent,
    },
}

impl Payload {
    /// Short name of the variant, stored in its own column for queries.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Post { .. } => "post",
            Payload::Edit { .. } => "edit",
            Payload::Delete { .. } => "delete",
            Payload::Group { .. } => "group",
        }
    }
}

/// One stored entry of a conversation as devices see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its number in the conversation.
    pub seq: Seq,
    /// Who wrote it.
    pub sender: Login,
    /// The sender's idempotency id.
    pub client_id: String,
    /// When the server stored it.
    pub ts: Timestamp,
    /// What it is. For a deleted post the body is gone and `deleted` is set.
    #[serde(flatten)]
    pub payload: Option<Payload>,
    /// When it was last edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<Timestamp>,
    /// True for a tombstone: the post was deleted, its seq stays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// Who may see a user's presence and last-seen time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Anyone.
    #[default]
    Everyone,
    /// People who share a conversation with the user.
    Contacts,
    /// No one.
    Nobody,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_id_is_order_independent_and_parses_back() {
        let a = Login::parse("alice").unwrap();
        let b = Login::parse("bob").unwrap();
        let id = ConversationId::direct(&b, &a);
        assert_eq!(id, ConversationId::direct(&a, &b));
        assert_eq!(id.as_str(), "dm:alice+bob");
        assert_eq!(ConversationId::parse(id.as_str()).unwrap(), id);
        assert!(ConversationId::parse("dm:bob+alice").is_err());
        assert!(ConversationId::parse("dm:alice").is_err());
        assert!(ConversationId::parse("x").is_err());
    }

    #[test]
    fn company_id_parses_back_and_refuses_garbage() {
        let alice = Login::parse("alice").unwrap();
        let sales = CompanyName::parse("acme/sales").unwrap();
        assert_eq!(sales.tenant().as_str(), "acme");
        assert_eq!(sales.sub(), "sales");
        let root = CompanyName::parse("acme").unwrap();
        assert_eq!((root.tenant().as_str(), root.sub()), ("acme", ""));
        let id = ConversationId::company(&alice, &sales);
        assert_eq!(id.as_str(), "co:alice+acme/sales");
        assert_eq!(ConversationId::parse(id.as_str()).unwrap(), id);
        assert_eq!(id.company_pair(), Some((alice.clone(), sales)));
        assert_eq!(id.direct_pair(), None);
        assert_eq!(ConversationId::direct(&alice, &alice).company_pair(), None);
        for bad in [
            "co:alice",
            "co:alice+",
            "co:+acme",
            "co:alice+acme/",
            "co:alice+acme/sales/x",
            "co:alice+Acme",
            "co:alice+acme+bob",
            "co:acme+acme/sales",
            "co:alice+acme:x",
        ] {
            assert!(ConversationId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn login_rules() {
        for ok in ["alice", "acme-bank", "a.b", "r2"] {
            assert!(Login::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "Alice", "12345", "-a", "a-", "a..b", "a+b", "a:b"] {
            assert!(Login::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn body_validation_limits() {
        let text = |s: String| Body::Text { text: s };
        assert!(text("hi".into()).validate().is_ok());
        assert!(text("é".repeat(MAX_TEXT_BYTES / 2)).validate().is_ok());
        assert!(text("x".repeat(MAX_TEXT_BYTES + 1)).validate().is_err());
        assert!(text("  ".into()).validate().is_err());
        let loc = |lat, lon| {
            Body::Location(Location {
                lat,
                lon,
                accuracy_m: Some(5.0),
                label: None,
            })
        };
        assert!(loc(48.8, 2.3).validate().is_ok());
        assert!(loc(91.0, 0.0).validate().is_err());
        assert!(loc(0.0, -180.5).validate().is_err());
        assert!(loc(f64::NAN, 0.0).validate().is_err());
        let img = Body::Image(MediaRef {
            upload_id: "u1".into(),
            mime: "jpeg".into(),
            size: 1,
            thumbnail_id: None,
            name: None,
        });
        assert!(img.validate().is_err());
    }

    #[test]
    fn body_json_shape() {
        let b: Body = serde_json::from_str(
            r#"{"kind":"image","upload_id":"up1","mime":"image/png","size":10,"thumbnail_id":"t1"}"#,
        )
        .unwrap();
        assert!(matches!(b, Body::Image(ref m) if m.thumbnail_id.as_deref() == Some("t1")));
        assert!(serde_json::from_str::<Body>(r#"{"kind":"sticker"}"#).is_err());
    }
}
