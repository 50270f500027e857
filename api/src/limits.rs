//! Bounds on the API server's connections and request heads: how many connections at once (in
//! all and per client IP), how long a client may take to start and send a request's head
//! (slowloris) or sit idle between requests, the largest head (431) and the longest URL (414).
//! The connection bounds are enforced by the serving loop every surface shares (`skiff_serve`);
//! this module holds the API server's values and the URL bound.
//!
//! Kubernetes' choices are the reference (kube-apiserver's `http.Server`): `ReadHeaderTimeout`
//! 32 s also bounding the TLS handshake, `IdleTimeout` 90 s, 100 HTTP/2 streams per connection
//! when `--http2-max-streams-per-connection` is 0, and a bound on the request head. Where Skiff
//! differs it is stricter, so that memory stays bounded by `connections × head size`:
//!
//! | limit | default | over it |
//! |---|---|---|
//! | open connections ([`ConnectionLimits::max_connections`]) | 4096 | accepted and closed at once |
//! | connections of one client IP ([`ConnectionLimits::max_connections_per_client_ip`]) | 512 | accepted and closed at once |
//! | TLS handshake, first byte, each HTTP/1.1 request head, idle keep-alive ([`ConnectionLimits::request_header_timeout`]) | 32 s | connection closed |
//! | no request in flight: an HTTP/2 connection with no open stream ([`ConnectionLimits::idle_timeout`]) | 90 s | closed with `GOAWAY` |
//! | HTTP/2 streams of one connection ([`ConnectionLimits::http2_max_concurrent_streams`]) | 100 | the client waits for a stream |
//! | request head (HTTP/1.1 start line + headers; HTTP/2 header list) ([`MAX_HEADER_BYTES`]) | 64 KiB | 431, connection closed |
//! | HTTP/1.1 header count | 100 (hyper's) | 431 |
//! | URL (path + query, label and field selectors included) ([`MAX_URL_BYTES`]) | 32 KiB | 414 `Status` |
//! | body | 3 MiB (`crate::body::MAX_BODY_BYTES`) | 413 `Status` |
//! | JSON/YAML nesting | 128 levels (serde_json's and serde_yaml's recursion limit) | 400 `Status` |
//! | requests in flight, watches per user | `crate::fairness` | 429 `Status` + `Retry-After` |

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, StatusReason};

/// The server's connection bounds (flags `--max-connections`,
/// `--max-connections-per-client-ip`, `--request-header-timeout-seconds`,
/// `--idle-connection-timeout-seconds`, `--http2-max-streams-per-connection`); the defaults are
/// the API server's.
pub use skiff_serve::ConnectionLimits;
/// The largest request head: past it hyper (HTTP/1.1) or h2 (HTTP/2) answers 431 Request Header
/// Fields Too Large, without a `Status` body, as Go's server does for kube-apiserver.
pub use skiff_serve::MAX_HEADER_BYTES;

/// The longest URL (path and query) a request may have; past it the answer is 414 with a
/// `Status`. Label and field selectors travel in the query, so this bounds them too. (hyper
/// itself refuses a request target over 65534 bytes with a bare 414.)
pub const MAX_URL_BYTES: usize = 32 * 1024;

/// Answers 414 with a `Status` for a URL longer than [`MAX_URL_BYTES`].
pub(crate) async fn url_length(request: Request, next: Next) -> Response {
    let len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if len > MAX_URL_BYTES {
        return ApiError::new(
            414,
            StatusReason::UriTooLong,
            format!("the request URL is {len} bytes, longer than the limit of {MAX_URL_BYTES}"),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    fn get(uri: &str) -> Request {
        axum::http::Request::get(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_url_over_the_limit_gets_414_with_a_status() {
        let app = axum::Router::new()
            .fallback(|| async { "ok" })
            .layer(axum::middleware::from_fn(url_length));
        let long = format!("/api/v1/pods?labelSelector={}", "a".repeat(MAX_URL_BYTES));
        let resp = app.clone().oneshot(get(&long)).await.unwrap();
        assert_eq!(resp.status(), 414);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "RequestURITooLong");
        let short = app.oneshot(get("/api/v1/pods?labelSelector=a%3Db")).await;
        assert_eq!(short.unwrap().status(), 200);
    }
}
