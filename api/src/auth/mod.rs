//! Authentication: who a request comes from. A bearer token (the static tokens, then the token
//! authenticators) or else the connection's verified client certificate maps to a `UserInfo`;
//! impersonation headers then switch to the user they name when the authorizer allows it. The
//! middleware puts the result into the request's extensions for dispatch and the write path.

pub(crate) mod impersonate;
pub mod tokenfile;
pub mod x509;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

pub use crate::state::{AUTHENTICATED, MASTERS, UserInfo};

/// Whether a path is served without a token (health and version).
fn is_public(path: &str) -> bool {
    path == "/version"
        || path == "/version/"
        || path.starts_with("/healthz")
        || path.starts_with("/livez")
        || path.starts_with("/readyz")
}

/// The user a bearer token authenticates, if any.
pub(crate) fn user_of_token<'a>(state: &'a AppState, token: &str) -> Option<&'a UserInfo> {
    state
        .tokens
        .iter()
        .find(|(known, _)| constant_time_eq(known, token))
        .map(|(_, user)| user)
}

/// Requires a valid bearer token everywhere but the public health and version endpoints, and
/// records the caller as a `UserInfo` extension of the request.
pub(crate) async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let user = match token {
        Some(token) => match user_of_token(&state, token) {
            Some(user) => Some(user.clone()),
            None => {
                let mut found = None;
                for authenticator in &state.token_authenticators {
                    if let Some(user) = authenticator.authenticate(&state, token).await {
                        found = Some(user);
                        break;
                    }
                }
                found
            }
        },
        None => None,
    };
    // A client certificate authenticates when no bearer token does.
    let user = user.or_else(|| {
        request
            .extensions()
            .get::<x509::PeerCertificate>()
            .map(|peer| peer.0.clone())
    });
    match user {
        Some(user) => {
            let user = if impersonate::requested(request.headers()) {
                match impersonate::impersonate(&state, &user, request.headers()) {
                    Ok(Some(impersonated)) => {
                        // The audit log names both the authenticated and the impersonated user.
                        request
                            .extensions_mut()
                            .insert(crate::audit::Impersonator(user));
                        impersonated
                    }
                    Ok(None) => user,
                    Err(err) => return err.into_response(),
                }
            } else {
                user
            };
            impersonate::strip(request.headers_mut());
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        None => {
            let audit_id = crate::audit::failed_authentication(&state, &request);
            let mut response = ApiError::unauthorized().into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"skiff\""),
            );
            if let Ok(v) = HeaderValue::from_str(&audit_id) {
                response
                    .headers_mut()
                    .insert(crate::audit::AUDIT_ID_HEADER, v);
            }
            response
        }
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_is_a_master_and_authenticated() {
        let admin = UserInfo::admin("admin");
        assert!(admin.in_group(MASTERS));
        assert!(admin.in_group(AUTHENTICATED));
        assert_eq!(admin.groups.len(), 2);
        let plain = UserInfo::from("node");
        assert_eq!(plain.groups, vec![AUTHENTICATED.to_string()]);
    }

    /// The middleware hands the token's user to what it guards, and refuses unknown tokens.
    #[tokio::test]
    async fn the_token_user_reaches_the_handler() {
        use axum::routing::get;
        use axum::{Extension, Router};
        use tower::ServiceExt as _;

        let store = std::sync::Arc::new(skiff_store::MemoryStore::new());
        let state = Arc::new(AppState::new(
            store,
            vec![("t0ken".into(), UserInfo::admin("admin"))],
        ));
        let router = Router::new()
            .route(
                "/who",
                get(|Extension(user): Extension<UserInfo>| async move {
                    format!("{} {}", user.name, user.groups.join(","))
                }),
            )
            .layer(axum::middleware::from_fn_with_state(state, authenticate));
        let call = |token: &'static str| {
            let router = router.clone();
            async move {
                let request = axum::http::Request::get("/who")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(axum::body::Body::empty())
                    .unwrap();
                let response = router.oneshot(request).await.unwrap();
                let code = response.status().as_u16();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (code, String::from_utf8_lossy(&body).into_owned())
            }
        };
        assert_eq!(
            call("t0ken").await,
            (200, "admin system:masters,system:authenticated".to_string())
        );
        assert_eq!(call("wrong").await.0, 401);
    }
}
