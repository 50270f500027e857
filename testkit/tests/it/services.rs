//! The Service controllers on the in-process tier: EndpointSlices (readiness, termination,
//! named ports resolved per pod, slices of at most 100, publishNotReadyAddresses, selector
//! changes, Service deletion, user-managed slices), the Endpoints mirror, and scale-to-zero on a
//! fake clock. Pods are simulated: created through the API and given an IP and a Ready
//! condition through their status subresource.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Event, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::{Clock, Options, Running};
use skiff_testkit::inproc::{InProcess, wait_list, wait_object};

const DEADLINE: Duration = Duration::from_secs(30);
const MANAGED: &str = "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io";

fn controllers(client: &Client, names: &[&str], clock: Clock) -> Running {
    let mut opts = Options {
        scheduler: false,
        clock,
        ..Options::default()
    };
    opts.select(&names.join(",")).expect("known controllers");
    skiff_controllers::start(client.clone(), opts)
}

fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("a valid object literal")
}

async fn node(client: &Client, name: &str, zone: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let n: Node = from_json(json!({
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
    }));
    nodes.create(&PostParams::default(), &n).await.unwrap();
}

/// A simulated pod: created bound to `node`, then given `ip`, phase Running and a Ready
/// condition through its status. `http` is the port its container names `http`.
struct PodSpec<'a> {
    name: &'a str,
    app: &'a str,
    node: &'a str,
    ip: String,
    ready: bool,
    http: i32,
}

async fn pod(client: &Client, p: PodSpec<'_>) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let obj: Pod = from_json(json!({
        "metadata": {"name": p.name, "labels": {"app": p.app}},
        "spec": {"nodeName": p.node, "containers": [{"name": "c", "image": "example.com/app:v1",
                 "ports": [{"name": "http", "containerPort": p.http}]}]},
    }));
    pods.create(&PostParams::default(), &obj).await.unwrap();
    set_ready(client, p.name, Some(&p.ip), p.ready).await
}

async fn set_ready(client: &Client, name: &str, ip: Option<&str>, ready: bool) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let now = jiff::Timestamp::now().to_string();
    let mut status = json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": if ready { "True" } else { "False" },
         "lastTransitionTime": now},
    ]});
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap()
}

async fn service(client: &Client, spec: serde_json::Value) -> Service {
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    svcs.create(&PostParams::default(), &from_json(spec))
        .await
        .unwrap()
}

fn slice_api(client: &Client) -> Api<EndpointSlice> {
    Api::namespaced(client.clone(), "default")
}

fn of_service(name: &str) -> String {
    format!("kubernetes.io/service-name={name},{MANAGED}")
}

/// The endpoints of every slice, by pod name.
fn endpoints(slices: &[EndpointSlice]) -> BTreeMap<String, Endpoint> {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            let name = e
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .unwrap_or_default();
            (name, e.clone())
        })
        .collect()
}

fn conditions(e: &Endpoint) -> (bool, bool, bool) {
    let c = e.conditions.clone().unwrap_or_default();
    (
        c.ready.unwrap_or(false),
        c.serving.unwrap_or(false),
        c.terminating.unwrap_or(false),
    )
}

