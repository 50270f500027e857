//! The OCI distribution API v1.1 over HTTP (axum), with push authentication and optional TLS.
//!
//! Repository names contain slashes, so routes cannot be matched by fixed patterns; one handler
//! parses `/v2/<name>/{manifests,blobs,blobs/uploads,tags/list,referrers}/…` from the right.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::task::JoinHandle;

use crate::auth::{self, Credentials};
use crate::digest::Digest;
use crate::manifest::{self, Descriptor};
use crate::name;
use crate::storage::{GcReport, Storage, StorageError, UploadStatus};

/// Errors from starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Socket or file system failure.
    #[error("registry server i/o error: {0}")]
    Io(#[from] io::Error),
    /// The storage could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The token could not be read or created.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// The TLS certificate or key is unusable.
    #[error("tls configuration: {0}")]
    Tls(String),
    /// The server task failed.
    #[error("registry server task failed: {0}")]
    Task(String),
}

/// TLS certificate and key files (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// How to run a registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Where blobs, manifests and the token live.
    pub data_dir: PathBuf,
    /// Require the token for pulls too (default: anonymous pulls).
    pub require_auth_for_pull: bool,
    /// Serve HTTPS with these files; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Upload sessions idle this long are dropped.
    pub upload_idle_timeout: Duration,
}

impl RegistryConfig {
    /// Defaults for `data_dir`: anonymous pulls, plain HTTP, one-hour upload idle timeout.
    pub fn new(data_dir: impl Into<PathBuf>) -> RegistryConfig {
        RegistryConfig {
            data_dir: data_dir.into(),
            require_auth_for_pull: false,
            tls: None,
            upload_idle_timeout: Duration::from_secs(3600),
        }
    }
}

struct AppState {
    storage: Arc<Storage>,
    token: String,
    require_auth_for_pull: bool,
    metrics: crate::metrics::RegistryMetrics,
}

/// A running registry: its address, token, storage, and a graceful shutdown.
pub struct RegistryHandle {
    addr: SocketAddr,
    token: String,
    tls: bool,
    storage: Arc<Storage>,
    stop: tokio::sync::watch::Sender<bool>,
    server: JoinHandle<()>,
    janitor: JoinHandle<()>,
    stop_janitor: tokio::sync::watch::Sender<bool>,
}

impl RegistryHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the registry serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The push token (also in `DIR/registry.token`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The storage behind the server.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Garbage-collects unreferenced blobs older than `grace` while the server runs.
    pub async fn gc(&self, grace: Duration) -> Result<GcReport, ServerError> {
        Ok(self.storage.gc(grace).await?)
    }

    /// Waits until the server stops (after [`RegistryHandle::shutdown`] from elsewhere, or a
    /// failure).
    pub async fn wait(&mut self) -> Result<(), ServerError> {
        (&mut self.server)
            .await
            .map_err(|e| ServerError::Task(e.to_string()))
    }

    /// Stops accepting connections, lets requests in flight finish (up to `grace`), and waits
    /// for the server to stop.
    pub async fn shutdown(mut self, grace: Duration) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        let _ = self.stop_janitor.send(true);
        // The server drains for `grace`, then closes what is left and ends.
        let res = match tokio::time::timeout(grace + Duration::from_secs(1), &mut self.server).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServerError::Task(e.to_string())),
            Err(_) => {
                self.server.abort();
                Ok(())
            }
        };
        let _ = self.janitor.await;
        res
    }
}

/// Binds `addr` and starts a registry on it.
pub async fn start(
    addr: SocketAddr,
    config: RegistryConfig,
) -> Result<RegistryHandle, ServerError> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    start_on(listener.into_std()?, config).await
}

