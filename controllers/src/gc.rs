//! Garbage collector: deletes objects whose owners are gone (background propagation), empties
//! owners marked `foregroundDeletion` before releasing them, and strips ownerReferences for
//! owners marked `orphan`. Besides a fixed set of built-in kinds it follows every custom kind:
//! as CustomResourceDefinitions become Established (or go) it starts (or stops) a watch of
//! their objects, which then take part as owners and dependents.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::Error;
use crate::informer::Synced;

type ApiFor = Box<dyn Fn(&str) -> Api<DynamicObject> + Send + Sync>;

/// An object of any kind as the collector reads it: its metadata, shared with the informer's
/// store rather than copied (a sweep over 150,000 pods must not clone their labels).
trait Meta: Send + Sync {
    fn object_meta(&self) -> &ObjectMeta;
}

impl<K: Resource + Send + Sync> Meta for K {
    fn object_meta(&self) -> &ObjectMeta {
        self.meta()
    }
}

type MetaRef = Arc<dyn Meta>;

/// One watched kind, seen by the collector as owner and dependent.
pub struct OwnedKind {
    group: String,
    kind: String,
    namespaced: bool,
    metas: Box<dyn Fn() -> Vec<MetaRef> + Send + Sync>,
    api: ApiFor,
    ready: Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
}

fn api_for(client: Client, ar: ApiResource) -> ApiFor {
    Box::new(move |ns| {
        if ns.is_empty() {
            Api::all_with(client.clone(), &ar)
        } else {
            Api::namespaced_with(client.clone(), ns, &ar)
        }
    })
}

impl OwnedKind {
    /// A kind backed by an informer store, usable once `synced`.
    pub fn new<K>(client: Client, store: Store<K>, synced: Synced) -> OwnedKind
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Send + Sync + 'static,
        K::Scope: 'static,
    {
        let s = store;
        let ar = ApiResource::erase::<K>(&());
        OwnedKind {
            group: ar.group.clone(),
            kind: ar.kind.clone(),
            namespaced: std::any::TypeId::of::<K::Scope>()
                == std::any::TypeId::of::<kube::core::NamespaceResourceScope>(),
            metas: Box::new(move || s.state().into_iter().map(|o| o as MetaRef).collect()),
            api: api_for(client, ar),
            ready: Box::new(move || {
                let s = synced.clone();
                Box::pin(async move { s.wait().await })
            }),
        }
    }

    /// Whether an ownerReference points at an object of this kind (any version of its group).
    fn owns(&self, o: &OwnerReference) -> bool {
        let group = o.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        o.kind == self.kind && group == self.group
    }
}

/// A custom kind the collector watches, with the watch that fills its store.
struct CustomWatch {
    kind: OwnedKind,
    resource: ApiResource,
    synced: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CustomWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the collector watches of a CRD: its storage version (else the first served one), once
/// the CRD is Established.
fn custom_resource(crd: &CustomResourceDefinition) -> Option<(ApiResource, bool)> {
    let established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
    if !established {
        return None;
    }
    let spec = &crd.spec;
    let version = spec
        .versions
        .iter()
        .find(|v| v.storage && v.served)
        .or_else(|| spec.versions.iter().find(|v| v.served))?;
    let ar = ApiResource {
        group: spec.group.clone(),
        version: version.name.clone(),
        api_version: format!("{}/{}", spec.group, version.name),
        kind: spec.names.kind.clone(),
        plural: spec.names.plural.clone(),
    };
    Some((ar, spec.scope == "Namespaced"))
}

/// Starts the watch of one custom kind.
fn watch_custom(client: &Client, ar: ApiResource, namespaced: bool) -> CustomWatch {
    let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
    let store = writer.as_reader();
    let synced = Arc::new(AtomicBool::new(false));
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let resource = ar.clone();
    let flag = synced.clone();
    let what = format!("{}.{}", ar.plural, ar.group);
    let task = tokio::spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(reflector::reflector(writer, stream));
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => flag.store(true, Ordering::Release),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, resource = %what, "watch error"),
            }
        }
    });
    let kind = OwnedKind {
        group: ar.group.clone(),
        kind: ar.kind.clone(),
        namespaced,
        metas: Box::new(move || store.state().into_iter().map(|o| o as MetaRef).collect()),
        api: api_for(client.clone(), ar),
        // Sweeps take a custom kind only once its first list is in (`synced`).
        ready: Box::new(|| Box::pin(async {})),
    };
    CustomWatch {
        kind,
        resource,
        synced,
        task,
    }
}

