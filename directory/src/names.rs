//! Validated names: the login namespace (`LoginName`), tenant sub-names
//! (`SubName`), full dialable paths (`Name`, `acme-bank/support`) and
//! human display names (`DisplayName`).
//!
//! Names are parsed once at the edge (HTTP, SIP, YAML) and trusted inside,
//! so every rule lives here and each broken rule has its own `NameError`.

use std::fmt;
use std::str::FromStr;

/// Logins that nobody can register, because they would impersonate the
/// operator or a built-in service.
///
/// `echo` is the built-in echo-test target: the schema creates it as a
/// `system` entry, so it is searchable and dialable, but no user or tenant can
/// take it. The rest are either operator roles (`admin`, `root`, `support`,
/// `abuse`, ...) or words the HTTP/SIP edges use as path segments (`api`,
/// `www`, `sip`, `settings`, `me`).
pub const RESERVED_LOGINS: &[&str] = &[
    "abuse",
    "admin",
    "administrator",
    "anonymous",
    "api",
    "echo",
    "help",
    "me",
    "namecall",
    "null",
    "operator",
    "postmaster",
    "root",
    "security",
    "settings",
    "sip",
    "support",
    "system",
    "undefined",
    "www",
];

/// Shortest allowed login name.
pub const LOGIN_MIN_LEN: usize = 2;
/// Longest allowed login or sub-name (a DNS label).
pub const NAME_MAX_LEN: usize = 63;
/// Longest allowed display name, in characters.
pub const DISPLAY_MAX_CHARS: usize = 100;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is shorter than the minimum.
    #[error("name is too short: {len} characters, at least {min} required")]
    TooShort {
        /// Length that was given.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// The name is longer than the maximum.
    #[error("name is too long: {len} characters, at most {max} allowed")]
    TooLong {
        /// Length that was given.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// A character outside `a-z`, `0-9`, `-`, `.` was found.
    #[error("invalid character {ch:?} at position {pos}: only a-z, 0-9, '-' and '.' are allowed")]
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its character index.
        pos: usize,
    },
    /// The name contains only digits, so it would look like a phone number.
    #[error("name must not be all digits")]
    AllDigits,
    /// The name starts or ends with `-` or `.`.
    #[error("name must start and end with a letter or digit")]
    BadEdge,
    /// The name contains `..`.
    #[error("name must not contain '..'")]
    DoubleDot,
    /// The name is on the reserved list.
    #[error("name {0:?} is reserved")]
    Reserved(String),
    /// A `company/sub` path was malformed (empty part or more than one `/`).
    #[error("malformed name path: expected 'name' or 'name/sub'")]
    BadPath,
    /// A display name was empty after trimming.
    #[error("display name is empty")]
    EmptyDisplay,
    /// A display name contains control characters.
    #[error("display name contains a control character")]
    ControlChar,
}

/// Checks the character rules shared by logins and sub-names.
fn check_label(s: &str, min: usize) -> Result<(), NameError> {
    let len = s.chars().count();
    if len < min {
        return Err(NameError::TooShort { len, min });
    }
    if len > NAME_MAX_LEN {
        return Err(NameError::TooLong {
            len,
            max: NAME_MAX_LEN,
        });
    }
    for (pos, ch) in s.chars().enumerate() {
        if !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '.') {
            return Err(NameError::InvalidChar { ch, pos });
        }
    }
    let edge = |c: Option<char>| matches!(c, Some('-' | '.'));
    if edge(s.chars().next()) || edge(s.chars().last()) {
        return Err(NameError::BadEdge);
    }
    if s.contains("..") {
        return Err(NameError::DoubleDot);
    }
    Ok(())
}

/// A login in the one namespace shared by users and companies (`alice`,
/// `acme-bank`).
///
/// Rules: 2-63 characters of `a-z 0-9 - .`; not all digits (digits are phone
/// numbers); no leading or trailing `-`/`.`; no `..`; not in
/// [`RESERVED_LOGINS`]. Input is not case-folded: `Acme` is refused, so the
/// edge decides whether to lower-case user input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct LoginName(String);

