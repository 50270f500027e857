//! Unit tests of the routing table: name forms, compilation of Services and EndpointSlices,
//! local readiness, scale-to-zero Deployments.

use serde_json::json;

use super::*;

#[test]
fn service_names_in_every_form() {
    use ServiceName::*;
    let cases: &[(&str, Option<ServiceName<'_>>)] = &[
        ("web", Some(Bare("web"))),
        ("web.", Some(Bare("web"))),
        ("web.shop", Some(Qualified("web", "shop"))),
        ("web.shop.svc", Some(Qualified("web", "shop"))),
        ("web.shop.svc.cluster.local", Some(Qualified("web", "shop"))),
        (
            "web.shop.svc.cluster.local.",
            Some(Qualified("web", "shop")),
        ),
        ("10.96.0.10", Some(Ip("10.96.0.10".parse().unwrap()))),
        ("[fd00::1]", Some(Ip("fd00::1".parse().unwrap()))),
        // Not a Service name: other domains, bad labels, a bare `svc` suffix without namespace.
        ("example.com.au", None),
        ("www.example.com", None),
        ("web.svc", None),
        ("a.b.svc.other", None),
        ("Web", None),
        ("-web", None),
        ("", None),
        ("svc", Some(Bare("svc"))),
    ];
    for (host, want) in cases {
        assert_eq!(&parse_host(host), want, "{host:?}");
    }
}

fn service(v: serde_json::Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).unwrap()
}

fn web() -> Service {
    service(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "clusterIP": "10.96.0.10",
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "admin", "port": 9000, "targetPort": 9090}
            ]
        }
    }))
}

fn web_slice(endpoints: serde_json::Value) -> EndpointSlice {
    slice(json!({
        "metadata": {"name": "web-abc", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                  {"name": "admin", "port": 9090}],
        "endpoints": endpoints
    }))
}

/// (ip:port, node) of the ready targets of `port`.
fn ready(c: &Compiled, port: u16) -> Vec<String> {
    let p = c.port(port).unwrap();
    p.ready
        .iter()
        .map(|t| {
            let e = &c.endpoints[t.ep];
            format!("{}:{}@{}", e.ip, t.port, e.node.as_deref().unwrap_or("-"))
        })
        .collect()
}

#[test]
fn a_service_routes_to_the_ready_endpoints_of_its_slices_by_port_name() {
    let t = Table::new("node-a");
    t.apply_service(web());
    let c = t.get("shop", "web").unwrap();
    assert_eq!(c.cluster_ip, Some("10.96.0.10".parse().unwrap()));
    assert!(ready(&c, 80).is_empty(), "no slice yet");
    assert!(t.by_ip("10.96.0.10".parse().unwrap()).is_some());

    let changes = t.changes();
    t.apply_slice(web_slice(json!([
        {"addresses": ["10.244.1.5"], "nodeName": "node-b", "conditions": {"ready": true}},
        {"addresses": ["10.244.2.5"], "nodeName": "node-c"},
        {"addresses": ["10.244.3.5"], "nodeName": "node-d", "conditions": {"ready": false}},
        {"addresses": ["10.244.4.5"], "nodeName": "node-d",
         "conditions": {"ready": false, "serving": true, "terminating": true}}
    ])));
    assert!(
        changes.has_changed().unwrap(),
        "every event wakes the waiters"
    );
    let c = t.get("shop", "web").unwrap();
    assert_eq!(
        ready(&c, 80),
        ["10.244.1.5:8080@node-b", "10.244.2.5:8080@node-c"]
    );
    assert_eq!(
        ready(&c, 9000),
        ["10.244.1.5:9090@node-b", "10.244.2.5:9090@node-c"]
    );
    assert_eq!(
        c.port(80).unwrap().fallback.len(),
        1,
        "terminating but serving"
    );
    assert!(c.port(81).is_none());
    assert_eq!(c.port_named("admin").unwrap().port, 9000);

    // The same object under a ClusterIP and a name; deleting the slice empties it.
    t.delete_slice("shop", "web-abc");
    assert!(ready(&t.get("shop", "web").unwrap(), 80).is_empty());
    t.delete_service("shop", "web");
    assert!(t.get("shop", "web").is_none());
    assert!(t.by_ip("10.96.0.10".parse().unwrap()).is_none());
}