/// Starts a registry on an already bound listener.
pub async fn start_on(
    listener: std::net::TcpListener,
    config: RegistryConfig,
) -> Result<RegistryHandle, ServerError> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let dir = config.data_dir.clone();
    let (storage, token) = tokio::task::spawn_blocking(move || {
        let storage = Storage::open(&dir)?;
        let token = auth::load_or_create_token(&dir)?;
        Ok::<_, ServerError>((storage, token))
    })
    .await
    .map_err(|e| ServerError::Task(e.to_string()))??;
    let storage = Arc::new(storage);
    let state = Arc::new(AppState {
        storage: storage.clone(),
        token: token.clone(),
        require_auth_for_pull: config.require_auth_for_pull,
        metrics: crate::metrics::RegistryMetrics::new(),
    });
    let app = router(state);
    let tls = match &config.tls {
        None => None,
        Some(files) => Some(skiff_serve::TlsAcceptor::from(load_tls(files).await?)),
    };
    let options = skiff_serve::ServeOptions {
        name: "registry",
        limits: CONNECTION_LIMITS,
        tls,
        protocols: skiff_serve::Protocols::Http1AndHttp2,
        // `RegistryHandle::shutdown` says how long.
        drain: Duration::from_secs(3600),
    };
    let (stop_server, mut stopped) = tokio::sync::watch::channel(false);
    let make_service =
        move |_: &skiff_serve::Peer<'_>| hyper_util::service::TowerToHyperService::new(app.clone());
    let server = tokio::spawn(skiff_serve::serve(
        tokio::net::TcpListener::from_std(listener)?,
        options,
        make_service,
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    let (stop_janitor, mut stop) = tokio::sync::watch::channel(false);
    let idle = config.upload_idle_timeout;
    let janitor_storage = storage.clone();
    let janitor = tokio::spawn(async move {
        let mut tick =
            tokio::time::interval(Duration::from_secs(60).min(idle.max(Duration::from_secs(1))));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let n = janitor_storage.expire_uploads(idle).await;
                    if n > 0 {
                        tracing::info!(sessions = n, "expired idle upload sessions");
                    }
                }
                _ = stop.changed() => break,
            }
        }
    });
    tracing::info!(%addr, tls = config.tls.is_some(), dir = %config.data_dir.display(), "registry listening");
    Ok(RegistryHandle {
        addr,
        token,
        tls: config.tls.is_some(),
        storage,
        stop: stop_server,
        server,
        janitor,
        stop_janitor,
    })
}

/// The bounds on the registry's connections (`skiff_serve`): the API server's defaults — 4096
/// open, 32 s for the TLS handshake, the first byte and each HTTP/1.1 head (and keep-alive
/// idle), 90 s with no request in flight (HTTP/2: no stream open), 64 KiB heads (431 past
/// them), 100 HTTP/2 streams — with 1024 per client IP (a quarter: the nodes of `skiff up` and
/// a pushing CI runner share an address). Bodies are bounded per route (manifests: 413 past
/// `MAX_MANIFEST_SIZE`; blobs stream to disk).
pub const CONNECTION_LIMITS: skiff_serve::ConnectionLimits = skiff_serve::ConnectionLimits {
    max_connections_per_client_ip: 1024,
    ..skiff_serve::ConnectionLimits::DEFAULT
};

async fn load_tls(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = (files.cert.clone(), files.key.clone());
    let (certs, key) = tokio::task::spawn_blocking(move || {
        let certs = CertificateDer::pem_file_iter(&cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(&key)
            .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
        Ok::<_, ServerError>((certs, key))
    })
    .await
    .map_err(|e| ServerError::Task(e.to_string()))??;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

/// The distribution API routes, as parsed from a path.
#[derive(Debug, PartialEq)]
enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    UploadStart(String),
    Upload(String, String),
    Blob(String, String),
    Referrers(String, String),
    NotFound,
}

fn parse_route(path: &str) -> Route {
    let rest = match path.strip_prefix("/v2") {
        Some("") | Some("/") => return Route::Base,
        Some(r) => match r.strip_prefix('/') {
            Some(r) => r,
            None => return Route::NotFound,
        },
        None => return Route::NotFound,
    };
    if rest == "_catalog" {
        return Route::Catalog;
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Route::Tags(name.to_string());
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |k: usize| segs[..n - k].join("/");
    let decode = |s: &str| s.replace("%3A", ":").replace("%3a", ":");
    if n >= 3 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        if segs[n - 1].is_empty() {
            return Route::UploadStart(name(3));
        }
        return Route::Upload(name(3), segs[n - 1].to_string());
    }
    if n >= 2 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Route::UploadStart(name(2));
    }
    if n >= 2 {
        match segs[n - 2] {
            "manifests" => return Route::Manifest(name(2), decode(segs[n - 1])),
            "blobs" => return Route::Blob(name(2), decode(segs[n - 1])),
            "referrers" => return Route::Referrers(name(2), decode(segs[n - 1])),
            _ => {}
        }
    }
    Route::NotFound
}

