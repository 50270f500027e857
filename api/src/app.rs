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
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/{*path}", get(openapi_document))
        .fallback(dispatch)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .with_state(state)
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

async fn openapi_index() -> Response {
    json_response(StatusCode::OK, &skiff_kinds::openapi::v3_index())
}

async fn openapi_document(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match skiff_kinds::openapi::v3_document_json(path.trim_end_matches('/')) {
        Some(doc) => {
            let mut response = Response::new(Body::from(doc));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        None => ApiError::no_route(&format!("/openapi/v3/{path}")).into_response(),
    }
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
            Ok(match wanted {
                Wanted::AggregatedDiscovery(v) => aggregated(&state, true, v),
                _ => json_response(StatusCode::OK, &skiff_kinds::discovery::api_versions()),
            })
        }
        Route::Groups => {
            discovery_only(&parts.method)?;
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
            let doc = skiff_kinds::discovery::api_group_with(&group, &state.crds.kinds())
                .ok_or_else(|| ApiError::no_route(&path))?;
            Ok(json_response(StatusCode::OK, &doc))
        }
        Route::ResourceList { group, version } => {
            discovery_only(&parts.method)?;
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
            };
            crate::dispatch::handle(&state, req).await
        }
    }
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
