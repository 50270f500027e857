//! EndpointSlice controller (Kubernetes' `endpointslice-controller.k8s.io`): for every Service
//! with a selector, IPv4 EndpointSlices listing the pods it selects — address, node, zone,
//! `targetRef` and the `ready`/`serving`/`terminating` conditions — grouped by the ports each pod
//! resolves (a named `targetPort` can differ per pod), at most 100 endpoints a slice. Slices are
//! updated in place and only when their content changes; a pod event reaches the slices with no
//! batching delay (the nodes' routers read them). Slices of Services without a selector, and
//! slices not labelled `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`,
//! are never touched; those of a deleted Service, or one that lost its selector, are deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_meta::names::ENDPOINTSLICE_MANAGED_BY;

use crate::informer::Synced;
use crate::servicepods::{self, Members};
use crate::written::Written;
use crate::{Error, util};

/// Label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Node label holding the node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The most endpoints one slice holds (Kubernetes' `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Shared state of the EndpointSlice controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every pod.
    pub pods: Store<Pod>,
    /// Every node (for the zone).
    pub nodes: Store<Node>,
    /// Every EndpointSlice.
    pub slices: Store<EndpointSlice>,
    /// The informers above, which must have listed before the first reconcile.
    pub synced: Vec<Synced>,
    /// Slices written and not yet seen by the informer.
    pub written: Written<EndpointSlice>,
    /// Which Services last listed each pod.
    pub members: Arc<Members>,
}

