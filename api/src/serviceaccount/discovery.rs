//! OIDC discovery for ServiceAccount tokens, as kube-apiserver serves it to authenticated
//! users: `/.well-known/openid-configuration` and the keys at `/openid/v1/jwks`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// The path of the key set.
pub(crate) const JWKS_PATH: &str = "/openid/v1/jwks";

fn cached(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

fn disabled() -> Response {
    ApiError::no_route("service-account issuer discovery is not enabled").into_response()
}

/// `GET /.well-known/openid-configuration`.
pub(crate) async fn openid_configuration(State(state): State<Arc<AppState>>) -> Response {
    let Some(sa) = state.service_accounts.as_ref() else {
        return disabled();
    };
    let doc = json!({
        "issuer": sa.issuer,
        "jwks_uri": format!("{}{JWKS_PATH}", sa.issuer.trim_end_matches('/')),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    });
    cached(
        crate::respond::json_response(StatusCode::OK, &doc),
        "application/json",
    )
}

/// `GET /openid/v1/jwks`.
pub(crate) async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let Some(sa) = state.service_accounts.as_ref() else {
        return disabled();
    };
    cached(
        crate::respond::json_response(StatusCode::OK, &sa.jwks()),
        "application/jwk-set+json",
    )
}
