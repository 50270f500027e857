//! ResourceQuota controller, as kube-controller-manager's: each quota's `status.hard` is its
//! `spec.hard` and `status.used` what the namespace's objects use of it (the evaluators of
//! `skiff_meta::quota`), recomputed from the objects on every quota change, on every change of
//! the kinds whose deletion releases usage (pods, services, PersistentVolumeClaims, ConfigMaps,
//! Secrets, ReplicationControllers), and at least every `RESYNC` for the other counted kinds.
//! This releases what deleted objects, terminal pods and failed writes held; quota admission in
//! the API server charges new usage before each write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource, ResourceExt};
use skiff_meta::quota::{self, ResourceList};

use crate::Error;

/// How often every quota is recomputed even when nothing it watches changed (kinds counted
/// with `count/<resource>.<group>` are not watched).
pub const RESYNC: Duration = Duration::from_secs(30);

/// Shared state of the quota controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
}

/// The API resource of a counted kind: the core kinds directly, any other through discovery.
async fn api_resource(client: &Client, group: &str, plural: &str) -> Result<ApiResource, Error> {
    let core = match plural {
        "pods" => Some(ApiResource::erase::<Pod>(&())),
        "services" => Some(ApiResource::erase::<Service>(&())),
        "persistentvolumeclaims" => Some(ApiResource::erase::<PersistentVolumeClaim>(&())),
        "configmaps" => Some(ApiResource::erase::<ConfigMap>(&())),
        "secrets" => Some(ApiResource::erase::<Secret>(&())),
        "replicationcontrollers" => Some(ApiResource::erase::<ReplicationController>(&())),
        "resourcequotas" => Some(ApiResource::erase::<ResourceQuota>(&())),
        _ => None,
    };
    if let (true, Some(ar)) = (group.is_empty(), core) {
        return Ok(ar);
    }
    let found = kube::discovery::oneshot::group(client, group).await?;
    found
        .recommended_resources()
        .into_iter()
        .find(|(ar, _)| ar.plural == plural)
        .map(|(ar, _)| ar)
        .ok_or_else(|| Error::NotSupported(format!("no resource {plural} in group {group:?}")))
}

/// What the namespace's objects use of `hard`, as `status.used`: every hard resource, zero
/// when nothing uses it.
pub async fn usage(
    client: &Client,
    quota_obj: &serde_json::Value,
    namespace: &str,
    hard: &ResourceList,
) -> Result<ResourceList, Error> {
    let mut by_kind: BTreeMap<(String, String), Vec<&String>> = BTreeMap::new();
    for name in hard.keys() {
        if let Some(kind) = quota::kind_of(name) {
            by_kind.entry(kind).or_default().push(name);
        }
    }
    let mut used: ResourceList = hard
        .keys()
        .map(|k| (k.clone(), skiff_meta::quantity::Quantity::ZERO))
        .collect();
    for ((group, plural), names) in by_kind {
        let ar = api_resource(client, &group, &plural).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        for obj in api.list(&ListParams::default()).await? {
            let obj = serde_json::to_value(&obj).unwrap_or_default();
            if !quota::scopes_match(quota_obj, &group, &plural, &obj) {
                continue;
            }
            let u = quota::usage(&group, &plural, &obj);
            for name in &names {
                if let (Some(q), Some(total)) = (u.get(*name), used.get_mut(*name)) {
                    *total = *total + *q;
                }
            }
        }
    }
    Ok(used)
}

fn k8s_list(list: &ResourceList) -> BTreeMap<String, K8sQuantity> {
    list.iter()
        .map(|(k, v)| (k.clone(), K8sQuantity(v.to_string())))
        .collect()
}

/// Recomputes one quota and writes its status when it changed, against the resourceVersion it
/// was computed from (a concurrent charge by admission makes it start over). A count that
/// missed an object charged but not yet stored cannot release it: the API server recounts
/// what a status write lowers once no charge is in flight (`skiff_api` quota admission).
pub async fn reconcile(rq: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = rq.namespace().unwrap_or_default();
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(current) = api.get_opt(&rq.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let as_json = serde_json::to_value(&current).unwrap_or_default();
    let hard = quota::parse_list(as_json.pointer("/spec/hard"));
    let used = usage(&ctx.client, &as_json, &namespace, &hard).await?;
    let status = current.status.clone().unwrap_or_default();
    let have_hard = quota::parse_list(as_json.pointer("/status/hard"));
    let have_used = quota::parse_list(as_json.pointer("/status/used"));
    let same_keys = |a: &ResourceList, b: &ResourceList| a.keys().eq(b.keys());
    if have_hard == hard
        && same_keys(&have_hard, &hard)
        && have_used == used
        && same_keys(&have_used, &used)
        && status.hard.is_some()
    {
        return Ok(Action::requeue(RESYNC));
    }
    let mut next = current.clone();
    next.status = Some(k8s_openapi::api::core::v1::ResourceQuotaStatus {
        hard: Some(k8s_list(&hard)),
        used: Some(k8s_list(&used)),
    });
    match api
        .replace_status(&rq.name_any(), &PostParams::default(), &next)
        .await
    {
        Ok(_) => Ok(Action::requeue(RESYNC)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Maps an object of a watched kind to the quotas of its namespace.
fn quotas_of<K: Resource>(
    quotas: &Store<ResourceQuota>,
) -> impl Fn(K) -> Vec<ObjectRef<ResourceQuota>> + Send + Sync + 'static {
    let quotas = quotas.clone();
    move |obj: K| {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        quotas
            .state()
            .iter()
            .filter(|q| q.metadata.namespace.as_deref() == Some(ns.as_str()))
            .map(|q| ObjectRef::from_obj(q.as_ref()))
            .collect()
    }
}

/// The streams of the kinds whose changes release or take usage.
pub struct Watched<P, S, C, Sc, V, R> {
    pub pods: P,
    pub services: S,
    pub configmaps: C,
    pub secrets: Sc,
    pub claims: V,
    pub rcs: R,
}

/// Runs the controller over the quotas' stream and store and the watched kinds' streams.
pub async fn run<P, S, C, Sc, V, R>(
    ctx: Arc<Ctx>,
    quotas: (
        impl Stream<Item = Result<ResourceQuota, watcher::Error>> + Send + 'static,
        Store<ResourceQuota>,
    ),
    watched: Watched<P, S, C, Sc, V, R>,
) where
    P: Stream<Item = Result<Pod, watcher::Error>> + Send + 'static,
    S: Stream<Item = Result<Service, watcher::Error>> + Send + 'static,
    C: Stream<Item = Result<ConfigMap, watcher::Error>> + Send + 'static,
    Sc: Stream<Item = Result<Secret, watcher::Error>> + Send + 'static,
    V: Stream<Item = Result<PersistentVolumeClaim, watcher::Error>> + Send + 'static,
    R: Stream<Item = Result<ReplicationController, watcher::Error>> + Send + 'static,
{
    let store = quotas.1.clone();
    let controller = Controller::for_stream(quotas.0, quotas.1)
        .watches_stream(watched.pods, quotas_of::<Pod>(&store))
        .watches_stream(watched.services, quotas_of::<Service>(&store))
        .watches_stream(watched.configmaps, quotas_of::<ConfigMap>(&store))
        .watches_stream(watched.secrets, quotas_of::<Secret>(&store))
        .watches_stream(watched.claims, quotas_of::<PersistentVolumeClaim>(&store))
        .watches_stream(watched.rcs, quotas_of::<ReplicationController>(&store));
    crate::runner::run("resourcequota", controller, reconcile, ctx).await;
}
