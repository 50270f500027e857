//! The web console: static assets compiled into the binary (`api/ui/`), served at `/ui/`.
//!
//! The assets hold no data, so they are served without authentication; the page then calls the
//! API as its user (a bearer token it keeps in `sessionStorage`, or the browser's client
//! certificate), so every view obeys that user's RBAC. Each answer carries a strong `ETag`
//! (revalidated with `If-None-Match`, `304`), `Cache-Control: no-cache` and a strict
//! `Content-Security-Policy`: scripts, styles and connections only from this origin, plus the
//! page's one inline import map, allowed by its hash.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine as _;

#[cfg(test)]
mod tests;

/// One file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file the console serves, by its path under `/ui/`.
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("html.js", JS),
    asset!("views.js", JS),
    asset!("workloads.js", JS),
    asset!("pods.js", JS),
    asset!("charts.js", JS),
    asset!("metrics.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("vendor/preact.module.js", JS),
    asset!("vendor/hooks.module.js", JS),
    asset!("vendor/htm.module.js", JS),
    asset!("vendor/LICENSE-preact", TEXT),
    asset!("vendor/LICENSE-htm", TEXT),
    asset!("vendor/README.md", "text/markdown; charset=utf-8"),
];

/// The console's routes: `/ui` redirects to `/ui/`, which serves `index.html`.
pub(crate) fn router() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                serve(&path, &headers)
            }),
        )
}

/// The strong entity tag of each asset (a SHA-256 prefix), computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = ring::digest::digest(&ring::digest::SHA256, a.body);
                let hex: String = digest.as_ref()[..12]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// The Content-Security-Policy: nothing but this origin, and the index's import map by hash.
fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let index = ASSETS
            .iter()
            .find(|a| a.name == "index.html")
            .map(|a| String::from_utf8_lossy(a.body).into_owned())
            .unwrap_or_default();
        let import_map = inline_import_map(&index).unwrap_or_default();
        let hash = base64::engine::general_purpose::STANDARD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            import_map.as_bytes(),
        ));
        format!(
            "default-src 'none'; script-src 'self' 'sha256-{hash}'; style-src 'self'; \
             img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    })
}

/// The text of the page's `<script type="importmap">`, as the browser hashes it.
fn inline_import_map(index: &str) -> Option<&str> {
    const OPEN: &str = "<script type=\"importmap\">";
    let start = index.find(OPEN)? + OPEN.len();
    let len = index[start..].find("</script>")?;
    Some(&index[start..start + len])
}

/// Answers one asset, or `304` when the browser's copy is current, or `404`.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, TEXT)],
            format!("the console has no file {path:?}\n"),
        )
            .into_response();
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(content_security_policy()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
