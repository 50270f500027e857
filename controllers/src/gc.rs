//! Garbage collector: deletes objects whose owners are gone (background propagation), empties
//! owners marked `foregroundDeletion` before releasing them, and strips ownerReferences for
//! owners marked `orphan`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::Error;
use crate::informer::Synced;

type ApiFor = Box<dyn Fn(&str) -> Api<kube::api::DynamicObject> + Send + Sync>;

/// One watched kind, seen by the collector as owner and dependent.
pub struct OwnedKind {
    kind: String,
    metas: Box<dyn Fn() -> Vec<ObjectMeta> + Send + Sync>,
    api: ApiFor,
    ready: Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
}

impl OwnedKind {
    /// A kind backed by an informer store, usable once `synced`.
    pub fn new<K>(client: Client, store: Store<K>, synced: Synced) -> OwnedKind
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Send + Sync + 'static,
    {
        let s = store;
        let ar = kube::api::ApiResource::erase::<K>(&());
        OwnedKind {
            kind: K::kind(&()).into_owned(),
            metas: Box::new(move || s.state().iter().map(|o| o.meta().clone()).collect()),
            api: Box::new(move |ns| {
                if ns.is_empty() {
                    Api::all_with(client.clone(), &ar)
                } else {
                    Api::namespaced_with(client.clone(), ns, &ar)
                }
            }),
            ready: Box::new(move || {
                let s = synced.clone();
                Box::pin(async move { s.wait().await })
            }),
        }
    }
}

