//! The web client, embedded in the binary so `namecall serve` works from any directory.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

const INDEX_HTML: &str = include_str!("../../static/index.html");
const APP_JS: &str = include_str!("../../static/app.js");
const STYLE_CSS: &str = include_str!("../../static/style.css");
const CHAT_JS: &str = include_str!("../../static/chat.js");
const PUSH_JS: &str = include_str!("../../static/push.js");
const SW_JS: &str = include_str!("../../static/sw.js");

/// Routes for `/`, `/app.js`, `/chat.js`, `/push.js`, `/sw.js` and `/style.css`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/index.html",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/chat.js",
            get(|| async { page("text/javascript; charset=utf-8", CHAT_JS) }),
        )
        .route(
            "/push.js",
            get(|| async { page("text/javascript; charset=utf-8", PUSH_JS) }),
        )
        // served from the root so the service worker's scope is the whole app
        .route(
            "/sw.js",
            get(|| async { page("text/javascript; charset=utf-8", SW_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { page("text/css; charset=utf-8", STYLE_CSS) }),
        )
        // browsers ask for it on every page load; answer without a 404 in the console
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