fn cond_of(slices: &[EndpointSlice], pod: &str) -> Option<(bool, bool, bool)> {
    endpoints(slices).get(pod).map(conditions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpointslices_follow_readiness_and_termination_in_place() {
    let api = InProcess::start().await.unwrap();
    let c = &api.client;
    let _c = controllers(c, &["endpointslice"], Clock::real());
    node(c, "node-a", "zone-a").await;
    let svc = service(
        c,
        json!({"metadata": {"name": "web", "labels": {"tier": "front"}},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
    .await;
    let ip = |i: u8| format!("10.244.0.{i}");
    for (i, (name, ready)) in [("p1", true), ("p2", false)].into_iter().enumerate() {
        let (name, app, node) = (name, "web", "node-a");
        let ip = ip(i as u8 + 10);
        pod(
            c,
            PodSpec {
                name,
                app,
                node,
                ip,
                ready,
                http: 8080,
            },
        )
        .await;
    }
    let slices = slice_api(c);
    let got = wait_list(&slices, &of_service("web"), DEADLINE, |l| {
        cond_of(l, "p1") == Some((true, true, false))
            && cond_of(l, "p2") == Some((false, false, false))
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 1, "one slice: {got:?}");
    let slice = &got[0];
    let first_name = slice.name_any();
    assert!(
        first_name.starts_with("web-"),
        "generateName web-: {first_name}"
    );
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice.labels().get("tier").map(String::as_str),
        Some("front")
    );
    let owner = skiff_controllers::util::controller_of(&slice.metadata).expect("a controller");
    assert_eq!(
        (
            owner.kind.as_str(),
            Some(&owner.uid),
            owner.block_owner_deletion
        ),
        ("Service", svc.metadata.uid.as_ref(), Some(true))
    );
    let ports = slice.ports.clone().unwrap_or_default();
    assert_eq!(ports.len(), 1);
    assert_eq!(
        (
            ports[0].name.as_deref(),
            ports[0].port,
            ports[0].protocol.as_deref()
        ),
        (Some("http"), Some(8080), Some("TCP"))
    );
    let p1 = &endpoints(&got)["p1"];
    assert_eq!(p1.addresses, [ip(10)]);
    assert_eq!(p1.node_name.as_deref(), Some("node-a"));
    assert_eq!(p1.zone.as_deref(), Some("zone-a"));
    let target = p1.target_ref.clone().unwrap();
    assert_eq!(
        (
            target.kind.as_deref(),
            target.namespace.as_deref(),
            target.name.as_deref()
        ),
        (Some("Pod"), Some("default"), Some("p1"))
    );

    // p2 becomes Ready: the same slice is updated.
    set_ready(c, "p2", None, true).await;
    let got = wait_list(&slices, &of_service("web"), DEADLINE, |l| {
        cond_of(l, "p2") == Some((true, true, false))
    })
    .await
    .unwrap();
    assert_eq!(
        got.iter().map(|s| s.name_any()).collect::<Vec<_>>(),
        std::slice::from_ref(&first_name)
    );

    // p1 is being deleted (a finalizer holds it): terminating, not ready, still serving.
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    pods.patch(
        "p1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    pods.delete("p1", &DeleteParams::default()).await.unwrap();
    wait_list(&slices, &of_service("web"), DEADLINE, |l| {
        cond_of(l, "p1") == Some((false, true, true))
    })
    .await
    .unwrap();
    // It goes NotReady while terminating, then is gone.
    set_ready(c, "p1", None, false).await;
    wait_list(&slices, &of_service("web"), DEADLINE, |l| {
        cond_of(l, "p1") == Some((false, false, true))
    })
    .await
    .unwrap();
    pods.patch(
        "p1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    match pods
        .delete("p1", &DeleteParams::default().grace_period(0))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("deleting p1: {e}"),
    }
    let got = wait_list(&slices, &of_service("web"), DEADLINE, |l| {
        cond_of(l, "p1").is_none() && cond_of(l, "p2").is_some()
    })
    .await
    .unwrap();
    assert_eq!(
        got.iter().map(|s| s.name_any()).collect::<Vec<_>>(),
        [first_name]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_target_ports_resolve_per_pod_into_separate_slices_and_big_services_split() {
    let api = InProcess::start().await.unwrap();
    let c = &api.client;
    let _c = controllers(c, &["endpointslice"], Clock::real());
    node(c, "node-a", "zone-a").await;
    service(
        c,
        json!({"metadata": {"name": "mixed"},
               "spec": {"selector": {"app": "mixed"},
                        "ports": [{"port": 80, "targetPort": "http"}]}}),
    )
    .await;
    for i in 0..5u8 {
        let name = format!("m{i}");
        let http = if i < 3 { 8080 } else { 9090 };
        let spec = PodSpec {
            name: &name,
            app: "mixed",
            node: "node-a",
            ip: format!("10.244.1.{i}"),
            ready: true,
            http,
        };
        pod(c, spec).await;
    }
    let slices = slice_api(c);
    let got = wait_list(&slices, &of_service("mixed"), DEADLINE, |l| {
        endpoints(l).len() == 5 && l.len() == 2
    })
    .await
    .unwrap();
    for s in &got {
        let port = s
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .and_then(|p| p.port);
        let pods: Vec<String> = endpoints(std::slice::from_ref(s)).into_keys().collect();
        match port {
            Some(8080) => assert_eq!(pods, ["m0", "m1", "m2"]),
            Some(9090) => assert_eq!(pods, ["m3", "m4"]),
            other => panic!("unexpected port {other:?} in {s:?}"),
        }
    }

    // 150 pods: two slices, none over 100.
    service(
        c,
        json!({"metadata": {"name": "big"},
               "spec": {"selector": {"app": "big"}, "ports": [{"port": 80}]}}),
    )
    .await;
    for i in 0..150u32 {
        let name = format!("b{i:03}");
        let spec = PodSpec {
            name: &name,
            app: "big",
            node: "node-a",
            ip: format!("10.244.{}.{}", 2 + i / 200, i % 200 + 1),
            ready: true,
            http: 8080,
        };
        pod(c, spec).await;
    }
    let got = wait_list(&slices, &of_service("big"), DEADLINE, |l| {
        endpoints(l).len() == 150
    })
    .await
    .unwrap();
    assert!(
        got.iter().all(|s| s.endpoints.len() <= 100),
        "{:?}",
        got.iter().map(|s| s.endpoints.len()).collect::<Vec<_>>()
    );
    assert_eq!(got.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_not_ready_addresses_selector_changes_and_service_deletion() {
    let api = InProcess::start().await.unwrap();
    let c = &api.client;
    let _c = controllers(c, &["endpointslice"], Clock::real());
    node(c, "node-a", "zone-a").await;
    for (name, app, i) in [("a1", "a", 1u8), ("b1", "b", 2)] {
        let spec = PodSpec {
            name,
            app,
            node: "node-a",
            ip: format!("10.244.3.{i}"),
            ready: false,
            http: 8080,
        };
        pod(c, spec).await;
    }
    service(
        c,
        json!({"metadata": {"name": "pub"},
               "spec": {"selector": {"app": "a"}, "publishNotReadyAddresses": true,
                        "ports": [{"port": 80}]}}),
    )
    .await;
    let slices = slice_api(c);
    wait_list(&slices, &of_service("pub"), DEADLINE, |l| {
        cond_of(l, "a1") == Some((true, false, false))
    })
    .await
    .unwrap();

    // The selector moves to app=b: b1 replaces a1.
    let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
    svcs.patch(
        "pub",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": {"app": "b"}}})),
    )
    .await
    .unwrap();
    wait_list(&slices, &of_service("pub"), DEADLINE, |l| {
        cond_of(l, "b1").is_some() && cond_of(l, "a1").is_none()
    })
    .await
    .unwrap();

    // The selector goes: the controller's slices go; a user's slice for the Service stays.
    let user: EndpointSlice = from_json(json!({
        "metadata": {"name": "pub-by-hand", "labels": {
            "kubernetes.io/service-name": "pub",
            "endpointslice.kubernetes.io/managed-by": "by-hand.example.com"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.1"]}],
        "ports": [{"port": 80}],
    }));
    slices.create(&PostParams::default(), &user).await.unwrap();
    svcs.patch(
        "pub",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": null}})),
    )
    .await
    .unwrap();
    wait_list(&slices, &of_service("pub"), DEADLINE, |l| l.is_empty())
        .await
        .unwrap();

    // A Service with a selector again, then deleted: its slices are deleted.
    svcs.patch(
        "pub",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": {"app": "a"}}})),
    )
    .await
    .unwrap();
    wait_list(&slices, &of_service("pub"), DEADLINE, |l| {
        cond_of(l, "a1").is_some()
    })
    .await
    .unwrap();
    svcs.delete("pub", &DeleteParams::default()).await.unwrap();
    wait_list(&slices, &of_service("pub"), DEADLINE, |l| l.is_empty())
        .await
        .unwrap();
    let left = slices
        .list(&kube::api::ListParams::default().labels("kubernetes.io/service-name=pub"))
        .await
        .unwrap();
    assert_eq!(
        left.items.iter().map(|s| s.name_any()).collect::<Vec<_>>(),
        ["pub-by-hand"],
        "the user's slice is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_endpoints_has_one_empty_slice() {
    let api = InProcess::start().await.unwrap();
    let c = &api.client;
    let _c = controllers(c, &["endpointslice"], Clock::real());
    service(
        c,
        json!({"metadata": {"name": "lonely"},
               "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]}}),
    )
    .await;
    let got = wait_list(&slice_api(c), &of_service("lonely"), DEADLINE, |l| {
        !l.is_empty()
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].endpoints.is_empty());
    // On the wire `endpoints` is an empty list, not absent: the Python client refuses a slice
    // without it.
    let raw: serde_json::Value = c
        .request(
            http::Request::get(format!(
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/{}",
                got[0].name_any()
            ))
            .body(Vec::new())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(raw["endpoints"], json!([]), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_mirror_services_for_older_clients() {
    let api = InProcess::start().await.unwrap();
    let c = &api.client;
    let _c = controllers(c, &["endpoint"], Clock::real());
    for (name, i, ready) in [("e1", 1u8, true), ("e2", 2, false)] {
        let spec = PodSpec {
            name,
            app: "old",
            node: "node-a",
            ip: format!("10.244.4.{i}"),
            ready,
            http: 8080,
        };
        pod(c, spec).await;
    }
    service(
        c,
        json!({"metadata": {"name": "old", "labels": {"tier": "back"}},
               "spec": {"selector": {"app": "old"},
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
    .await;
    // A Service without a selector and its hand-made Endpoints: left alone.
    service(
        c,
        json!({"metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    let eps: Api<Endpoints> = Api::namespaced(c.clone(), "default");
    let manual: Endpoints = from_json(json!({
        "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.7"}], "ports": [{"port": 80}]}],
    }));
    eps.create(&PostParams::default(), &manual).await.unwrap();

    let ips = |v: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| -> Vec<String> {
        v.iter().flatten().map(|a| a.ip.clone()).collect()
    };
    let got = wait_object(&eps, "old", DEADLINE, |e| {
        e.subsets.as_ref().is_some_and(|s| {
            s.len() == 1
                && ips(&s[0].addresses) == ["10.244.4.1"]
                && ips(&s[0].not_ready_addresses) == ["10.244.4.2"]
        })
    })
    .await
    .unwrap();
    let subset = &got.subsets.as_ref().unwrap()[0];
    let port = &subset.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), 8080, Some("TCP"))
    );
    let a = &subset.addresses.as_ref().unwrap()[0];
    assert_eq!(a.node_name.as_deref(), Some("node-a"));
    assert_eq!(
        a.target_ref.as_ref().and_then(|r| r.name.as_deref()),
        Some("e1")
    );
    assert_eq!(
        got.labels()
            .get("endpoints.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpoint-controller")
    );
    assert_eq!(got.labels().get("tier").map(String::as_str), Some("back"));
    assert!(
        got.annotations()
            .contains_key("endpoints.kubernetes.io/last-change-trigger-time")
    );

    // e2 becomes Ready; then the Service goes and its Endpoints with it.
    set_ready(c, "e2", None, true).await;
    wait_object(&eps, "old", DEADLINE, |e| {
        e.subsets
            .as_ref()
            .is_some_and(|s| s.len() == 1 && ips(&s[0].addresses).len() == 2)
    })
    .await
    .unwrap();
    let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
    svcs.delete("old", &DeleteParams::default()).await.unwrap();
    skiff_testkit::inproc::wait_deleted(&eps, "old", DEADLINE)
        .await
        .unwrap();
    let kept = eps.get("manual").await.unwrap();
    assert_eq!(
        ips(&kept.subsets.unwrap()[0].addresses),
        ["192.0.2.7"],
        "a selectorless Service's Endpoints are the user's"
    );
}

fn scale_to_zero_deployment(name: &str) -> Deployment {
    from_json(json!({
        "metadata": {"name": name, "annotations": {
            "skiff.dev/scale-to-zero": "true", "skiff.dev/scale-to-zero-idle": "1h"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "example.com/a:v1"}]}}},
    }))
}

fn last_request(d: &Deployment) -> Option<&str> {
    d.annotations()
        .get("skiff.dev/last-request-time")
        .map(String::as_str)
}

fn replicas(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.replicas)
}

/// Creates a witness Deployment and waits until the controller stamped it at `at`: the
/// controller has handled every earlier event by then (it handles them in order).
async fn witness(deps: &Api<Deployment>, name: &str, at: jiff::Timestamp) {
    deps.create(&PostParams::default(), &scale_to_zero_deployment(name))
        .await
        .unwrap();
    let at = at.to_string();
    wait_object(deps, name, DEADLINE, |d| {
        last_request(d) == Some(at.as_str())
    })
    .await
    .unwrap();
}

async fn poke(deps: &Api<Deployment>, name: &str, value: &str) {
    deps.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"poke": value}}})),
    )
    .await
    .unwrap();
}

/// Waits until the ScaledToZero Events of Deployment `name` are `n`; returns their times.
async fn scaled_events(client: &Client, name: &str, n: usize) -> Vec<jiff::Timestamp> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let times = |l: &[Event]| -> Vec<jiff::Timestamp> {
        let mut t: Vec<jiff::Timestamp> = l
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some("ScaledToZero")
                    && e.involved_object.name.as_deref() == Some(name)
            })
            .filter_map(|e| e.first_timestamp.as_ref().map(|t| t.0))
            .collect();
        t.sort();
        t
    };
    let got = wait_list(&events, "", DEADLINE, |l| times(l).len() >= n)
        .await
        .unwrap();
    times(&got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_zero_after_the_idle_period_on_a_fake_clock() {
    let api = InProcess::start().await.unwrap();
    let c = &api.client;
    let t0 = jiff::Timestamp::from_second(2_000_000_000).unwrap();
    let after = |secs: i64| {
        t0.checked_add(jiff::SignedDuration::from_secs(secs))
            .unwrap()
    };
    let clock = Clock::fake(t0);
    let _c = controllers(c, &["scaletozero"], clock.clone());
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "default");
    deps.create(&PostParams::default(), &scale_to_zero_deployment("idle"))
        .await
        .unwrap();
    // First seen running: the idle period starts now (t0), stamped on the Deployment.
    let t0s = t0.to_string();
    wait_object(&deps, "idle", DEADLINE, |d| {
        last_request(d) == Some(t0s.as_str())
    })
    .await
    .unwrap();

    // A second before the period ends, a change is looked at and nothing is scaled.
    clock.set(after(3599));
    poke(&deps, "idle", "1").await;
    witness(&deps, "w1", after(3599)).await;
    assert_eq!(replicas(&deps.get("idle").await.unwrap()), Some(1));
    // At the end of the period it goes to zero, with an Event.
    clock.set(after(3600));
    poke(&deps, "idle", "2").await;
    wait_object(&deps, "idle", DEADLINE, |d| replicas(d) == Some(0))
        .await
        .unwrap();
    assert_eq!(scaled_events(c, "idle", 1).await, [after(3600)]);

    // A router scales it up at t0+2h: the controller stamps the scale-up.
    clock.set(after(7200));
    deps.patch_scale(
        "idle",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let up = after(7200).to_string();
    wait_object(&deps, "idle", DEADLINE, |d| {
        last_request(d) == Some(up.as_str())
    })
    .await
    .unwrap();
    // A request at t0+2h30m postpones the scale-down to t0+3h30m.
    let served = after(9000).to_string();
    deps.patch(
        "idle",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {
            "skiff.dev/last-request-time": served}}})),
    )
    .await
    .unwrap();
    clock.set(after(10800));
    poke(&deps, "idle", "3").await;
    witness(&deps, "w2", after(10800)).await;
    assert_eq!(replicas(&deps.get("idle").await.unwrap()), Some(1));
    clock.set(after(12600));
    poke(&deps, "idle", "4").await;
    wait_object(&deps, "idle", DEADLINE, |d| replicas(d) == Some(0))
        .await
        .unwrap();
    assert_eq!(
        scaled_events(c, "idle", 2).await,
        [after(3600), after(12600)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_zero_leaves_deployments_that_did_not_opt_in_or_have_a_bad_idle_period() {
    let api = InProcess::start().await.unwrap();
    let c = &api.client;
    let t0 = jiff::Timestamp::from_second(2_000_000_000).unwrap();
    let clock = Clock::fake(t0);
    let _c = controllers(c, &["scaletozero"], clock.clone());
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let mut plain = scale_to_zero_deployment("plain");
    plain.metadata.annotations = None;
    deps.create(&PostParams::default(), &plain).await.unwrap();
    let mut bad = scale_to_zero_deployment("bad");
    bad.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("skiff.dev/scale-to-zero-idle".into(), "soon".into());
    deps.create(&PostParams::default(), &bad).await.unwrap();
    let events: Api<Event> = Api::namespaced(c.clone(), "default");
    wait_list(&events, "", DEADLINE, |l| {
        l.iter().any(|e| {
            e.reason.as_deref() == Some("InvalidScaleToZeroIdle")
                && e.involved_object.name.as_deref() == Some("bad")
        })
    })
    .await
    .unwrap();
    clock.set(
        t0.checked_add(jiff::SignedDuration::from_hours(48))
            .unwrap(),
    );
    poke(&deps, "plain", "1").await;
    poke(&deps, "bad", "1").await;
    witness(&deps, "w", clock.now()).await;
    for name in ["plain", "bad"] {
        let d = deps.get(name).await.unwrap();
        assert_eq!(replicas(&d), Some(1), "{name}");
        assert_eq!(last_request(&d), None, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_on_a_node_not_yet_known_is_listed_once_the_node_appears_with_its_zone() {
    let api = InProcess::start().await.unwrap();
    let c = &api.client;
    let _c = controllers(c, &["endpointslice"], Clock::real());
    service(
        c,
        json!({"metadata": {"name": "late"},
               "spec": {"selector": {"app": "late"}, "ports": [{"port": 80}]}}),
    )
    .await;
    let spec = |name, node, i: u8| PodSpec {
        name,
        app: "late",
        node,
        ip: format!("10.244.5.{i}"),
        ready: true,
        http: 8080,
    };
    node(c, "node-a", "zone-a").await;
    // `there` first: the reconcile that lists `here` has seen `there` with its IP.
    pod(c, spec("there", "node-b", 2)).await;
    pod(c, spec("here", "node-a", 1)).await;
    let slices = slice_api(c);
    // The pod on a node no one has seen is left out, as Kubernetes does...
    let got = wait_list(&slices, &of_service("late"), DEADLINE, |l| {
        cond_of(l, "here").is_some()
    })
    .await
    .unwrap();
    assert_eq!(cond_of(&got, "there"), None);
    // ...until the node registers: then it is listed in its zone.
    node(c, "node-b", "zone-b").await;
    let got = wait_list(&slices, &of_service("late"), DEADLINE, |l| {
        cond_of(l, "there").is_some()
    })
    .await
    .unwrap();
    assert_eq!(endpoints(&got)["there"].zone.as_deref(), Some("zone-b"));
    // A node's zone label changes: its endpoints follow.
    let nodes: Api<Node> = Api::all(c.clone());
    nodes
        .patch(
            "node-b",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "zone-c"}}}),
            ),
        )
        .await
        .unwrap();
    wait_list(&slices, &of_service("late"), DEADLINE, |l| {
        endpoints(l)
            .get("there")
            .is_some_and(|e| e.zone.as_deref() == Some("zone-c"))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_a_service_deleted_while_the_controllers_were_down_are_removed_at_start() {
    let api = InProcess::start().await.unwrap();
    let c = &api.client;
    let slices = slice_api(c);
    let stale: EndpointSlice = from_json(json!({
        "metadata": {"name": "gone-abcde", "labels": {
            "kubernetes.io/service-name": "gone",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4", "endpoints": [], "ports": [],
    }));
    slices.create(&PostParams::default(), &stale).await.unwrap();
    let users: EndpointSlice = from_json(json!({
        "metadata": {"name": "gone-by-hand", "labels": {"kubernetes.io/service-name": "gone"}},
        "addressType": "IPv4", "endpoints": [], "ports": [],
    }));
    slices.create(&PostParams::default(), &users).await.unwrap();
    let eps: Api<Endpoints> = Api::namespaced(c.clone(), "default");
    for (name, labels) in [
        (
            "gone",
            json!({"endpoints.kubernetes.io/managed-by": "endpoint-controller"}),
        ),
        ("mine", json!({})),
    ] {
        let e: Endpoints = from_json(json!({"metadata": {"name": name, "labels": labels}}));
        eps.create(&PostParams::default(), &e).await.unwrap();
    }
    let _c = controllers(c, &["endpointslice", "endpoint"], Clock::real());
    skiff_testkit::inproc::wait_deleted(&slices, "gone-abcde", DEADLINE)
        .await
        .unwrap();
    skiff_testkit::inproc::wait_deleted(&eps, "gone", DEADLINE)
        .await
        .unwrap();
    // What the controllers do not manage stays.
    slices.get("gone-by-hand").await.unwrap();
    eps.get("mine").await.unwrap();
}
