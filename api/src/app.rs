//! The axum application: routing, the authentication layer, discovery and the non-resource
//! endpoints; resource requests go to `dispatch`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::UserInfo;
use crate::body::{Wanted, negotiate, read_limited};
use crate::error::ApiError;
use crate::request::{Query, ResourceRequest, Route, route};
pub use crate::respond::{json_response, table_response};
pub use crate::state::AppState;

/// The Kubernetes API as an axum router.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/version/", get(version))
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(ready))
        .route("/healthz/{*check}", get(health))
        .route("/livez/{*check}", get(health))
        .route("/readyz/{*check}", get(ready))
        .route("/metrics", get(crate::metrics::serve))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/{*path}", get(openapi_document))
        .route(
            "/.well-known/openid-configuration",
            get(crate::serviceaccount::discovery::openid_configuration),
        )
        .route(
            crate::serviceaccount::discovery::JWKS_PATH,
            get(crate::serviceaccount::discovery::jwks),
        )
        .fallback(dispatch)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authorize_non_resource,
        ))
        // After authentication (both need the user): the audit log sees every authenticated
        // request, those fairness refuses included.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::fairness::limit,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::audit::audit,
        ))
        // The request's span, when traces are exported: inside authentication (it names the
        // user), around everything else.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::tracing_layer::trace,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        // Before authentication: a URL over the limit is refused unread (414).
        .layer(middleware::from_fn(crate::limits::url_length))
        // Outermost: every request is counted and timed, those refused before routing included.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::measure,
        ))
        .with_state(state)
        // The console's static files, outside authentication: they hold no data (the page
        // calls the API as its user).
        .merge(crate::ui::router())
}

/// Whether a path is a non-resource URL served outside `dispatch` (discovery under `/api` and
/// `/apis` is authorized by `dispatch` once routing tells it from a resource).
fn non_resource_path(path: &str) -> bool {
    [
        "/version",
        "/openapi",
        "/.well-known",
        "/openid",
        "/metrics",
    ]
    .iter()
    .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// Authorizes a non-resource request of the authenticated user (`Attributes.path`, the method
/// in lower case); a refusal is Kubernetes' 403 `forbidden: User "u" cannot get path "/p"`.
/// Requests without a user (the public health and version endpoints) pass.
pub(crate) async fn check_non_resource(
    state: &Arc<AppState>,
    user: Option<&UserInfo>,
    method: &Method,
    path: &str,
) -> Result<(), ApiError> {
    let Some(user) = user else {
        return Ok(());
    };
    crate::rbac::start(state).await?;
    let verb = method.as_str().to_ascii_lowercase();
    let attributes = crate::state::Attributes {
        user,
        verb: &verb,
        group: "",
        resource: "",
        subresource: None,
        namespace: None,
        name: None,
        path: Some(path),
        field_selector: None,
    };
    match state.authorizer.authorize(&attributes) {
        crate::state::Decision::Allow => Ok(()),
        crate::state::Decision::Deny(reason) | crate::state::Decision::NoOpinion(reason) => {
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            Err(ApiError::forbidden(format!(
                "forbidden: User \"{}\" cannot {verb} path \"{path}\"{reason}",
                user.name
            )))
        }
    }
}

/// The layer that authorizes `/version`, `/openapi/*`, `/.well-known/*`, `/openid/*` and
/// `/metrics`.
async fn authorize_non_resource(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: middleware::Next,
) -> Response {
    let path = request.uri().path().to_string();
    if non_resource_path(&path) {
        let user = request.extensions().get::<UserInfo>();
        if let Err(err) = check_non_resource(&state, user, request.method(), &path).await {
            return err.into_response();
        }
    }
    next.run(request).await
}

async fn version() -> Response {
    json_response(StatusCode::OK, &crate::version_info())
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.store.current_revision().await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {err}")).into_response(),
    }
}

/// The OpenAPI documents for the server's current custom kinds (built once per set of CRDs).
async fn openapi_documents(
    state: &Arc<AppState>,
) -> Result<Arc<skiff_kinds::openapi::Published>, ApiError> {
    crate::crd::start(state).await?;
    let custom = state.crds.kinds();
    tokio::task::spawn_blocking(move || skiff_kinds::openapi::published(&custom))
        .await
        .map_err(|e| ApiError::internal(format!("building the OpenAPI documents: {e}")))
}

