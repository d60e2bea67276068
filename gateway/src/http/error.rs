//! HTTP errors as RFC 9457 problem+json answers.
//!
//! One [`AppError`] implements `IntoResponse`; internals are logged, never
//! sent to the client (axum `examples/error-handling` shape).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Errors an HTTP handler can answer with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// Returns `404 Not Found`.
    #[error("no such resource")]
    NotFound,
    /// Returns `401 Unauthorized`: no valid API key.
    #[error("a valid API key is required (Authorization: Bearer nck_...)")]
    Unauthorized,
    /// Returns `500 Internal Server Error`; the cause is logged only.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Internal(cause) = &self {
            tracing::error!(cause = %cause, "request failed");
        }
        problem(self.status_code(), self.to_string())
    }
}

/// An RFC 9457 problem+json answer; a 401 also carries a Bearer challenge.
pub fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}