#[test]
fn this_node_knows_its_own_pods_first_hand() {
    let t = Table::new("node-a");
    t.apply_service(web());
    let ip: IpAddr = "10.244.0.7".parse().unwrap();
    let pod = |ready| LocalPod {
        namespace: "shop".into(),
        name: "web-1".into(),
        labels: [("app".to_string(), "web".to_string())].into(),
        ports: vec![("http".into(), 8080)],
        ready,
    };
    // Ready here before any EndpointSlice lists it: routed at once, the named targetPort
    // resolved from the pod's container ports.
    let changes = t.changes();
    t.set_local(ip, pod(true));
    assert!(changes.has_changed().unwrap());
    let c = t.get("shop", "web").unwrap();
    assert_eq!(ready(&c, 80), ["10.244.0.7:8080@node-a"]);
    assert_eq!(ready(&c, 9000), ["10.244.0.7:9090@node-a"]);
    assert_eq!(t.get_in_namespace_of(ip, "web").unwrap().name, "web");
    assert!(
        t.get_in_namespace_of("10.1.1.1".parse().unwrap(), "web")
            .is_none()
    );

    // The slice says ready, the worker says it is terminating: no new request.
    t.apply_slice(web_slice(json!([
        {"addresses": ["10.244.0.7"], "nodeName": "node-a", "conditions": {"ready": true}}
    ])));
    assert_eq!(ready(&t.get("shop", "web").unwrap(), 80).len(), 1);
    t.set_local(ip, pod(false));
    assert!(ready(&t.get("shop", "web").unwrap(), 80).is_empty());
    // A pod the slice puts on this node that this node does not run is gone.
    t.remove_local(ip);
    assert!(ready(&t.get("shop", "web").unwrap(), 80).is_empty());
    // Pods of another namespace or with other labels are not endpoints.
    let other = LocalPod {
        namespace: "other".into(),
        ..pod(true)
    };
    t.set_local("10.244.0.8".parse().unwrap(), other);
    assert!(ready(&t.get("shop", "web").unwrap(), 80).is_empty());
}

#[test]
fn headless_external_name_and_affinity() {
    let t = Table::new("node-a");
    t.apply_service(service(json!({
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"},
                 "ports": [{"port": 5432}]}
    })));
    t.apply_service(service(json!({
        "metadata": {"name": "alias", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "web.shop.svc.cluster.local"}
    })));
    t.apply_service(service(json!({
        "metadata": {"name": "sticky", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.11", "sessionAffinity": "ClientIP",
                 "ports": [{"port": 80}]}
    })));
    let db = t.get("shop", "db").unwrap();
    assert!(db.headless());
    assert_eq!(db.kind, Kind::Endpoints);
    assert_eq!(
        t.get("shop", "alias").unwrap().kind,
        Kind::ExternalName("web.shop.svc.cluster.local".into())
    );
    assert_eq!(
        t.get("shop", "sticky").unwrap().affinity,
        Some(AFFINITY_TIMEOUT_DEFAULT)
    );
    t.apply_slice(slice(json!({
        "metadata": {"name": "db-1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "", "port": 5432}],
        "endpoints": [{"addresses": ["10.244.1.9"], "nodeName": "node-b"}]
    })));
    let db = t.get("shop", "db").unwrap();
    assert_eq!(ready(&db, 5432), ["10.244.1.9:5432@node-b"]);
    assert_eq!(db.direct_targets(7000)[0].port, 7000);
}

#[test]
fn a_scale_to_zero_deployment_is_found_by_its_template_labels() {
    let t = Table::new("node-a");
    t.apply_service(web());
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop", "annotations": {
            "skiff.dev/scale-to-zero": "true",
            "skiff.dev/scale-from-zero-deadline": "2s",
            "skiff.dev/scale-from-zero-max-held": "3"
        }},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                              "spec": {"containers": []}}}
    }))
    .unwrap();
    t.apply_deployment(&d);
    let scale = t.get("shop", "web").unwrap().scale.clone().unwrap();
    assert_eq!(scale.name, "web");
    assert_eq!(scale.deadline, Duration::from_secs(2));
    assert_eq!(scale.max_held, 3);
    assert_eq!(scale.idle, names::SCALE_TO_ZERO_IDLE_DEFAULT);
    // Without the annotation it is an ordinary Deployment.
    let mut plain = d.clone();
    plain.metadata.annotations = None;
    t.apply_deployment(&plain);
    assert!(t.get("shop", "web").unwrap().scale.is_none());
    t.apply_deployment(&d);
    t.delete_deployment("shop", "web");
    assert!(t.get("shop", "web").unwrap().scale.is_none());
}

#[test]
fn a_relist_forgets_what_it_no_longer_lists() {
    let t = Table::new("node-a");
    t.apply_service(web());
    t.apply_slice(web_slice(
        json!([{"addresses": ["10.244.1.5"], "nodeName": "node-b"}]),
    ));
    t.retain_slices(&HashSet::new());
    assert!(ready(&t.get("shop", "web").unwrap(), 80).is_empty());
    t.retain_services(&HashSet::new());
    assert!(t.get("shop", "web").is_none());
}

#[test]
fn wasm_pods_are_published_for_the_bridge_and_leave_with_the_pod() {
    let t = Table::new("node-a");
    let mut rx = t.wasm_pods();
    let ip: IpAddr = "10.244.1.5".parse().unwrap();
    t.set_wasm_pod(ip, BTreeSet::from([8080, 9090]));
    assert!(rx.has_changed().unwrap());
    assert_eq!(
        rx.borrow_and_update().get(&"10.244.1.5".parse().unwrap()),
        Some(&BTreeSet::from([8080, 9090]))
    );
    // The same report again is no change; an IPv6 pod is not served on the bridge.
    t.set_wasm_pod(ip, BTreeSet::from([8080, 9090]));
    t.set_wasm_pod("fd00::5".parse().unwrap(), BTreeSet::from([80]));
    assert!(!rx.has_changed().unwrap());
    t.remove_local(ip);
    assert!(rx.has_changed().unwrap());
    assert!(rx.borrow_and_update().is_empty());
}