/// A distribution-spec error response.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: header::HeaderName, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self, head: bool) -> Response {
        let body = serde_json::json!({
            "errors": [{ "code": self.code, "message": self.message, "detail": null }]
        })
        .to_string();
        let mut b = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/json");
        for (k, v) in self.headers {
            b = b.header(k, v);
        }
        let body = if head {
            Body::empty()
        } else {
            Body::from(body)
        };
        b.body(body)
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR))
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        let msg = e.to_string();
        match e {
            StorageError::DigestMismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", msg)
            }
            StorageError::BlobUnknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", msg)
            }
            StorageError::UploadUnknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", msg)
            }
            StorageError::RangeInvalid { have, .. } => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                msg,
            )
            .header(header::RANGE, range_value(have)),
            StorageError::ManifestInvalid(_) | StorageError::ManifestSize { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", msg)
            }
            StorageError::ManifestTooLarge => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID", msg)
            }
            StorageError::ManifestBlobUnknown(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", msg)
            }
            StorageError::ManifestUnknown => {
                ApiError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", msg)
            }
            StorageError::NameUnknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", msg)
            }
            StorageError::Body(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", msg)
            }
            StorageError::Io(_) | StorageError::Locked(_) => {
                tracing::error!(error = %msg, "registry storage failure");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", msg)
            }
        }
    }
}

fn plain(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// Distribution's name of the handler serving a route (the `handler` label of the metrics).
fn handler_name(path: &str) -> &'static str {
    match parse_route(path) {
        Route::Base => "base",
        Route::Catalog => "catalog",
        Route::Tags(_) => "tags",
        Route::Manifest(..) => "manifest",
        Route::UploadStart(_) => "blob_upload",
        Route::Upload(..) => "blob_upload_chunk",
        Route::Blob(..) => "blob",
        Route::Referrers(..) => "referrers",
        Route::NotFound if path == "/metrics" => "metrics",
        Route::NotFound => "notfound",
    }
}

