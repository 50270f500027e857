//! Serving CustomResourceDefinitions and their custom resources: the per-server registry of
//! custom kinds (`registry`), what the server writes into a CRD (`names`: the finalizer, stored
//! versions and the `NamesAccepted`/`Established`/`Terminating` conditions, as Kubernetes' naming
//! and establishing controllers), the removal of a deleted CRD's objects (`cleanup`), and the
//! `scale` subresource of custom resources (`scale`). The write path calls `before_write` and
//! `after_write`/`after_remove` around every store write; `start` loads the registry and follows
//! the store before the first request is answered.

mod cleanup;
mod names;
pub mod registry;
pub(crate) mod scale;

use std::sync::Arc;

use futures::future::BoxFuture;

use serde_json::Value;
use skiff_kinds::Kind;
use skiff_store::EventType;

use crate::error::ApiError;
use crate::objects;
use crate::state::AppState;

pub use registry::CrdRegistry;

/// The finalizer that holds a CRD until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The CustomResourceDefinition kind.
pub(crate) fn crd_kind() -> &'static Kind {
    skiff_kinds::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("CustomResourceDefinition is a built-in kind")
}

fn is_crd(kind: &Kind) -> bool {
    kind.group == "apiextensions.k8s.io" && kind.kind == "CustomResourceDefinition"
}

/// Rules a write runs just before the store: a CRD gets the server's status (names, conditions,
/// stored versions) and, when created, the cleanup finalizer; a custom resource cannot be created
/// while its CRD is being deleted.
pub(crate) fn before_write(
    state: &AppState,
    kind: &Kind,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if kind.is_custom() && old.is_none() && state.crds.terminating(kind) {
        return Err(ApiError::method_not_allowed(
            "create not allowed while custom resource definition is terminating",
        ));
    }
    if is_crd(kind) {
        let causes = skiff_kinds::crd::validate_crd(obj, old);
        if !causes.is_empty() {
            let name = objects::meta_str(obj, "name")
                .unwrap_or_default()
                .to_string();
            return Err(crate::registry::map_validation(
                kind,
                &name,
                skiff_kinds::validate::Error::Invalid(causes),
            ));
        }
        names::prepare(state, obj, old.is_none());
    }
    Ok(())
}

/// After a write is stored: the registry learns of a CRD at once (before the response), and the
/// deletion of a terminating CRD's objects starts.
pub(crate) fn after_write(state: &AppState, kind: &Kind, stored: &Value) {
    if !is_crd(kind) {
        return;
    }
    let Some(rev) = objects::meta_str(stored, "resourceVersion").and_then(|r| r.parse().ok())
    else {
        return;
    };
    state.crds.observe(stored, rev);
    cleanup::maybe_start(state, stored);
}

/// After an object is removed from the store at revision `rev`.
pub(crate) fn after_remove(state: &AppState, kind: &Kind, old: &Value, rev: u64) {
    if is_crd(kind)
        && let Some(name) = objects::meta_str(old, "name")
    {
        state.crds.forget(name, rev);
        names::recheck_group(state, old);
    }
}

/// Loads the registry from the store the first time it is called for a server, then follows the
/// store's watch of CRDs for as long as the server's state lives. Every request awaits it, so
/// no request is answered before the stored CRDs are known.
pub(crate) async fn start(state: &Arc<AppState>) -> Result<(), ApiError> {
    let crds = state.crds.clone();
    crds.started
        .get_or_try_init(|| async {
            let _ = crds.state.set(Arc::downgrade(state));
            let rev = load(state).await?;
            tokio::spawn(crate::follow::follow(Crds, Arc::downgrade(state), rev));
            Ok::<(), ApiError>(())
        })
        .await?;
    Ok(())
}

/// Lists the stored CRDs into the registry; returns the revision of the list.
async fn load(state: &AppState) -> Result<u64, ApiError> {
    let list = state
        .store
        .list(skiff_store::ListOptions {
            prefix: crd_kind().storage_prefix(),
            ..Default::default()
        })
        .await?;
    let mut crds = Vec::new();
    for kv in &list.items {
        let mut crd = objects::from_kv(crd_kind(), kv)?;
        objects::meta_mut(&mut crd).insert(
            "resourceVersion".into(),
            Value::String(kv.mod_revision.to_string()),
        );
        crds.push((crd, kv.mod_revision));
    }
    state
        .crds
        .reset(crds.iter().map(|(c, _)| c.clone()).collect(), list.revision);
    for (crd, _) in &crds {
        cleanup::maybe_start(state, crd);
    }
    Ok(list.revision)
}

/// The served CRDs follow the store's CustomResourceDefinitions.
struct Crds;

impl crate::follow::Follower for Crds {
    const WHAT: &'static str = "CustomResourceDefinitions";

    fn prefix(&self) -> String {
        crd_kind().storage_prefix()
    }

    fn apply(&self, state: &Arc<AppState>, event: &skiff_store::Event) {
        let Ok(crd) = objects::from_kv(crd_kind(), &event.kv) else {
            return;
        };
        match event.event_type {
            EventType::Put => {
                state.crds.observe(&crd, event.kv.mod_revision);
                cleanup::maybe_start(state, &crd);
            }
            EventType::Delete => {
                if let Some(name) = objects::meta_str(&crd, "name") {
                    state.crds.forget(name, event.kv.mod_revision);
                    names::recheck_group(state, &crd);
                }
            }
        }
    }

    fn load<'a>(&'a self, state: &'a AppState) -> BoxFuture<'a, Result<u64, ApiError>> {
        Box::pin(load(state))
    }
}