/// A custom kind whose CRD is gone: none of its objects exist any more (the CRD's deletion
/// removed them), so references to it are dangling; asked through the API they are 404.
fn retired(client: &Client, ar: ApiResource, namespaced: bool) -> OwnedKind {
    OwnedKind {
        group: ar.group.clone(),
        kind: ar.kind.clone(),
        namespaced,
        metas: Box::new(Vec::new),
        api: api_for(client.clone(), ar),
        ready: Box::new(|| Box::pin(async {})),
    }
}

/// The custom kinds followed from the CRDs in `crds`: one watch per served custom kind.
pub struct CustomKinds {
    client: Client,
    crds: Store<CustomResourceDefinition>,
    synced: Synced,
    /// The CRD watch's events: every kind seen there is remembered, even one whose CRD came
    /// and went between two refreshes.
    events: futures::stream::BoxStream<'static, watcher::Event<CustomResourceDefinition>>,
    seen: HashMap<ResourceKey, (ApiResource, bool)>,
    watches: HashMap<ResourceKey, CustomWatch>,
    /// Kinds whose CRD went, so that what their objects owned is still collected.
    retired: HashMap<ResourceKey, OwnedKind>,
}

/// A custom kind's group, version and plural.
type ResourceKey = (String, String, String);

impl CustomKinds {
    /// Custom kinds from the CRDs of an informer (its store, its first list, its events).
    pub fn new(
        client: Client,
        crds: Store<CustomResourceDefinition>,
        synced: Synced,
        events: impl futures::Stream<Item = watcher::Event<CustomResourceDefinition>> + Send + 'static,
    ) -> Self {
        CustomKinds {
            client,
            crds,
            synced,
            events: events.boxed(),
            seen: HashMap::new(),
            watches: HashMap::new(),
            retired: HashMap::new(),
        }
    }

