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
        path: None,
        field_selector: req.query.get("fieldSelector").filter(|s| !s.is_empty()),
    };
    match authorizer.authorize(&attributes) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) | Decision::NoOpinion(reason) => {
            let resource = match attributes.subresource {
                Some(sub) => format!("{}/{sub}", attributes.resource),
                None => attributes.resource.to_string(),
            };
            let scope = match attributes.namespace {
                Some(ns) => format!(" in the namespace \"{ns}\""),
                None => " at the cluster scope".to_string(),
            };
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            // Kubernetes' `NewForbidden(GroupResource, name, …)`: the object is named by its
            // group-qualified resource (`deployments.apps`), without the subresource.
            let qualified = if attributes.group.is_empty() {
                attributes.resource.to_string()
            } else {
                format!("{}.{}", attributes.resource, attributes.group)
            };
            Err(ApiError::forbidden(format!(
                "{qualified}{} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\"{scope}{reason}",
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

/// Kubernetes' union authorizer: asks each in order; the first `Allow` or `Deny` decides, and
/// when all have no opinion the request is refused with their non-empty reasons joined by `, `.
/// `rules` joins the rules of every member that can list them (`None` if any cannot).
pub struct Union(pub Vec<std::sync::Arc<dyn Authorizer>>);

impl Authorizer for Union {
    fn authorize(&self, attributes: &Attributes<'_>) -> Decision {
        let mut reasons = Vec::new();
        for authorizer in &self.0 {
            match authorizer.authorize(attributes) {
                Decision::NoOpinion(reason) => {
                    if !reason.is_empty() {
                        reasons.push(reason);
                    }
                }
                decided => return decided,
            }
        }
        Decision::NoOpinion(reasons.join(", "))
    }

    fn rules(&self, user: &crate::UserInfo, namespace: &str) -> Option<crate::Rules> {
        let mut all = crate::Rules::default();
        for authorizer in &self.0 {
            let rules = authorizer.rules(user, namespace)?;
            all.resource.extend(rules.resource);
            all.non_resource.extend(rules.non_resource);
        }
        Some(all)
    }
}

/// Kubernetes' privileged-group authorizer: members of `system:masters` may do anything; everyone
/// else gets no opinion. It comes first in the server's union.
pub struct Masters;

impl Authorizer for Masters {
    fn authorize(&self, attributes: &Attributes<'_>) -> Decision {
        if attributes.user.in_group(crate::state::MASTERS) {
            Decision::Allow
        } else {
            Decision::NoOpinion(String::new())
        }
    }

    fn rules(&self, user: &crate::UserInfo, _namespace: &str) -> Option<crate::Rules> {
        if !user.in_group(crate::state::MASTERS) {
            return Some(crate::Rules::default());
        }
        let all = || vec!["*".to_string()];
        Some(crate::Rules {
            resource: vec![crate::ResourceRule {
                verbs: all(),
                api_groups: all(),
                resources: all(),
                resource_names: Vec::new(),
            }],
            non_resource: vec![crate::NonResourceRule {
                verbs: all(),
                non_resource_urls: all(),
            }],
        })
    }
}