async fn openapi_index(State(state): State<Arc<AppState>>) -> Response {
    match openapi_documents(&state).await {
        Ok(docs) => json_response(StatusCode::OK, &docs.v3_index()),
        Err(err) => err.into_response(),
    }
}

/// `/openapi/v3/GROUP-VERSION-PATH[?hash=…]`, as kube-openapi serves it: a request naming the
/// current hash may be cached for good, one naming an old hash is redirected to the current one.
async fn openapi_document(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(path): axum::extract::Path<String>,
    request: Request,
) -> Response {
    let docs = match openapi_documents(&state).await {
        Ok(docs) => docs,
        Err(err) => return err.into_response(),
    };
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if preferred_type(accept, &[("application/json", "application/json")]).is_none() {
        return ApiError::not_acceptable("only application/json is served").into_response();
    }
    let path = path.trim_end_matches('/');
    let Some(served) = docs.v3_document(path) else {
        return ApiError::no_route(&format!("/openapi/v3/{path}")).into_response();
    };
    let hash = Query::parse(request.uri().query())
        .get("hash")
        .map(str::to_string);
    if let Some(hash) = hash.filter(|h| !h.is_empty()) {
        if hash != served.etag {
            let location = format!("/openapi/v3/{path}?hash={}", served.etag);
            let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, v);
            }
            return response;
        }
        let mut response =
            served_response(request.headers(), served, &served.etag, "application/json");
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
        return response;
    }
    served_response(request.headers(), served, &served.etag, "application/json")
}

/// The media types `/openapi/v2` serves, in kube-openapi's order: JSON, then gnostic protobuf
/// under its two names.
const OPENAPI_V2_TYPES: &[(&str, &str)] = &[
    ("application/json", "application/json"),
    (
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
    ),
    (
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
    ),
];

/// The index in `types` (media type, returned type) of the type `Accept` prefers: its clauses by
/// decreasing `q` (clauses with `q=0` refuse a type), wildcards matching; none when nothing is
/// acceptable.
fn preferred_type(accept: Option<&str>, types: &[(&str, &str)]) -> Option<usize> {
    let accept = accept
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("*/*");
    let mut clauses: Vec<(f32, usize, String)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, clause)| {
            let mut parts = clause.split(';').map(str::trim);
            let media = parts.next()?.to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok())?;
            (q > 0.0 && !media.is_empty()).then_some((q, i, media))
        })
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    clauses.iter().find_map(|(_, _, media)| {
        let (ty, sub) = media.split_once('/')?;
        types.iter().position(|(name, _)| {
            let (t, s) = name.split_once('/').unwrap_or((name, ""));
            (ty == "*" || ty == t) && (sub == "*" || sub == s)
        })
    })
}

/// `/openapi/v2` in JSON or gnostic protobuf, as `Accept` asks (406 when neither is acceptable);
/// both carry the JSON document's ETag, as kube-apiserver sends.
async fn openapi_v2(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let Some(index) = preferred_type(accept, OPENAPI_V2_TYPES) else {
        let mut response = ApiError::not_acceptable(
            "only application/json and application/com.github.proto-openapi.spec.v2@v1.0+protobuf are served",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        return response;
    };
    let docs = match openapi_documents(&state).await {
        Ok(docs) => docs,
        Err(err) => return err.into_response(),
    };
    let built = tokio::task::spawn_blocking(move || {
        let json_etag = docs.v2_json().etag.clone();
        if index > 0 {
            docs.v2_protobuf();
        }
        (docs, json_etag)
    })
    .await;
    let (docs, etag) = match built {
        Ok(built) => built,
        Err(e) => {
            return ApiError::internal(format!("building the OpenAPI v2 document: {e}"))
                .into_response();
        }
    };
    let served = if index == 0 {
        docs.v2_json()
    } else {
        docs.v2_protobuf()
    };
    served_response(request.headers(), served, &etag, OPENAPI_V2_TYPES[index].1)
}

/// A document with its quoted ETag and `Vary: Accept`, or `304 Not Modified` when
/// `If-None-Match` names the ETag (or is `*`).
fn served_response(
    headers: &axum::http::HeaderMap,
    served: &skiff_kinds::openapi::Served,
    etag: &str,
    content_type: &'static str,
) -> Response {
    let quoted = format!("\"{etag}\"");
    let not_modified = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == quoted);
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(served.body.clone()))
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Ok(v) = HeaderValue::from_str(&quoted) {
        h.insert(header::ETAG, v);
    }
    response
}

