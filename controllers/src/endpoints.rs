//! Endpoints controller (Kubernetes' `endpoint-controller`), for clients older than
//! EndpointSlices: one `Endpoints` object per Service with a selector, named after it, whose
//! subsets list the ready addresses and `notReadyAddresses` of the selected pods grouped by the
//! ports they resolve (as `RepackSubsets`), at most 1000 addresses (beyond, truncated and
//! annotated `endpoints.kubernetes.io/over-capacity: truncated`). Labelled
//! `endpoints.kubernetes.io/managed-by: endpoint-controller`; the API server's own
//! `default/kubernetes` Endpoints and those of Services without a selector are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::informer::Synced;
use crate::servicepods::{self, Members};
use crate::written::Written;
use crate::{Error, util};

/// Label naming the controller that manages an Endpoints object.
pub const MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`] (Kubernetes' name).
pub const MANAGED_BY: &str = "endpoint-controller";
/// Annotation set to `truncated` when a Service has more addresses than fit.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// The most addresses one Endpoints object holds.
pub const MAX_ADDRESSES: usize = 1000;

/// Shared state of the Endpoints controller.
pub struct Ctx {
    /// API client.
    pub client: Client,
    /// Every pod.
    pub pods: Store<Pod>,
    /// Every Endpoints object.
    pub endpoints: Store<Endpoints>,
    /// The informers above, which must have listed before the first reconcile.
    pub synced: Vec<Synced>,
    /// Endpoints written and not yet seen by the informer.
    pub written: Written<Endpoints>,
    /// Which Services last listed each pod.
    pub members: Arc<Members>,
}

type PortView = (String, i32, String, Option<String>);

fn port_view(p: &EndpointPort) -> PortView {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
        p.app_protocol.clone(),
    )
}

fn address_key(a: &EndpointAddress) -> (String, String) {
    let uid = a
        .target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_default();
    (a.ip.clone(), uid)
}

/// The subsets of a Service from its selected pods, and whether they were truncated.
pub fn subsets(svc: &Service, pods: &[Arc<Pod>]) -> (Vec<EndpointSubset>, bool) {
    let tolerate = servicepods::publish_not_ready(svc);
    let svc_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    // address → (address, ready); port → the addresses that resolve it.
    let mut addresses: BTreeMap<(String, String), (EndpointAddress, bool)> = BTreeMap::new();
    let mut by_port: BTreeMap<PortView, (EndpointPort, BTreeSet<(String, String)>)> =
        BTreeMap::new();
    let mut portless: BTreeSet<(String, String)> = BTreeSet::new();
    for pod in pods {
        if !servicepods::may_be_endpoint(pod, tolerate) {
            continue;
        }
        let Some(ip) = servicepods::pod_ipv4(pod) else {
            continue;
        };
        let address = EndpointAddress {
            ip,
            hostname: servicepods::hostname(pod, svc),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let key = address_key(&address);
        let ready = tolerate || skiff_meta::pod::is_pod_ready(pod);
        if svc_ports.is_empty() {
            if servicepods::is_headless(svc) {
                portless.insert(key.clone());
                addresses.insert(key, (address, ready));
            }
            continue;
        }
        let mut listed = false;
        for sp in &svc_ports {
            let Some(n) = servicepods::find_port(pod, sp) else {
                continue;
            };
            let port = EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: n,
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            };
            by_port
                .entry(port_view(&port))
                .or_insert_with(|| (port, BTreeSet::new()))
                .1
                .insert(key.clone());
            listed = true;
        }
        if listed {
            addresses.insert(key, (address, ready));
        }
    }
    // As RepackSubsets: one subset per distinct set of addresses, with every port that set
    // resolves.
    let mut by_set: BTreeMap<BTreeSet<(String, String)>, Vec<EndpointPort>> = BTreeMap::new();
    for (_, (port, set)) in by_port {
        by_set.entry(set).or_default().push(port);
    }
    if !portless.is_empty() {
        by_set.entry(portless).or_default();
    }
    let mut out: Vec<EndpointSubset> = by_set
        .into_iter()
        .map(|(set, ports)| {
            let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
            for key in set {
                if let Some((a, r)) = addresses.get(&key) {
                    if *r {
                        ready.push(a.clone());
                    } else {
                        not_ready.push(a.clone());
                    }
                }
            }
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    let truncated = truncate(&mut out, MAX_ADDRESSES);
    (out, truncated)
}

/// Kubernetes' `truncateEndpoints`: keeps at most `max` addresses, ready ones first, each
/// subset keeping its share (rounded up, the last ones getting what is left).
fn truncate(subsets: &mut [EndpointSubset], max: usize) -> bool {
    let len = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| len(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| len(&s.not_ready_addresses)).sum();
    if ready + not_ready <= max {
        return false;
    }
    let truncate_ready = ready > max;
    let (room, total) = if truncate_ready {
        (max, ready)
    } else {
        (max - ready, not_ready)
    };
    let mut left = room;
    for s in subsets.iter_mut() {
        let list = if truncate_ready {
            s.not_ready_addresses = None;
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        let n = len(list);
        let share = (n * room).div_ceil(total.max(1)).min(left);
        if let Some(v) = list.as_mut() {
            v.truncate(share);
            left -= v.len();
            if v.is_empty() {
                *list = None;
            }
        }
    }
    true
}

/// Subsets in a comparable form (absent and empty lists alike).
fn subsets_view(subsets: Option<&[EndpointSubset]>) -> serde_json::Value {
    let norm: Vec<serde_json::Value> = subsets
        .unwrap_or_default()
        .iter()
        .map(|s| {
            serde_json::json!([
                s.addresses.clone().unwrap_or_default(),
                s.not_ready_addresses.clone().unwrap_or_default(),
                s.ports.iter().flatten().map(port_view).collect::<Vec<_>>(),
            ])
        })
        .collect();
    serde_json::Value::Array(norm)
}

/// The labels of a Service's Endpoints.
fn labels_of(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = servicepods::copied_labels(svc, &[MANAGED_BY_LABEL]);
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

/// The Endpoints object `svc` should have, or `None` when `current` already says it.
pub fn desired(svc: &Service, pods: &[Arc<Pod>], current: Option<&Endpoints>) -> Option<Endpoints> {
    let (subsets, truncated) = subsets(svc, pods);
    let labels = labels_of(svc);
    if let Some(cur) = current {
        let annotations = cur.annotations();
        let capacity_ok =
            annotations.get(OVER_CAPACITY).map(String::as_str) == truncated.then_some("truncated");
        if capacity_ok
            && cur.labels() == &labels
            && subsets_view(cur.subsets.as_deref()) == subsets_view(Some(&subsets))
        {
            return None;
        }
    }
    let mut metadata = match current {
        Some(c) => c.metadata.clone(),
        None => ObjectMeta {
            name: Some(svc.name_any()),
            namespace: svc.namespace(),
            ..Default::default()
        },
    };
    metadata.labels = Some(labels);
    let annotations = metadata.annotations.get_or_insert_with(Default::default);
    match servicepods::trigger_time(svc, pods) {
        Some(t) => annotations.insert(servicepods::LAST_CHANGE_TRIGGER_TIME.into(), t.to_string()),
        None => annotations.remove(servicepods::LAST_CHANGE_TRIGGER_TIME),
    };
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    Some(Endpoints {
        metadata,
        subsets: Some(subsets),
    })
}

fn is_managed(e: &Endpoints) -> bool {
    e.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

/// The Endpoints of `namespace/name` as this controller last knows them.
fn current(ctx: &Ctx, namespace: &str, name: &str) -> Option<Arc<Endpoints>> {
    let stored = ctx
        .endpoints
        .get(&ObjectRef::new(name).within(namespace))
        .into_iter()
        .collect();
    ctx.written
        .overlay(namespace, stored, |e| e.name_any() == name)
        .into_iter()
        .next()
}

async fn delete(ctx: &Ctx, e: &Endpoints) -> Result<(), Error> {
    let api: Api<Endpoints> =
        Api::namespaced(ctx.client.clone(), &e.namespace().unwrap_or_default());
    match api.delete(&e.name_any(), &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(err) => return Err(err.into()),
    }
    ctx.written.deleted(e);
    Ok(())
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    Synced::all(&ctx.synced).await;
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    if servicepods::is_apiserver_service(&ns, &name) || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let cur = current(&ctx, &ns, &name);
    if servicepods::selector(&svc).is_none() {
        ctx.members.set(&ns, &name, BTreeSet::new());
        if let Some(e) = cur.filter(|e| is_managed(e)) {
            delete(&ctx, &e).await?;
        }
        return Ok(Action::await_change());
    }
    let pods = servicepods::selected_pods(&svc, &ctx.pods);
    let listed: BTreeSet<String> = pods
        .iter()
        .filter(|p| servicepods::may_be_endpoint(p, true))
        .map(|p| p.name_any())
        .collect();
    ctx.members.set(&ns, &name, listed);
    let Some(want) = desired(&svc, &pods, cur.as_deref()) else {
        return Ok(Action::await_change());
    };
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let result = if cur.is_some() {
        api.replace(&name, &PostParams::default(), &want).await
    } else {
        api.create(&PostParams::default(), &want).await
    };
    match result {
        Ok(e) => ctx.written.wrote(e),
        Err(e) => {
            ctx.written.forget(&ns, &name);
            return Err(e.into());
        }
    }
    Ok(Action::await_change())
}

/// Deletes this controller's Endpoints of Services that are gone: on each delete event, and
/// after each (re)list for those whose Service is not there.
async fn sweep_deleted(
    ctx: Arc<Ctx>,
    services: Store<Service>,
    events: impl Stream<Item = watcher::Event<Service>>,
) {
    let mut events = std::pin::pin!(events);
    while let Some(ev) = events.next().await {
        let orphans: Vec<Arc<Endpoints>> = match ev {
            watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::Apply(_) => {
                continue;
            }
            // The store holds the new list (and any Service created since).
            watcher::Event::InitDone => {
                Synced::all(&ctx.synced).await;
                ctx.endpoints
                    .state()
                    .into_iter()
                    .filter(|e| {
                        is_managed(e)
                            && services
                                .get(
                                    &ObjectRef::new(&e.name_any())
                                        .within(&e.namespace().unwrap_or_default()),
                                )
                                .is_none()
                    })
                    .collect()
            }
            watcher::Event::Delete(svc) => {
                let ns = svc.namespace().unwrap_or_default();
                let name = svc.name_any();
                // A Service of the same name created since is the reconciler's.
                if services.get(&ObjectRef::new(&name).within(&ns)).is_some() {
                    continue;
                }
                ctx.members.set(&ns, &name, BTreeSet::new());
                current(&ctx, &ns, &name)
                    .filter(|e| is_managed(e))
                    .into_iter()
                    .collect()
            }
        };
        for e in orphans {
            if servicepods::is_apiserver_service(&e.namespace().unwrap_or_default(), &e.name_any())
            {
                continue;
            }
            if let Err(err) = delete(&ctx, &e).await {
                tracing::warn!(error = %err, endpoints = %util::key(e.as_ref()), "deleting the endpoints of a deleted service");
            }
        }
    }
}

/// Runs the Endpoints controller until the streams end.
pub async fn run(
    ctx: Arc<Ctx>,
    services: (
        impl Stream<Item = Result<Service, watcher::Error>> + Send + 'static,
        Store<Service>,
    ),
    service_events: impl Stream<Item = watcher::Event<Service>> + Send + 'static,
    pods: impl Stream<Item = Result<Pod, watcher::Error>> + Send + 'static,
    endpoints: impl Stream<Item = Result<Endpoints, watcher::Error>> + Send + 'static,
) {
    let store = services.1.clone();
    let members = ctx.members.clone();
    let sweeper = sweep_deleted(ctx.clone(), services.1.clone(), service_events);
    let controller = Controller::for_stream(services.0, services.1)
        .watches_stream(pods, move |pod| {
            servicepods::services_for_pod(&pod, &store, &[&members])
        })
        .watches_stream(endpoints, |e: Endpoints| {
            Some(ObjectRef::new(&e.name_any()).within(&e.namespace().unwrap_or_default()))
        });
    tokio::join!(
        crate::runner::run("endpoint", controller, reconcile, ctx),
        sweeper
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, http: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": name, "labels": {"app": "a"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                    {"name": "http", "containerPort": http}]}]},
                "status": {"phase": "Running", "podIP": ip, "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    fn svc(ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"selector": {"app": "a"}, "ports": ports},
        }))
        .unwrap()
    }

    fn ips(v: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        v.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn subsets_group_addresses_by_the_ports_they_resolve() {
        let s = svc(json!([{"name": "web", "port": 80, "targetPort": "http"},
                           {"name": "admin", "port": 81, "targetPort": 9000}]));
        let pods = [
            pod("a", "10.0.0.1", true, 8080),
            pod("b", "10.0.0.2", false, 8080),
            pod("c", "10.0.0.3", true, 8081),
        ];
        let (subsets, truncated) = subsets(&s, &pods);
        assert!(!truncated);
        // admin (9000) is resolved by all three; web by a and b on 8080 and c on 8081.
        let shape: Vec<(Vec<&str>, Vec<&str>, Vec<i32>)> = subsets
            .iter()
            .map(|s| {
                (
                    ips(&s.addresses),
                    ips(&s.not_ready_addresses),
                    s.ports.iter().flatten().map(|p| p.port).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (vec!["10.0.0.1"], vec!["10.0.0.2"], vec![8080]),
                (vec!["10.0.0.1", "10.0.0.3"], vec!["10.0.0.2"], vec![9000]),
                (vec!["10.0.0.3"], vec![], vec![8081]),
            ]
        );
    }

    #[test]
    fn over_a_thousand_addresses_are_truncated_ready_first() {
        let s = svc(json!([{"port": 80}]));
        let pods: Vec<Arc<Pod>> = (0..1100)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.1.{}.{}", i / 250, i % 250),
                    i < 900,
                    80,
                )
            })
            .collect();
        let (subsets, truncated) = subsets(&s, &pods);
        assert!(truncated);
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(900));
        assert_eq!(
            subsets[0].not_ready_addresses.as_ref().map(Vec::len),
            Some(100)
        );
        let want = desired(&s, &pods, None).unwrap();
        assert_eq!(
            want.annotations().get(OVER_CAPACITY).map(String::as_str),
            Some("truncated")
        );
        assert!(
            desired(&s, &pods, Some(&want)).is_none(),
            "unchanged, not rewritten"
        );
    }
}
