//! The HTTP edge: one [`router`] for the web client, health, metrics and the WebSocket.
//!
//! `router(state)` builds the whole app without a socket so tests can call
//! it with `tower::ServiceExt::oneshot` (axum `examples/testing`).

pub mod admin;
pub mod error;
mod static_files;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::trace::TraceLayer;

use crate::AppState;
pub use error::AppError;

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(static_files::router())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/ws", get(crate::ws::upgrade))
        .route("/v1/admin/trunks", get(admin::trunks))
        .route(
            "/v1/uploads",
            axum::routing::post(crate::chat::uploads::post).layer(
                axum::extract::DefaultBodyLimit::max(crate::chat::uploads::BODY_LIMIT),
            ),
        )
        .route("/v1/uploads/{id}", get(crate::chat::uploads::get))
        .route("/v1/push/vapid", get(vapid))
        .fallback(|| async { AppError::NotFound })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `GET /healthz`: 200 `ok` while the process serves.
async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /v1/push/vapid`: the VAPID public key browsers subscribe with
/// (`applicationServerKey`), as `{"public_key": "<base64url>"}`.
async fn vapid(State(state): State<AppState>) -> axum::response::Response {
    match state.chat.as_ref().and_then(|c| c.vapid_public()) {
        Some(key) => axum::Json(serde_json::json!({ "public_key": key })).into_response(),
        None => AppError::NotFound.into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = state.metrics.render();
    if let Some(admin) = &state.admin {
        body.push_str(&admin.trunks.render_metrics());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