/// `GET /metrics`, for callers presenting the registry's token (push credentials).
fn metrics(st: &AppState, req: &Request) -> Result<Response, ApiError> {
    let creds = auth::check(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
        &st.token,
    );
    match creds {
        Credentials::Valid => {}
        Credentials::Invalid => return Err(unauthorized("invalid credentials")),
        Credentials::None => return Err(unauthorized("authentication required")),
    }
    only(req.method(), &[Method::GET])?;
    let mut resp = Response::new(Body::from(st.metrics.render()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(skiff_telemetry::metrics::CONTENT_TYPE),
    );
    Ok(resp)
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn dispatch(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let head = req.method() == Method::HEAD;
    let started = std::time::Instant::now();
    let handler = handler_name(req.uri().path());
    let method = req.method().clone();
    let request_bytes = content_length(req.headers());
    let result = if handler == "metrics" {
        metrics(&st, &req)
    } else {
        handle(&st, req).await
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(head),
    };
    st.metrics.record(
        handler,
        &method,
        resp.status().as_u16(),
        started.elapsed(),
        request_bytes,
        content_length(resp.headers()),
    );
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", msg)
        .header(header::WWW_AUTHENTICATE, "Basic realm=\"skiff-registry\"")
}

async fn handle(st: &AppState, req: Request) -> Result<Response, ApiError> {
    let route = parse_route(req.uri().path());
    let method = req.method().clone();
    let creds = auth::check(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
        &st.token,
    );
    let reading = method == Method::GET || method == Method::HEAD;
    let needs_token = route == Route::Base || !reading || st.require_auth_for_pull;
    // Where anonymous access is allowed, wrong credentials are ignored rather than refused:
    // clients such as skopeo send empty Basic credentials after an anonymous challenge.
    match creds {
        Credentials::Invalid if needs_token => {
            return Err(unauthorized("invalid credentials"));
        }
        Credentials::None if needs_token => return Err(unauthorized("authentication required")),
        _ => {}
    }
    let check_name = |n: &str| {
        if name::is_valid_name(n) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "NAME_INVALID",
                format!("invalid repository name {n:?}"),
            ))
        }
    };
    let query: HashMap<String, String> = Query::try_from_uri(req.uri())
        .map(|Query(q)| q)
        .unwrap_or_default();
    match route {
        Route::Base => Ok(json_response(StatusCode::OK, "{}".into())),
        Route::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such endpoint",
        )),
        Route::Catalog => {
            only(&method, &[Method::GET])?;
            let repos = st.storage.catalog().await?;
            let (page, link) = paginate(repos, &query, "/v2/_catalog")?;
            let body = serde_json::json!({ "repositories": page }).to_string();
            Ok(with_link(json_response(StatusCode::OK, body), link))
        }
        Route::Tags(name) => {
            check_name(&name)?;
            only(&method, &[Method::GET])?;
            let tags = st.storage.list_tags(&name).await?;
            let (page, link) = paginate(tags, &query, &format!("/v2/{name}/tags/list"))?;
            let body = serde_json::json!({ "name": name, "tags": page }).to_string();
            Ok(with_link(json_response(StatusCode::OK, body), link))
        }
        Route::Manifest(name, reference) => {
            check_name(&name)?;
            manifest_route(st, &method, &name, &reference, req).await
        }
        Route::Blob(name, digest) => {
            check_name(&name)?;
            let digest = parse_digest(&digest)?;
            match method {
                Method::GET | Method::HEAD => {
                    get_blob(st, &digest, req.headers(), method == Method::HEAD).await
                }
                Method::DELETE => Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "UNSUPPORTED",
                    "blob deletion is not supported; delete manifests and run garbage collection",
                )),
                _ => Err(unsupported()),
            }
        }
        Route::UploadStart(name) => {
            check_name(&name)?;
            only(&method, &[Method::POST])?;
            start_upload(st, &name, &query, req).await
        }
        Route::Upload(name, id) => {
            check_name(&name)?;
            upload_route(st, &method, &name, &id, &query, req).await
        }
        Route::Referrers(name, digest) => {
            check_name(&name)?;
            only(&method, &[Method::GET])?;
            let digest = parse_digest(&digest)?;
            let mut refs = st.storage.referrers(&name, &digest).await?;
            let filter = query.get("artifactType").cloned();
            if let Some(t) = &filter {
                refs.retain(|d| d.artifact_type.as_deref() == Some(t.as_str()));
            }
            let body = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest::OCI_INDEX,
                "manifests": refs,
            })
            .to_string();
            let mut resp = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, manifest::OCI_INDEX);
            if filter.is_some() {
                resp = resp.header("OCI-Filters-Applied", "artifactType");
            }
            Ok(resp
                .body(Body::from(body))
                .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR)))
        }
    }
}

fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        "method not allowed here",
    )
}

fn only(method: &Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(unsupported())
    }
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse().map_err(|e: crate::digest::DigestError| {
        ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string())
    })
}

fn json_response(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR))
}

fn with_link(mut resp: Response, link: Option<String>) -> Response {
    if let Some(link) = link
        && let Ok(v) = HeaderValue::from_str(&link)
    {
        resp.headers_mut().insert(header::LINK, v);
    }
    resp
}

/// Applies `n` and `last` to a sorted list; returns the page and a `Link` header value.
fn paginate(
    items: Vec<String>,
    query: &HashMap<String, String>,
    base: &str,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let n = match query.get("n") {
        Some(s) => Some(s.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                "n must be a number",
            )
        })?),
        None => None,
    };
    let mut rest: Vec<String> = match query.get("last") {
        Some(last) => items
            .into_iter()
            .filter(|t| t.as_str() > last.as_str())
            .collect(),
        None => items,
    };
    match n {
        Some(n) if rest.len() > n => {
            rest.truncate(n);
            let link = rest
                .last()
                .map(|last| format!("<{base}?n={n}&last={last}>; rel=\"next\""));
            Ok((rest, link))
        }
        _ => Ok((rest, None)),
    }
}

