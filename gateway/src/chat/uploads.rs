//! Media uploads for chat messages: `POST /v1/uploads` and
//! `GET /v1/uploads/{id}`, stored on disk under `<data_dir>/uploads/`.
//!
//! The client uploads the raw bytes with their `Content-Type` and its
//! session token (`Authorization: Bearer <token>` from `welcome`), gets an
//! upload id (and a thumbnail id for PNG/JPEG), and then sends an `image`,
//! `video` or `file` message that names them. Checks (size, accepted type,
//! magic number matches the declared type, decode limits) live in
//! `bridges::uploads`; this file owns HTTP and the files.
//!
//! Ids are 128 random bits: the URL is the capability to read an upload,
//! and only members of the conversation it was sent to learn it. Files are
//! written to a temporary name and renamed, so a crash never leaves a
//! half-written upload under its id.

use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bridges::uploads::{self, UploadError};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::http::error::problem;

/// The request body limit of `POST /v1/uploads` (the check refuses more).
pub const BODY_LIMIT: usize = uploads::MAX_UPLOAD_BYTES + 1;

/// What is stored next to an upload's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    mime: String,
    size: u64,
    owner: String,
    created_ms: i64,
}

/// The upload folder.
#[derive(Debug, Clone)]
pub struct UploadStore {
    dir: PathBuf,
}

fn valid_id(id: &str) -> bool {
    id.len() == 35
        && id.starts_with("up_")
        && id[3..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl UploadStore {
    /// Uses (creating) `dir`.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(UploadStore { dir })
    }

    async fn put(&self, owner: &str, mime: &str, bytes: &[u8]) -> std::io::Result<String> {
        let id = format!("up_{:032x}", rand::random::<u128>());
        let meta = Meta {
            mime: mime.to_owned(),
            size: bytes.len() as u64,
            owner: owner.to_owned(),
            created_ms: super::now().0,
        };
        let meta = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
        // bytes first, meta last: an id is readable only once both exist
        for (name, data) in [(id.clone(), bytes), (format!("{id}.json"), &meta[..])] {
            let tmp = self.dir.join(format!("{name}.tmp"));
            tokio::fs::write(&tmp, data).await?;
            tokio::fs::rename(&tmp, self.dir.join(&name)).await?;
        }
        Ok(id)
    }

    async fn get(&self, id: &str) -> std::io::Result<Option<(Meta, Vec<u8>)>> {
        if !valid_id(id) {
            return Ok(None);
        }
        let meta = match tokio::fs::read(self.dir.join(format!("{id}.json"))).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta: Meta = serde_json::from_slice(&meta).map_err(std::io::Error::other)?;
        let bytes = tokio::fs::read(self.dir.join(id)).await?;
        Ok(Some((meta, bytes)))
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(cause = %e, "upload storage failed");
    problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// `POST /v1/uploads`: stores one upload of an account.
pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(store) = state.chat.as_ref().map(|c| c.uploads().clone()) else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "uploads are not enabled");
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "a session token is required (Authorization: Bearer <token from welcome>)",
        );
    };
    let identity = match state.accounts.resume(token).await {
        Ok(i) if !i.guest => i,
        Ok(_) => return problem(StatusCode::FORBIDDEN, "guests cannot upload"),
        Err(_) => return problem(StatusCode::UNAUTHORIZED, "invalid or expired session token"),
    };
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let checked = match uploads::check(declared, &body) {
        Ok(c) => c,
        Err(e) => {
            let status = match e {
                UploadError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                UploadError::Unsupported(_) | UploadError::Mismatch { .. } => {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                }
                _ => StatusCode::BAD_REQUEST,
            };
            return problem(status, e.to_string());
        }
    };
    // decoding is CPU work: keep it off the async workers
    let bytes = body.clone();
    let thumb = match tokio::task::spawn_blocking(move || uploads::thumbnail(checked, &bytes)).await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return problem(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e) => return internal(e),
    };
    let id = match store.put(&identity.login, checked.mime, &body).await {
        Ok(id) => id,
        Err(e) => return internal(e),
    };
    let thumbnail_id = match thumb {
        Some(t) => match store.put(&identity.login, "image/jpeg", &t).await {
            Ok(tid) => Some(tid),
            Err(e) => return internal(e),
        },
        None => None,
    };
    tracing::info!(login = %identity.login, upload = %id, mime = checked.mime, size = body.len(), "upload stored");
    let mut answer = serde_json::json!({
        "upload_id": id,
        "mime": checked.mime,
        "size": body.len(),
        "kind": checked.kind,
    });
    if let Some(t) = thumbnail_id {
        answer["thumbnail_id"] = serde_json::Value::String(t);
    }
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}

/// `GET /v1/uploads/{id}`: the stored bytes with their checked type.
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(store) = state.chat.as_ref().map(|c| c.uploads().clone()) else {
        return problem(StatusCode::NOT_FOUND, "no such upload");
    };
    match store.get(&id).await {
        Ok(Some((meta, bytes))) => {
            // only images render inline; everything else downloads
            let disposition = if meta.mime.starts_with("image/") {
                "inline"
            } else {
                "attachment"
            };
            (
                [
                    (header::CONTENT_TYPE, meta.mime),
                    (header::CONTENT_DISPOSITION, disposition.to_owned()),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                    (
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'none'; sandbox".to_owned(),
                    ),
                    (
                        header::CACHE_CONTROL,
                        "private, max-age=31536000, immutable".to_owned(),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, "no such upload"),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_touching_the_disk() {
        assert!(valid_id(&format!("up_{:032x}", 7u128)));
        for bad in [
            "",
            "up_",
            "../etc/passwd",
            "up_../../../../etc/passwd0000000",
            "up_ABCDEF00000000000000000000000000",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