/// A port set, normalised and sorted: the slices of a Service are grouped by it.
type PortKey = Vec<(String, i32, String, Option<String>)>;

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut key: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// The endpoints of one port set, by pod name.
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// The ports, in the Service's order.
    pub ports: Vec<EndpointPort>,
    /// The endpoints, by pod name.
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// The endpoints a Service should have, grouped by port set, from its selected pods;
/// `zone_of(node)` is `None` for a node not known (its pods are left out unless the Service
/// publishes not-ready addresses, as Kubernetes does) and `Some(zone)` otherwise.
pub fn desired(
    svc: &Service,
    pods: &[Arc<Pod>],
    zone_of: impl Fn(&str) -> Option<Option<String>>,
) -> BTreeMap<PortKey, Group> {
    let publish = servicepods::publish_not_ready(svc);
    let svc_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut groups: BTreeMap<PortKey, Group> = BTreeMap::new();
    for pod in pods {
        if !servicepods::may_be_endpoint(pod, true) {
            continue;
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let zone = match node.as_deref().map(&zone_of) {
            Some(Some(zone)) => zone,
            Some(None) if !publish => continue,
            _ => None,
        };
        let ports: Vec<EndpointPort> = svc_ports
            .iter()
            .filter_map(|sp| {
                servicepods::find_port(pod, sp).map(|n| EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(n),
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        let serving = skiff_meta::pod::is_pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = publish || (serving && !terminating);
        let Some(ip) = servicepods::pod_ipv4(pod) else {
            continue;
        };
        let endpoint = Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: servicepods::hostname(pod, svc),
            node_name: node,
            zone,
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let group = groups.entry(port_key(&ports)).or_insert_with(|| Group {
            ports: ports.clone(),
            endpoints: BTreeMap::new(),
        });
        group.endpoints.insert(pod.name_any(), endpoint);
    }
    groups
}

/// The pod an endpoint stands for (its address when it names none).
fn endpoint_name(e: &Endpoint) -> String {
    match &e.target_ref {
        Some(r) if r.kind.as_deref() == Some("Pod") => r.name.clone().unwrap_or_default(),
        _ => e.addresses.join(","),
    }
}

type EndpointView<'a> = (
    &'a [String],
    Option<bool>,
    Option<bool>,
    Option<bool>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<(
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    )>,
);

/// The fields of an endpoint this controller sets, for comparison.
fn view(e: &Endpoint) -> EndpointView<'_> {
    let c = e.conditions.clone().unwrap_or_default();
    (
        &e.addresses,
        c.ready,
        c.serving,
        c.terminating,
        e.hostname.as_deref(),
        e.node_name.as_deref(),
        e.zone.as_deref(),
        e.target_ref.as_ref().map(|r| {
            (
                r.kind.as_deref(),
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.uid.as_deref(),
            )
        }),
    )
}

fn ports_view(ports: &[EndpointPort]) -> PortKey {
    ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect()
}

/// What a Service's slices carry besides their endpoints.
#[derive(Debug, Clone)]
pub struct SliceMeta {
    /// Service namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// Service uid.
    pub uid: String,
    /// The labels every slice has.
    pub labels: BTreeMap<String, String>,
    /// The controller reference to the Service.
    pub owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    /// `endpoints.kubernetes.io/last-change-trigger-time` for slices written now.
    pub trigger_time: Option<String>,
}

impl SliceMeta {
    /// The slice metadata of `svc`.
    pub fn of(svc: &Service, trigger: Option<jiff::Timestamp>) -> SliceMeta {
        let mut labels = servicepods::copied_labels(svc, &[SERVICE_NAME_LABEL, MANAGED_BY_LABEL]);
        labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
        labels.insert(MANAGED_BY_LABEL.into(), ENDPOINTSLICE_MANAGED_BY.into());
        SliceMeta {
            namespace: svc.namespace().unwrap_or_default(),
            service: svc.name_any(),
            uid: svc.metadata.uid.clone().unwrap_or_default(),
            labels,
            owner: util::controller_ref(svc),
            trigger_time: trigger.map(|t| t.to_string()),
        }
    }

    fn differs(&self, slice: &EndpointSlice, ports: &[EndpointPort]) -> bool {
        slice.metadata.labels.clone().unwrap_or_default() != self.labels
            || !util::is_controlled_by(&slice.metadata, &self.uid)
            || slice.address_type != "IPv4"
            || ports_view(slice.ports.as_deref().unwrap_or_default()) != ports_view(ports)
    }

    fn build(
        &self,
        base: Option<&EndpointSlice>,
        ports: &[EndpointPort],
        mut endpoints: Vec<Endpoint>,
    ) -> EndpointSlice {
        endpoints.sort_by_key(endpoint_name);
        let mut metadata = match base {
            Some(b) => b.metadata.clone(),
            None => ObjectMeta {
                generate_name: Some(format!("{}-", self.service)),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
        };
        metadata.labels = Some(self.labels.clone());
        let mut owners: Vec<_> = metadata
            .owner_references
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.controller != Some(true))
            .collect();
        owners.insert(0, self.owner.clone());
        metadata.owner_references = Some(owners);
        if let Some(t) = &self.trigger_time {
            metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(servicepods::LAST_CHANGE_TRIGGER_TIME.into(), t.clone());
        }
        EndpointSlice {
            metadata,
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(ports.to_vec()),
        }
    }
}

/// One write of a reconcile.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create this slice (generateName `SERVICE-`).
    Create(EndpointSlice),
    /// Replace a slice with this content (its resourceVersion is the precondition).
    Update(EndpointSlice),
    /// Delete this slice.
    Delete(Arc<EndpointSlice>),
}

/// The writes that take a Service's `existing` slices (this controller's, for this Service) to
/// the `desired` groups with the least churn, as Kubernetes' reconciler: slices keep the
/// endpoints that remain (updated only if one changed), new endpoints fill slices already being
/// updated, then unchanged slices with room, then new slices; a slice left empty is deleted, or
/// recycled for a slice that would be created. A Service with no endpoint keeps one empty
/// placeholder slice.
pub fn plan(
    meta: &SliceMeta,
    mut groups: BTreeMap<PortKey, Group>,
    existing: Vec<Arc<EndpointSlice>>,
) -> Vec<Op> {
    let mut deletes: Vec<Arc<EndpointSlice>> = Vec::new();
    let mut by_key: BTreeMap<PortKey, Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    for s in existing {
        if util::is_controlled_by(&s.metadata, &meta.uid) && s.address_type == "IPv4" {
            by_key
                .entry(port_key(s.ports.as_deref().unwrap_or_default()))
                .or_default()
                .push(s);
        } else {
            deletes.push(s);
        }
    }
    let placeholder = groups.is_empty();
    if placeholder {
        groups.insert(Vec::new(), Group::default());
    }
    let mut creates: Vec<(Vec<EndpointPort>, Vec<Endpoint>)> = Vec::new();
    let mut ops = Vec::new();
    for (key, group) in groups {
        let mut remaining = group.endpoints;
        // (slice, its new endpoints, changed)
        let mut live: Vec<(Arc<EndpointSlice>, Vec<Endpoint>, bool)> = Vec::new();
        for slice in by_key.remove(&key).unwrap_or_default() {
            let mut kept = Vec::new();
            let mut changed = false;
            for e in &slice.endpoints {
                match remaining.remove(&endpoint_name(e)) {
                    Some(new) => {
                        changed |= view(&new) != view(e);
                        kept.push(new);
                    }
                    None => changed = true,
                }
            }
            if kept.is_empty() && !(placeholder && live.is_empty()) {
                deletes.push(slice);
            } else {
                live.push((slice, kept, changed));
            }
        }
        let mut left: Vec<Endpoint> = remaining.into_values().collect();
        left.reverse();
        for pass in [true, false] {
            for (_, eps, changed) in live.iter_mut().filter(|l| l.2 == pass) {
                while eps.len() < MAX_ENDPOINTS_PER_SLICE {
                    let Some(e) = left.pop() else { break };
                    eps.push(e);
                    *changed = true;
                }
            }
        }
        left.reverse();
        for chunk in left.chunks(MAX_ENDPOINTS_PER_SLICE) {
            creates.push((group.ports.clone(), chunk.to_vec()));
        }
        if placeholder && live.is_empty() {
            creates.push((Vec::new(), Vec::new()));
        }
        for (slice, eps, changed) in live {
            if changed || meta.differs(&slice, &group.ports) {
                ops.push(Op::Update(meta.build(Some(&slice), &group.ports, eps)));
            }
        }
    }
    deletes.extend(by_key.into_values().flatten());
    let mut out: Vec<Op> = Vec::new();
    for (ports, eps) in creates {
        match deletes.pop() {
            Some(old) => out.push(Op::Update(meta.build(Some(&old), &ports, eps))),
            None => out.push(Op::Create(meta.build(None, &ports, eps))),
        }
    }
    out.extend(ops);
    out.extend(deletes.into_iter().map(Op::Delete));
    out
}

fn zone_of(nodes: &Store<Node>, name: &str) -> Option<Option<String>> {
    let node = nodes.get(&ObjectRef::new(name))?;
    Some(node.labels().get(ZONE_LABEL).cloned())
}

/// This controller's slices of `namespace/service`, as last written or seen.
fn managed_slices(ctx: &Ctx, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
    let belongs = |s: &EndpointSlice| {
        s.metadata.namespace.as_deref() == Some(namespace)
            && s.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(service)
            && s.labels().get(MANAGED_BY_LABEL).map(String::as_str)
                == Some(ENDPOINTSLICE_MANAGED_BY)
    };
    let stored = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| belongs(s))
        .collect();
    ctx.written.overlay(namespace, stored, belongs)
}