/// Everything under `/api` and `/apis`, and the 404 for anything else.
async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match dispatch_inner(state, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn dispatch_inner(state: Arc<AppState>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    crate::crd::start(&state).await?;
    crate::rbac::start(&state).await?;
    let route = route(&path, &state.crds)?;
    let wanted = negotiate(&parts.headers);
    let discovery_only = |method: &Method| -> Result<(), ApiError> {
        if method == Method::GET || method == Method::HEAD {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(format!(
                "{method} is not allowed on {path}"
            )))
        }
    };
    match route {
        Route::CoreVersions => {
            discovery_only(&parts.method)?;
            discovery_check(&state, &parts, &path).await?;
            Ok(match wanted {
                Wanted::AggregatedDiscovery(v) => aggregated(&state, true, v),
                _ => json_response(StatusCode::OK, &skiff_kinds::discovery::api_versions()),
            })
        }
        Route::Groups => {
            discovery_only(&parts.method)?;
            discovery_check(&state, &parts, &path).await?;
            Ok(match wanted {
                Wanted::AggregatedDiscovery(v) => aggregated(&state, false, v),
                _ => json_response(
                    StatusCode::OK,
                    &skiff_kinds::discovery::api_group_list_with(&state.crds.kinds()),
                ),
            })
        }
        Route::Group(group) => {
            discovery_only(&parts.method)?;
            discovery_check(&state, &parts, &path).await?;
            let doc = skiff_kinds::discovery::api_group_with(&group, &state.crds.kinds())
                .ok_or_else(|| ApiError::no_route(&path))?;
            Ok(json_response(StatusCode::OK, &doc))
        }
        Route::ResourceList { group, version } => {
            discovery_only(&parts.method)?;
            discovery_check(&state, &parts, &path).await?;
            let doc = skiff_kinds::discovery::api_resource_list_with(
                &group,
                &version,
                &state.crds.kinds(),
            )
            .ok_or_else(|| ApiError::no_route(&path))?;
            Ok(json_response(StatusCode::OK, &doc))
        }
        Route::Resource(target) => {
            let body = read_limited(body).await?;
            let upgrade = parts.extensions.get::<hyper::upgrade::OnUpgrade>().cloned();
            let user = parts
                .extensions
                .get::<UserInfo>()
                .cloned()
                .ok_or_else(ApiError::unauthorized)?;
            let req = ResourceRequest {
                method: parts.method,
                user,
                kind: target.kind,
                namespace: target.namespace,
                name: target.name,
                subresource: target.subresource,
                rest: target.rest,
                query: Query::parse(parts.uri.query()),
                raw_query: parts.uri.query().map(str::to_string),
                headers: parts.headers,
                body,
                legacy_watch: target.legacy_watch,
                http2: parts.version == axum::http::Version::HTTP_2,
                upgrade,
            };
            crate::dispatch::handle(&state, req).await
        }
    }
}

/// Authorizes a discovery request (`/api`, `/apis`, `/apis/G`, `/apis/G/V`) as non-resource.
async fn discovery_check(
    state: &Arc<AppState>,
    parts: &axum::http::request::Parts,
    path: &str,
) -> Result<(), ApiError> {
    let user = parts.extensions.get::<UserInfo>();
    if user.is_none() {
        return Err(ApiError::unauthorized());
    }
    check_non_resource(state, user, &parts.method, path).await
}

fn aggregated(state: &AppState, core: bool, version: &'static str) -> Response {
    let doc = skiff_kinds::discovery::aggregated_with(core, version, &state.crds.kinds());
    let mut response = json_response(StatusCode::OK, &doc);
    let ct = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    if let Ok(v) = HeaderValue::from_str(&ct) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}
