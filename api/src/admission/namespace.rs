//! Kubernetes' `NamespaceLifecycle` admission plugin, the one place for its rules: nothing is
//! created in a missing namespace (404 `namespaces "x" not found`) or in one being deleted (403
//! `... unable to create new content in namespace x because it is being terminated`), and the
//! system namespaces cannot be deleted (403 `namespaces "default" is forbidden: this namespace
//! may not be deleted`). The create check runs first thing in `registry::create`; the delete
//! guard is a plugin of the chain (a namespace's delete is a mark, an update, until its
//! finalizers are done).

use serde_json::Value;

use super::forbidden;
use crate::error::ApiError;
use crate::objects;
use crate::registry::{Admission, Admitted, Operation, Write};
use crate::state::AppState;

/// The namespaces that always exist (Kubernetes' immortal namespaces).
pub(crate) const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The delete guard.
pub(crate) struct NamespaceLifecycle;

impl Admission for NamespaceLifecycle {
    fn admit<'a>(
        &'a self,
        _state: &'a AppState,
        op: Operation,
        write: &'a Write<'a>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
    ) -> Admitted<'a> {
        Box::pin(async move {
            if (write.kind.group, write.kind.plural) != ("", "namespaces")
                || !IMMORTAL.contains(&write.name)
            {
                return Ok(());
            }
            let deleting = match op {
                Operation::Delete => true,
                Operation::Update => {
                    objects::is_deleting(obj) && !old.is_some_and(objects::is_deleting)
                }
                Operation::Create => false,
            };
            if deleting {
                return Err(forbidden(write, "this namespace may not be deleted"));
            }
            Ok(())
        })
    }
}

/// Before a create: the namespace of a namespaced object must exist and not be terminating.
pub(crate) async fn check_open(state: &AppState, write: &Write<'_>) -> Result<(), ApiError> {
    let (true, Some(ns)) = (write.kind.namespaced, write.namespace) else {
        return Ok(());
    };
    let ns_kind = skiff_kinds::find("", "v1", "namespaces").expect("namespaces are a known kind");
    let kv = state
        .store
        .get(&objects::key(ns_kind, None, ns))
        .await?
        .ok_or_else(|| ApiError::not_found("", "namespaces", ns))?;
    let namespace = objects::from_kv(ns_kind, &kv)?;
    if objects::is_deleting(&namespace) {
        return Err(forbidden(
            write,
            format_args!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        ));
    }
    Ok(())
}