async fn apply(ctx: &Ctx, namespace: &str, ops: Vec<Op>) -> Result<(), Error> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), namespace);
    for op in ops {
        match op {
            Op::Create(s) => {
                let made = api.create(&PostParams::default(), &s).await?;
                ctx.written.wrote(made);
            }
            Op::Update(s) => {
                let name = s.name_any();
                match api.replace(&name, &PostParams::default(), &s).await {
                    Ok(made) => ctx.written.wrote(made),
                    Err(e) => {
                        // Gone or changed behind this controller's back: the next reconcile
                        // (the informer's event) starts from the server's view.
                        ctx.written.forget(namespace, &name);
                        return Err(e.into());
                    }
                }
            }
            Op::Delete(s) => delete(ctx, &api, &s).await?,
        }
    }
    Ok(())
}

async fn delete(ctx: &Ctx, api: &Api<EndpointSlice>, s: &EndpointSlice) -> Result<(), Error> {
    match api.delete(&s.name_any(), &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.written.deleted(s);
    Ok(())
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    Synced::all(&ctx.synced).await;
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    if servicepods::is_apiserver_service(&ns, &name) || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let existing = managed_slices(&ctx, &ns, &name);
    if servicepods::selector(&svc).is_none() {
        ctx.members.set(&ns, &name, BTreeSet::new());
        let ops = existing.into_iter().map(Op::Delete).collect();
        apply(&ctx, &ns, ops).await?;
        return Ok(Action::await_change());
    }
    let pods = servicepods::selected_pods(&svc, &ctx.pods);
    let groups = desired(&svc, &pods, |n| zone_of(&ctx.nodes, n));
    let listed: BTreeSet<String> = groups
        .values()
        .flat_map(|g| g.endpoints.keys().cloned())
        .collect();
    ctx.members.set(&ns, &name, listed);
    let meta = SliceMeta::of(&svc, servicepods::trigger_time(&svc, &pods));
    let ops = plan(&meta, groups, existing);
    if !ops.is_empty() {
        tracing::debug!(service = %format!("{ns}/{name}"), writes = ops.len(), "endpointslices");
    }
    apply(&ctx, &ns, ops).await?;
    Ok(Action::await_change())
}

/// Deletes the slices of Services that are gone: on each delete event, and after each (re)list
/// for slices whose Service is not there (a delete missed while not watching).
async fn sweep_deleted(
    ctx: Arc<Ctx>,
    services: Store<Service>,
    events: impl Stream<Item = watcher::Event<Service>>,
) {
    let mut events = std::pin::pin!(events);
    while let Some(ev) = events.next().await {
        let orphans: Vec<Arc<EndpointSlice>> = match ev {
            watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::Apply(_) => {
                continue;
            }
            // The store holds the new list (and any Service created since, whose slices the
            // reconciler may already have made).
            watcher::Event::InitDone => {
                Synced::all(&ctx.synced).await;
                ctx.slices
                    .state()
                    .into_iter()
                    .filter(|s| {
                        s.labels().get(MANAGED_BY_LABEL).map(String::as_str)
                            == Some(ENDPOINTSLICE_MANAGED_BY)
                            && s.labels().get(SERVICE_NAME_LABEL).is_some_and(|svc| {
                                let ns = s.namespace().unwrap_or_default();
                                !servicepods::is_apiserver_service(&ns, svc)
                                    && services.get(&ObjectRef::new(svc).within(&ns)).is_none()
                            })
                    })
                    .collect()
            }
            watcher::Event::Delete(svc) => {
                let ns = svc.namespace().unwrap_or_default();
                let uid = svc.metadata.uid.clone().unwrap_or_default();
                if servicepods::is_apiserver_service(&ns, &svc.name_any()) {
                    continue;
                }
                ctx.members.set(&ns, &svc.name_any(), BTreeSet::new());
                managed_slices(&ctx, &ns, &svc.name_any())
                    .into_iter()
                    .filter(|s| util::controller_of(&s.metadata).is_none_or(|o| o.uid == uid))
                    .collect()
            }
        };
        for s in orphans {
            let api: Api<EndpointSlice> =
                Api::namespaced(ctx.client.clone(), &s.namespace().unwrap_or_default());
            if let Err(e) = delete(&ctx, &api, &s).await {
                tracing::warn!(error = %e, slice = %util::key(s.as_ref()), "deleting the slice of a deleted service");
            }
        }
    }
}

/// Maps node events to the Services to reconcile: all of them when a node appears, goes or
/// changes zone (rare), none for other node updates (status heartbeats).
pub fn node_mapper(
    services: Store<Service>,
    nodes: Store<Node>,
) -> impl Fn(Node) -> Vec<ObjectRef<Service>> + Send + Sync + 'static {
    let zones: Mutex<HashMap<String, Option<String>>> = Mutex::new(HashMap::new());
    move |node: Node| {
        let name = node.name_any();
        let now = nodes
            .get(&ObjectRef::new(&name))
            .map(|n| n.labels().get(ZONE_LABEL).cloned());
        let mut z = zones.lock().unwrap_or_else(|e| e.into_inner());
        let changed = match &now {
            Some(zone) => z.insert(name, zone.clone()).as_ref() != Some(zone),
            None => {
                z.remove(&name);
                true
            }
        };
        drop(z);
        if !changed {
            return Vec::new();
        }
        services
            .state()
            .iter()
            .filter(|s| servicepods::selector(s).is_some())
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect()
    }
}