async fn get_blob(
    st: &AppState,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let (mut file, size) = st.storage.open_blob(digest).await?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, size));
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Some(None) => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RANGE_INVALID",
                "range not satisfiable",
            )
            .header(header::CONTENT_RANGE, format!("bytes */{size}")));
        }
    };
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("Docker-Content-Digest", digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    let body = if head || len == 0 {
        Body::empty()
    } else {
        if start > 0 {
            file.seek(io::SeekFrom::Start(start))
                .await
                .map_err(StorageError::Io)?;
        }
        let reader = file.take(len);
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20))
    };
    Ok(b.body(body)
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR)))
}

/// Parses a single `bytes=A-B`, `bytes=A-` or `bytes=-N` range; `None` if unsatisfiable.
fn parse_range(v: &str, size: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (size.saturating_sub(n), size.checked_sub(1)?)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size.checked_sub(1)?
        } else {
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?)
        };
        (start, end)
    };
    (start <= end && end < size).then_some((start, end))
}

fn upload_response(status: StatusCode, name: &str, up: &UploadStatus) -> Response {
    Response::builder()
        .status(status)
        .header(
            header::LOCATION,
            format!("/v2/{name}/blobs/uploads/{}", up.id),
        )
        .header(header::RANGE, range_value(up.size))
        .header(header::CONTENT_LENGTH, 0)
        .header("Docker-Upload-UUID", up.id.clone())
        .body(Body::empty())
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR))
}

fn blob_created(name: &str, digest: &Digest) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header(header::CONTENT_LENGTH, 0)
        .header("Docker-Content-Digest", digest.to_string())
        .body(Body::empty())
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR))
}

async fn start_upload(
    st: &AppState,
    name: &str,
    query: &HashMap<String, String>,
    req: Request,
) -> Result<Response, ApiError> {
    if let Some(mount) = query.get("mount") {
        let digest = parse_digest(mount)?;
        if st.storage.blob_size(&digest).await?.is_some() {
            return Ok(blob_created(name, &digest));
        }
    }
    let up = st.storage.start_upload(name).await?;
    if let Some(d) = query.get("digest") {
        let digest = match parse_digest(d) {
            Ok(d) => d,
            Err(e) => {
                let _ = st.storage.cancel_upload(name, &up.id).await;
                return Err(e);
            }
        };
        let body = req.into_body().into_data_stream();
        if let Err(e) = st.storage.finish_upload(name, &up.id, &digest, body).await {
            // A one-shot upload whose body failed is not resumable: drop its session.
            let _ = st.storage.cancel_upload(name, &up.id).await;
            return Err(e.into());
        }
        return Ok(blob_created(name, &digest));
    }
    Ok(upload_response(StatusCode::ACCEPTED, name, &up))
}

async fn upload_route(
    st: &AppState,
    method: &Method,
    name: &str,
    id: &str,
    query: &HashMap<String, String>,
    req: Request,
) -> Result<Response, ApiError> {
    match *method {
        Method::GET => {
            let up = st.storage.upload_status(name, id).await?;
            Ok(upload_response(StatusCode::NO_CONTENT, name, &up))
        }
        Method::PATCH => {
            let start = req
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    let v = v
                        .trim()
                        .trim_start_matches("bytes")
                        .trim_start_matches(['=', ' ']);
                    v.split(['-', '/'])
                        .next()
                        .unwrap_or("")
                        .parse::<u64>()
                        .map_err(|_| {
                            ApiError::new(
                                StatusCode::RANGE_NOT_SATISFIABLE,
                                "BLOB_UPLOAD_INVALID",
                                "malformed Content-Range",
                            )
                        })
                })
                .transpose()?;
            let body = req.into_body().into_data_stream();
            let up = st.storage.append_upload(name, id, start, body).await?;
            Ok(upload_response(StatusCode::ACCEPTED, name, &up))
        }
        Method::PUT => {
            let Some(d) = query.get("digest") else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    "digest query parameter is required",
                ));
            };
            let digest = parse_digest(d)?;
            let body = req.into_body().into_data_stream();
            st.storage.finish_upload(name, id, &digest, body).await?;
            Ok(blob_created(name, &digest))
        }
        Method::DELETE => {
            st.storage.cancel_upload(name, id).await?;
            Ok(plain(StatusCode::NO_CONTENT))
        }
        _ => Err(unsupported()),
    }
}

enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

