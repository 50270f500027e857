//! Authorization: what the authenticated user may do, asked once per resource request by
//! `dispatch`, with the attributes Kubernetes' authorizers see (user, verb, group, resource,
//! subresource, namespace, name).
//!
//! The trait and the one policy today live in `state.rs` (the bottom layer):
//! [`crate::AllowAuthenticated`] lets every authenticated user do everything — the only
//! credentials the server issues are the admin token and the nodes' copies of it. RBAC replaces
//! it through [`crate::AppState::with_authorizer`] without touching the verbs.

use axum::http::Method;

use crate::error::ApiError;
use crate::request::ResourceRequest;
use crate::state::{Attributes, Authorizer, Decision};

/// Kubernetes' verb for a request.
pub(crate) fn verb(req: &ResourceRequest) -> &'static str {
    let watch = req.legacy_watch || req.query.flag("watch");
    match (&req.method, req.name.is_some()) {
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

/// Asks `authorizer` about `req`; a denial is Kubernetes' 403 `Forbidden` Status.
pub(crate) fn check(authorizer: &dyn Authorizer, req: &ResourceRequest) -> Result<(), ApiError> {
    check_verb(authorizer, req, verb(req))
}

/// Asks `authorizer` about `req` as if it were `verb` (`pods/exec` over a websocket `GET` is
/// also authorized as `create`, as Kubernetes does).
pub(crate) fn check_verb(
    authorizer: &dyn Authorizer,
    req: &ResourceRequest,
    verb: &str,
) -> Result<(), ApiError> {
    let attributes = Attributes {
        user: &req.user,
        verb,
        group: req.kind.group,
        resource: req.kind.plural,
        subresource: req.subresource.as_deref(),
        namespace: req.namespace.as_deref(),
        name: req.name.as_deref(),
    };
    match authorizer.authorize(&attributes) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => {
            let resource = match attributes.subresource {
                Some(sub) => format!("{}/{sub}", attributes.resource),
                None => attributes.resource.to_string(),
            };
            let scope = match attributes.namespace {
                Some(ns) => format!(" in the namespace \"{ns}\""),
                None => " at the cluster scope".to_string(),
            };
            Err(ApiError::forbidden(format!(
                "{resource}{} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\"{scope}: {reason}",
                attributes
                    .name
                    .map(|n| format!(" \"{n}\""))
                    .unwrap_or_default(),
                attributes.user.name,
                attributes.verb,
                attributes.group,
            )))
        }
    }
}