/// Runs the EndpointSlice controller until the streams end.
pub async fn run(
    ctx: Arc<Ctx>,
    services: (
        impl Stream<Item = Result<Service, watcher::Error>> + Send + 'static,
        Store<Service>,
    ),
    service_events: impl Stream<Item = watcher::Event<Service>> + Send + 'static,
    pods: impl Stream<Item = Result<Pod, watcher::Error>> + Send + 'static,
    slices: impl Stream<Item = Result<EndpointSlice, watcher::Error>> + Send + 'static,
    nodes: impl Stream<Item = Result<Node, watcher::Error>> + Send + 'static,
) {
    let store = services.1.clone();
    let members = ctx.members.clone();
    let node_map = node_mapper(services.1.clone(), ctx.nodes.clone());
    let sweeper = sweep_deleted(ctx.clone(), services.1.clone(), service_events);
    let controller = Controller::for_stream(services.0, services.1)
        .owns_stream(slices)
        .watches_stream(pods, move |pod| {
            servicepods::services_for_pod(&pod, &store, &[&members])
        })
        .watches_stream(nodes, node_map);
    tokio::join!(
        crate::runner::run("endpointslice", controller, reconcile, ctx),
        sweeper
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }))
        .unwrap()
    }

    fn pod(i: usize, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("p{i:03}"), "namespace": "ns", "uid": format!("u{i}"),
                             "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
                "status": {"phase": "Running", "podIP": format!("10.0.{}.{}", i / 200, i % 200),
                           "conditions": [{"type": "Ready",
                                           "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    /// Applies `ops` to `slices` as the server would (names and revisions given out).
    fn server(slices: &mut Vec<Arc<EndpointSlice>>, ops: Vec<Op>, next: &mut u64) {
        for op in ops {
            *next += 1;
            match op {
                Op::Create(mut s) => {
                    s.metadata.name = Some(format!("web-{next}"));
                    s.metadata.resource_version = Some(next.to_string());
                    slices.push(Arc::new(s));
                }
                Op::Update(mut s) => {
                    s.metadata.resource_version = Some(next.to_string());
                    let i = slices.iter().position(|o| o.name_any() == s.name_any());
                    slices[i.expect("an update of an existing slice")] = Arc::new(s);
                }
                Op::Delete(s) => slices.retain(|o| o.name_any() != s.name_any()),
            }
        }
    }

    fn plan_for(pods: &[Arc<Pod>], slices: &[Arc<EndpointSlice>]) -> Vec<Op> {
        let svc = svc();
        let groups = desired(&svc, pods, |_| Some(Some("z".into())));
        plan(&SliceMeta::of(&svc, None), groups, slices.to_vec())
    }

    #[test]
    fn slices_change_only_where_endpoints_change() {
        let mut slices = Vec::new();
        let mut rv = 0;
        let mut pods: Vec<Arc<Pod>> = (0..150).map(|i| pod(i, true)).collect();
        let ops = plan_for(&pods, &slices);
        assert_eq!(ops.len(), 2);
        server(&mut slices, ops, &mut rv);
        let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        assert_eq!(sizes, [50, 100]);
        // Nothing changed: nothing written.
        assert!(plan_for(&pods, &slices).is_empty());
        // One pod goes NotReady: one slice updated, in place.
        pods[7] = pod(7, false);
        let ops = plan_for(&pods, &slices);
        assert!(matches!(ops.as_slice(), [Op::Update(_)]), "{ops:?}");
        server(&mut slices, ops, &mut rv);
        assert!(plan_for(&pods, &slices).is_empty());
        // New pods fill the slice with room before any new slice is made.
        pods.extend((150..160).map(|i| pod(i, true)));
        let ops = plan_for(&pods, &slices);
        assert!(matches!(ops.as_slice(), [Op::Update(_)]), "{ops:?}");
        server(&mut slices, ops, &mut rv);
        assert_eq!(slices.len(), 2);
        // Every pod gone: one empty placeholder slice stays, recycled from an old one.
        let ops = plan_for(&[], &slices);
        server(&mut slices, ops, &mut rv);
        assert_eq!(slices.len(), 1);
        assert!(slices[0].endpoints.is_empty());
        assert!(plan_for(&[], &slices).is_empty());
    }
}