fn parse_manifest_ref(reference: &str) -> Result<ManifestRef, ApiError> {
    if reference.contains(':') {
        Ok(ManifestRef::Digest(parse_digest(reference)?))
    } else if name::is_valid_tag(reference) {
        Ok(ManifestRef::Tag(reference.to_string()))
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
            format!("invalid tag {reference:?}"),
        ))
    }
}

async fn manifest_route(
    st: &AppState,
    method: &Method,
    name: &str,
    reference: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let r = parse_manifest_ref(reference)?;
    match *method {
        Method::GET | Method::HEAD => {
            let digest = match r {
                ManifestRef::Digest(d) => d,
                ManifestRef::Tag(t) => {
                    if !st.storage.repo_exists(name).await {
                        return Err(StorageError::NameUnknown(name.to_string()).into());
                    }
                    st.storage.resolve_tag(name, &t).await?
                }
            };
            let (bytes, media_type) = st.storage.get_manifest(name, &digest).await?;
            let b = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, media_type)
                .header(header::CONTENT_LENGTH, bytes.len())
                .header("Docker-Content-Digest", digest.to_string())
                .header(header::ETAG, format!("\"{digest}\""));
            let body = if *method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(bytes)
            };
            Ok(b.body(body)
                .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR)))
        }
        Method::PUT => {
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = axum::body::to_bytes(req.into_body(), crate::storage::MAX_MANIFEST_SIZE)
                .await
                .map_err(|_| StorageError::ManifestTooLarge)?;
            let (tag, expected) = match &r {
                ManifestRef::Tag(t) => (Some(t.as_str()), None),
                ManifestRef::Digest(d) => (None, Some(d)),
            };
            let (digest, subject) = st
                .storage
                .put_manifest(name, tag, expected, body, content_type.as_deref())
                .await?;
            let mut b = Response::builder()
                .status(StatusCode::CREATED)
                .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
                .header(header::CONTENT_LENGTH, 0)
                .header("Docker-Content-Digest", digest.to_string());
            if let Some(s) = subject {
                b = b.header("OCI-Subject", s.to_string());
            }
            Ok(b.body(Body::empty())
                .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR)))
        }
        Method::DELETE => {
            match r {
                ManifestRef::Digest(d) => st.storage.delete_manifest(name, &d).await?,
                ManifestRef::Tag(t) => st.storage.delete_tag(name, &t).await?,
            }
            Ok(plain(StatusCode::ACCEPTED))
        }
        _ => Err(unsupported()),
    }
}

/// Descriptor of a referrer, re-exported for clients of the referrers API.
pub type ReferrerDescriptor = Descriptor;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse_route("/v2/"), Route::Base);
        assert_eq!(parse_route("/v2"), Route::Base);
        assert_eq!(parse_route("/v2/_catalog"), Route::Catalog);
        assert_eq!(parse_route("/v2/a/b/tags/list"), Route::Tags("a/b".into()));
        assert_eq!(
            parse_route("/v2/a/b/manifests/latest"),
            Route::Manifest("a/b".into(), "latest".into())
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/"),
            Route::UploadStart("a".into())
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads"),
            Route::UploadStart("a".into())
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/xyz"),
            Route::Upload("a".into(), "xyz".into())
        );
        assert_eq!(
            parse_route("/v2/a/blobs/sha256%3Aab"),
            Route::Blob("a".into(), "sha256:ab".into())
        );
        assert_eq!(
            parse_route("/v2/a/referrers/d"),
            Route::Referrers("a".into(), "d".into())
        );
        assert_eq!(parse_route("/v3/x"), Route::NotFound);
        assert_eq!(parse_route("/v2x"), Route::NotFound);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=90-200", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }

    #[test]
    fn pagination() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (p, link) = paginate(items.clone(), &q(&[("n", "2")]), "/x").unwrap();
        assert_eq!(p, vec!["a", "b"]);
        assert_eq!(link.as_deref(), Some("</x?n=2&last=b>; rel=\"next\""));
        let (p, link) = paginate(items.clone(), &q(&[("n", "2"), ("last", "b")]), "/x").unwrap();
        assert_eq!(p, vec!["c", "d"]);
        assert!(link.is_none());
        assert!(paginate(items, &q(&[("n", "x")]), "/x").is_err());
    }
}