impl LoginName {
    /// Parses and validates a login name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_label(s, LOGIN_MIN_LEN)?;
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NameError::AllDigits);
        }
        if RESERVED_LOGINS.contains(&s) {
            return Err(NameError::Reserved(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// Builds a name that skips the reserved-word rule, for system entries
    /// such as `echo`.
    pub(crate) fn system(s: &str) -> Result<Self, NameError> {
        check_label(s, LOGIN_MIN_LEN)?;
        Ok(Self(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The part after the `/` in `acme-bank/support`.
///
/// Same characters as a login, 1-63 long; may be all digits (`acme/200` for
/// an extension) and reserved words are allowed (`acme/support` is the point).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct SubName(String);

impl SubName {
    /// Parses and validates a sub-name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_label(s, 1)?;
        Ok(Self(s.to_owned()))
    }

    /// The sub-name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A dialable name: a login, optionally with a tenant sub-name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    /// The login (user or tenant).
    pub login: LoginName,
    /// The sub-name, for `company/sub` paths.
    pub sub: Option<SubName>,
}

impl Name {
    /// Parses `login` or `login/sub`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let mut parts = s.split('/');
        let login = parts.next().unwrap_or_default();
        let sub = parts.next();
        if parts.next().is_some() || login.is_empty() || sub == Some("") {
            return Err(NameError::BadPath);
        }
        Ok(Self {
            login: LoginName::parse(login)?,
            sub: sub.map(SubName::parse).transpose()?,
        })
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sub {
            Some(sub) => write!(f, "{}/{}", self.login, sub),
            None => write!(f, "{}", self.login),
        }
    }
}

/// A human-readable name in any script ("Acme Bank", "Zürich Köln", "東京").
///
/// Trimmed; 1-100 characters; no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    /// Trims and validates a display name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let t = s.trim();
        let len = t.chars().count();
        if len == 0 {
            return Err(NameError::EmptyDisplay);
        }
        if len > DISPLAY_MAX_CHARS {
            return Err(NameError::TooLong {
                len,
                max: DISPLAY_MAX_CHARS,
            });
        }
        if t.chars().any(char::is_control) {
            return Err(NameError::ControlChar);
        }
        Ok(Self(t.to_owned()))
    }

    /// The display name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! text_impls {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
    )*};
}
text_impls!(LoginName, SubName, DisplayName);

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::parse(s)
    }
}

macro_rules! id_type {
    ($($(#[$doc:meta])* $t:ident),*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $t(pub i64);
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    )*};
}
id_type!(
    /// Row id of a tenant (a company).
    TenantId,
    /// Row id of a messenger user.
    UserId,
    /// Row id of one of a user's devices.
    DeviceId,
    /// Row id of a tenant's SIP trunk.
    TrunkId,
    /// Row id of a tenant sub-name.
    SubNameId
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every login rule has a case that trips exactly that rule.
    #[test]
    fn login_rules_table() {
        let cases: &[(&str, Result<(), NameError>)] = &[
            ("alice", Ok(())),
            ("acme-bank", Ok(())),
            ("a.b-c9", Ok(())),
            ("r2", Ok(())),
            ("x", Err(NameError::TooShort { len: 1, min: 2 })),
            ("", Err(NameError::TooShort { len: 0, min: 2 })),
            (
                &"a".repeat(64),
                Err(NameError::TooLong { len: 64, max: 63 }),
            ),
            ("Alice", Err(NameError::InvalidChar { ch: 'A', pos: 0 })),
            ("al ice", Err(NameError::InvalidChar { ch: ' ', pos: 2 })),
            ("al_ice", Err(NameError::InvalidChar { ch: '_', pos: 2 })),
            ("zoë", Err(NameError::InvalidChar { ch: 'ë', pos: 2 })),
            ("123456", Err(NameError::AllDigits)),
            ("-acme", Err(NameError::BadEdge)),
            ("acme.", Err(NameError::BadEdge)),
            ("ac..me", Err(NameError::DoubleDot)),
            ("admin", Err(NameError::Reserved("admin".into()))),
            ("echo", Err(NameError::Reserved("echo".into()))),
            ("root", Err(NameError::Reserved("root".into()))),
        ];
        for (input, want) in cases {
            let got = LoginName::parse(input).map(|_| ());
            assert_eq!(&got, want, "input {input:?}");
        }
        assert_eq!(LoginName::parse(&"a".repeat(63)).map(|n| n.0.len()), Ok(63));
    }

    /// Sub-names may be digits or reserved words; paths split on one `/`.
    #[test]
    fn sub_names_and_paths() {
        let n = Name::parse("acme-bank/support").expect("valid path");
        assert_eq!(n.login.as_str(), "acme-bank");
        assert_eq!(n.sub.as_ref().map(SubName::as_str), Some("support"));
        assert_eq!(n.to_string(), "acme-bank/support");
        assert!(Name::parse("acme/200").is_ok());
        assert_eq!(Name::parse("acme").map(|n| n.sub), Ok(None));
        assert_eq!(Name::parse("acme/"), Err(NameError::BadPath));
        assert_eq!(Name::parse("/sales"), Err(NameError::BadPath));
        assert_eq!(Name::parse("a/b/c"), Err(NameError::BadPath));
        assert_eq!(
            Name::parse("admin/x"),
            Err(NameError::Reserved("admin".into()))
        );
        assert_eq!(Name::parse("acme/-x"), Err(NameError::BadEdge));
    }

    /// Display names accept any script, trim, and bound the length.
    #[test]
    fn display_names() {
        assert_eq!(
            DisplayName::parse("  Acme Bank ").map(|d| d.0),
            Ok("Acme Bank".into())
        );
        assert!(DisplayName::parse("東京銀行").is_ok());
        assert!(DisplayName::parse("Zürich Versicherung").is_ok());
        assert_eq!(DisplayName::parse("   "), Err(NameError::EmptyDisplay));
        assert_eq!(DisplayName::parse("a\u{7}b"), Err(NameError::ControlChar));
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
        assert_eq!(
            DisplayName::parse(&"é".repeat(101)),
            Err(NameError::TooLong { len: 101, max: 100 })
        );
    }
}
