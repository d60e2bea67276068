//! The one error type of the chat core. The gateway turns it into an
//! `error` frame (see [`ChatError::code`]) and never into a panic.

/// Result with [`ChatError`] as the default error.
pub type Result<T, E = ChatError> = std::result::Result<T, E>;

/// Everything that can go wrong in the chat core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// A login, id or message body failed validation.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// Which field was bad.
        what: &'static str,
        /// What was wrong with it.
        why: String,
    },
    /// The user is not (or no longer) a member allowed to do this.
    #[error("forbidden")]
    Forbidden,
    /// The conversation or message does not exist (for this user).
    #[error("not found")]
    NotFound,
    /// A client id was reused for a different conversation.
    #[error("client id already used for another message")]
    ClientIdReused,
    /// The operation conflicts with the current state (e.g. last admin leaving).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database failed; the operation was not applied.
    #[error("storage error: {0}")]
    Storage(#[from] sqlx::Error),
    /// The database failed under the batch writer (`crate::writer`); the
    /// batch was rolled back.
    #[error("storage error: {0}")]
    Sqlite(rusqlite::Error),
    /// Embedded migrations failed to apply.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be decoded (corrupt or newer schema).
    #[error("corrupt stored row: {0}")]
    Corrupt(String),
    /// A push notification could not be built (encryption failed).
    #[error("push: {0}")]
    Push(String),
    /// A message to a company cannot be sent or was not delivered; `code`
    /// is one of the `company_*` codes of `docs/protocol.md`.
    #[error("{why}")]
    Company {
        /// Stable code, e.g. `company_no_chat`.
        code: &'static str,
        /// Human-readable detail.
        why: String,
    },
}

impl ChatError {
    /// Stable machine-readable code used in `error` frames.
    pub fn code(&self) -> &'static str {
        match self {
            ChatError::Invalid { .. } => "invalid",
            ChatError::Forbidden => "forbidden",
            ChatError::NotFound => "not_found",
            ChatError::ClientIdReused => "client_id_reused",
            ChatError::Conflict(_) => "conflict",
            ChatError::Company { code, .. } => code,
            ChatError::Storage(_)
            | ChatError::Sqlite(_)
            | ChatError::Migrate(_)
            | ChatError::Corrupt(_)
            | ChatError::Push(_) => "internal",
        }
    }

    pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> Self {
        ChatError::Invalid {
            what,
            why: why.into(),
        }
    }
}
