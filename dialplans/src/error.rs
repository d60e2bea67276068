//! The one error type of the crate: a problem in a dialplan file, with the
//! file name and, when the problem sits at a node, its line and column.
//!
//! Loading never stops at the first problem: the loader collects every error
//! it can find so that an admin fixes a file in one pass.

use std::fmt;

/// A 1-based line and column in a dialplan file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line, starting at 1.
    pub line: u32,
    /// Column in characters, starting at 1.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A problem found while loading or validating a dialplan.
///
/// Displays as `file:line:column: message`, the format editors and CI logs
/// turn into clickable links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialplanError {
    file: String,
    location: Option<Location>,
    kind: ErrorKind,
}

impl DialplanError {
    /// Builds an error at a position in `file`.
    pub fn new(file: impl Into<String>, location: Option<Location>, kind: ErrorKind) -> Self {
        Self {
            file: file.into(),
            location,
            kind,
        }
    }

    /// The file the error is in, as given to the loader.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Where in the file; `None` for whole-file problems such as I/O errors.
    pub fn location(&self) -> Option<Location> {
        self.location
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for DialplanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(at) => write!(f, "{}:{}: {}", self.file, at, self.kind),
            None => write!(f, "{}: {}", self.file, self.kind),
        }
    }
}

impl std::error::Error for DialplanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

/// What is wrong with a dialplan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file is not well-formed YAML.
    #[error("yaml syntax error: {0}")]
    Syntax(String),
    /// The file holds no YAML document at all.
    #[error("empty file: a dialplan needs at least `version`, `tenant` and `names`")]
    Empty,
    /// The file holds more than one YAML document.
    #[error("more than one yaml document; one file holds one dialplan")]
    MultipleDocuments,
    /// The document nests too deep or expands aliases too far.
    #[error("document too complex: {0}")]
    TooComplex(String),
    /// A key the schema does not know.
    #[error("unknown key `{key}` in {context}{hint}")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where the key was found, e.g. "trunk `main`".
        context: String,
        /// "; did you mean `x`?" or the list of allowed keys.
        hint: String,
    },
    /// A required key is absent.
    #[error("missing key `{key}` in {context}")]
    MissingKey {
        /// The key that is required.
        key: String,
        /// The mapping that lacks it.
        context: String,
    },
    /// A node has the wrong YAML type.
    #[error("{what} must be {expected}, found {found}")]
    WrongType {
        /// The key or item that was checked.
        what: String,
        /// The expected shape, e.g. "a mapping".
        expected: &'static str,
        /// The shape found, e.g. "a list".
        found: &'static str,
    },
    /// The same key appears twice in one mapping.
    #[error("duplicate key `{key}`; first defined at line {first_line}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// The line of the first occurrence.
        first_line: u32,
    },
    /// A scalar does not parse as what it should be.
    #[error("invalid {what} `{value}`: {reason}")]
    Invalid {
        /// What the value should be, e.g. "duration".
        what: &'static str,
        /// The value as written.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// `version` is not one this build understands.
    #[error("unsupported dialplan version `{0}`; this build reads version 1")]
    UnsupportedVersion(String),
    /// An action names a trunk that the file does not define.
    #[error("unknown trunk `{name}`; defined trunks: {defined}")]
    UnknownTrunk {
        /// The trunk name as written.
        name: String,
        /// The trunks the file defines, comma separated.
        defined: String,
    },
    /// A `goto` names a name that the file does not define.
    #[error("unknown name `{name}` in goto; defined names: {defined}")]
    UnknownName {
        /// The name as written.
        name: String,
        /// The names the file defines, comma separated.
        defined: String,
    },
    /// Two files define the same tenant.
    #[error("tenant `{tenant}` is already defined in {first_file}")]
    DuplicateTenant {
        /// The tenant login name.
        tenant: String,
        /// The file that defined it first.
        first_file: String,
    },
    /// Keys that are fine alone but not together, or a choice left open.
    #[error("{0}")]
    Conflict(String),
    /// The file or directory could not be read.
    #[error("cannot read: {0}")]
    Io(String),
}