fn has_finalizer(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

/// Merge-patches the object of `meta`; a gone or changed object (404, 409) is left to the next
/// sweep.
async fn merge_patch(
    api: &Api<kube::api::DynamicObject>,
    meta: &ObjectMeta,
    patch: serde_json::Value,
) -> Result<(), Error> {
    match api
        .patch(
            meta.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn remove_finalizer(
    api: &Api<kube::api::DynamicObject>,
    meta: &ObjectMeta,
    f: &str,
) -> Result<(), Error> {
    let rest: Vec<String> = meta
        .finalizers
        .iter()
        .flatten()
        .filter(|x| *x != f)
        .cloned()
        .collect();
    let patch = serde_json::json!({"metadata": {
        "finalizers": rest,
        "resourceVersion": meta.resource_version,
    }});
    merge_patch(api, meta, patch).await
}

/// Sets `blockOwnerDeletion: false` on every ownerReference of `meta` (with a uid precondition).
async fn unblock_owner_references(
    api: &Api<kube::api::DynamicObject>,
    meta: &ObjectMeta,
) -> Result<(), Error> {
    let refs: Vec<_> = meta
        .owner_references
        .iter()
        .flatten()
        .cloned()
        .map(|mut o| {
            o.block_owner_deletion = Some(false);
            o
        })
        .collect();
    tracing::debug!(name = ?meta.name, "unblocking the owner references of a possible cycle");
    let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": meta.uid}});
    merge_patch(api, meta, patch).await
}

/// One pass over every watched object.
pub async fn sweep(kinds: &[OwnedKind]) -> Result<(), Error> {
    let all: Vec<(usize, ObjectMeta)> = kinds
        .iter()
        .enumerate()
        .flat_map(|(i, k)| (k.metas)().into_iter().map(move |m| (i, m)))
        .collect();
    let watched: HashSet<&str> = kinds.iter().map(|k| k.kind.as_str()).collect();
    let live: HashMap<&str, &ObjectMeta> = all
        .iter()
        .filter_map(|(_, m)| m.uid.as_deref().map(|u| (u, m)))
        .collect();
    // Dependents by owner uid.
    let mut deps: HashMap<&str, Vec<(usize, &ObjectMeta)>> = HashMap::new();
    for (i, m) in &all {
        for o in m.owner_references.iter().flatten() {
            deps.entry(o.uid.as_str()).or_default().push((*i, m));
        }
    }
    for (i, m) in &all {
        let ns = m.namespace.clone().unwrap_or_default();
        let api = (kinds[*i].api)(&ns);
        let name = m.name.clone().unwrap_or_default();
        let uid = m.uid.clone().unwrap_or_default();
        // Owner side: foreground and orphan finalizers.
        if m.deletion_timestamp.is_some() {
            let children = deps.get(uid.as_str()).cloned().unwrap_or_default();
            if has_finalizer(m, "orphan") {
                for (ci, c) in &children {
                    let refs: Vec<_> = c
                        .owner_references
                        .iter()
                        .flatten()
                        .filter(|o| o.uid != uid)
                        .cloned()
                        .collect();
                    let capi = (kinds[*ci].api)(c.namespace.as_deref().unwrap_or_default());
                    let patch =
                        serde_json::json!({"metadata": {"ownerReferences": refs, "uid": c.uid}});
                    let _ = capi
                        .patch(
                            c.name.as_deref().unwrap_or_default(),
                            &PatchParams::default(),
                            &Patch::Merge(patch),
                        )
                        .await;
                }
                if children.is_empty() {
                    remove_finalizer(&api, m, "orphan").await?;
                }
            } else if has_finalizer(m, "foregroundDeletion") {
                let mut blocking = false;
                for (ci, c) in &children {
                    let capi = (kinds[*ci].api)(c.namespace.as_deref().unwrap_or_default());
                    // As Kubernetes' collector: a dependent about to be deleted in the foreground
                    // whose own dependents are already deleting theirs in the foreground may be
                    // in an ownerReference cycle (a owns b owns c owns a). Its references stop
                    // blocking their owners, so that no owner of the cycle waits for itself.
                    let in_cycle = c.deletion_timestamp.is_none()
                        && deps
                            .get(c.uid.as_deref().unwrap_or_default())
                            .is_some_and(|gs| {
                                gs.iter().any(|(_, g)| {
                                    g.deletion_timestamp.is_some()
                                        && has_finalizer(g, "foregroundDeletion")
                                })
                            });
                    if in_cycle {
                        unblock_owner_references(&capi, c).await?;
                    } else if c
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
                    {
                        blocking = true;
                    }
                    if c.deletion_timestamp.is_none() {
                        let _ = capi
                            .delete(
                                c.name.as_deref().unwrap_or_default(),
                                &DeleteParams::foreground(),
                            )
                            .await;
                    }
                }
                if !blocking {
                    remove_finalizer(&api, m, "foregroundDeletion").await?;
                }
            }
        }
        // Dependent side: every owner gone -> delete (background).
        let refs: Vec<_> = m.owner_references.iter().flatten().collect();
        if refs.is_empty() || m.deletion_timestamp.is_some() {
            continue;
        }
        let any_alive = refs
            .iter()
            .any(|o| !watched.contains(o.kind.as_str()) || live.contains_key(o.uid.as_str()));
        let mut confirmed_gone = true;
        for o in &refs {
            if let Some(k) = kinds.iter().find(|k| k.kind == o.kind) {
                let oapi = (k.api)(&ns);
                match oapi.get_opt(&o.name).await {
                    Ok(Some(obj)) if obj.metadata.uid.as_deref() == Some(o.uid.as_str()) => {
                        confirmed_gone = false;
                    }
                    Ok(_) => {}
                    Err(_) => confirmed_gone = false,
                }
            }
        }
        if !any_alive && confirmed_gone {
            tracing::debug!(kind = %kinds[*i].kind, %ns, %name, "collecting orphaned dependent");
            match api
                .delete(
                    &name,
                    &DeleteParams::background().preconditions(kube::api::Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => tracing::debug!(error = %e, "garbage collecting"),
            }
        }
    }
    Ok(())
}

/// Runs the collector: a sweep every `interval` and on every change (coalesced).
pub async fn run(
    kinds: Vec<OwnedKind>,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<()>,
    interval: Duration,
) {
    for k in &kinds {
        tracing::debug!(kind = %k.kind, "garbage collector waiting for its informer");
        (k.ready)().await;
    }
    tracing::info!("garbage collector synced");
    loop {
        if let Err(e) = sweep(&kinds).await {
            tracing::debug!(error = %e, "garbage collector sweep");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            got = changes.recv() => {
                if got.is_none() {
                    tokio::time::sleep(interval).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                while changes.try_recv().is_ok() {}
            }
        }
    }
}

/// Helper: a name for logs.
pub fn describe<K: ResourceExt>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}