    /// Starts watches of newly Established kinds, stops those of CRDs that are gone and
    /// retires every kind seen whose CRD is gone.
    fn refresh(&mut self) {
        use futures::FutureExt;
        while let Some(Some(ev)) = self.events.next().now_or_never() {
            if let watcher::Event::Apply(crd)
            | watcher::Event::InitApply(crd)
            | watcher::Event::Delete(crd) = ev
                && let Some((ar, namespaced)) = custom_resource(&crd)
            {
                let key = (ar.group.clone(), ar.version.clone(), ar.plural.clone());
                self.seen.insert(key, (ar, namespaced));
            }
        }
        let mut wanted = HashMap::new();
        for crd in self.crds.state() {
            if let Some((ar, namespaced)) = custom_resource(&crd) {
                let key = (ar.group.clone(), ar.version.clone(), ar.plural.clone());
                wanted.insert(key, (ar, namespaced));
            }
        }
        let gone: Vec<_> = self
            .watches
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(w) = self.watches.remove(&key) {
                tracing::debug!(resource = ?key, "garbage collector stops watching a custom kind");
                let kind = retired(&self.client, w.resource.clone(), w.kind.namespaced);
                self.retired.insert(key, kind);
            }
        }
        for (key, (ar, namespaced)) in &self.seen {
            if !wanted.contains_key(key) && !self.retired.contains_key(key) {
                let kind = retired(&self.client, ar.clone(), *namespaced);
                self.retired.insert(key.clone(), kind);
            }
        }
        for (key, (ar, namespaced)) in wanted {
            if !self.watches.contains_key(&key) {
                tracing::debug!(resource = ?key, "garbage collector watches a custom kind");
                self.retired.remove(&key);
                let w = watch_custom(&self.client, ar, namespaced);
                self.watches.insert(key, w);
            }
        }
    }

    /// The custom kinds whose first list is in, and the retired ones.
    fn synced_kinds(&self) -> impl Iterator<Item = &OwnedKind> {
        self.watches
            .values()
            .filter(|w| w.synced.load(Ordering::Acquire))
            .map(|w| &w.kind)
            .chain(self.retired.values())
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
pub async fn sweep(kinds: &[&OwnedKind]) -> Result<(), Error> {
    let objects: Vec<(usize, MetaRef)> = kinds
        .iter()
        .enumerate()
        .flat_map(|(i, k)| (k.metas)().into_iter().map(move |m| (i, m)))
        .collect();
    let all: Vec<(usize, &ObjectMeta)> =
        objects.iter().map(|(i, m)| (*i, m.object_meta())).collect();
    let live: HashMap<&str, &ObjectMeta> = all
        .iter()
        .filter_map(|(_, m)| m.uid.as_deref().map(|u| (u, *m)))
        .collect();
    // Dependents by owner uid.
    let mut deps: HashMap<&str, Vec<(usize, &ObjectMeta)>> = HashMap::new();
    for (i, m) in &all {
        for o in m.owner_references.iter().flatten() {
            deps.entry(o.uid.as_str()).or_default().push((*i, *m));
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
        // An owner of a kind not watched (yet) counts as alive.
        let any_alive = refs
            .iter()
            .any(|o| !kinds.iter().any(|k| k.owns(o)) || live.contains_key(o.uid.as_str()));
        if any_alive {
            continue;
        }
        let mut confirmed_gone = true;
        for o in &refs {
            if let Some(k) = kinds.iter().find(|k| k.owns(o)) {
                let oapi = (k.api)(if k.namespaced { &ns } else { "" });
                match oapi.get_opt(&o.name).await {
                    Ok(Some(obj)) if obj.metadata.uid.as_deref() == Some(o.uid.as_str()) => {
                        confirmed_gone = false;
                    }
                    Ok(_) => {}
                    Err(_) => confirmed_gone = false,
                }
            }
        }
        if confirmed_gone {
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

/// Runs the collector: a sweep every `interval` and on every change (coalesced), over `kinds`
/// and the custom kinds of `custom`'s CRDs.
pub async fn run(
    kinds: Vec<OwnedKind>,
    mut custom: Option<CustomKinds>,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<()>,
    interval: Duration,
) {
    for k in &kinds {
        tracing::debug!(kind = %k.kind, "garbage collector waiting for its informer");
        (k.ready)().await;
    }
    if let Some(c) = &custom {
        c.synced.wait().await;
    }
    tracing::info!("garbage collector synced");
    loop {
        let mut all: Vec<&OwnedKind> = kinds.iter().collect();
        if let Some(c) = custom.as_mut() {
            c.refresh();
        }
        if let Some(c) = &custom {
            all.extend(c.synced_kinds());
        }
        let started = tokio::time::Instant::now();
        if let Err(e) = sweep(&all).await {
            tracing::debug!(error = %e, "garbage collector sweep");
        }
        // Changes are coalesced for at least 100 ms, and for four times the last sweep: a sweep
        // reads every object, so under a stream of changes (150,000 pods being created) the
        // collector takes at most a fifth of a core rather than all of it.
        let coalesce = Duration::from_millis(100).max(started.elapsed() * 4);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            got = changes.recv() => {
                if got.is_none() {
                    tokio::time::sleep(interval).await;
                }
                tokio::time::sleep(coalesce).await;
                while changes.try_recv().is_ok() {}
            }
        }
    }
}

/// Helper: a name for logs.
pub fn describe<K: ResourceExt>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}
