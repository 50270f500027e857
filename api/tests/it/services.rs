//! Services, Nodes and Ingresses: ClusterIP and NodePort allocation, Node pod CIDRs and the
//! default IngressClass, through the router.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::http::Method;
use serde_json::{Value, json};

use super::Api;

const SVCS: &str = "/api/v1/namespaces/default/services";
const NODES: &str = "/api/v1/nodes";

fn svc(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("ports").is_none() && spec.get("type") != Some(&json!("ExternalName")) {
        spec["ports"] = json!([{"port": 80}]);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

fn ip_of(body: &Value) -> Ipv4Addr {
    body["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_else(|| panic!("no clusterIP: {body}"))
        .parse()
        .unwrap()
}

fn network(service_cidr: &str) -> skiff_api::NetworkConfig {
    skiff_api::NetworkConfig {
        service_cidr: service_cidr.parse().unwrap(),
        ..Default::default()
    }
}

async fn small_api(service_cidr: &str) -> Api {
    Api::with(
        Arc::new(skiff_api::AllowAuthenticated),
        network(service_cidr),
    )
    .await
}

#[tokio::test]
async fn a_service_gets_a_cluster_ip_from_the_upper_part_of_the_range_and_kubernetes_defaults() {
    let api = Api::new().await;
    let (code, body) = api
        .call(Method::POST, SVCS, Some(svc("web", json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    let ip = ip_of(&body);
    let cidr: skiff_api::Ipv4Cidr = "10.96.0.0/12".parse().unwrap();
    assert!(cidr.contains(ip), "{ip}");
    // The low 256 addresses (10.96.0.1 - 10.96.1.0) are kept for explicit picks.
    assert!(
        u32::from(ip) > u32::from(Ipv4Addr::new(10, 96, 1, 0)),
        "{ip}"
    );
    let spec = &body["spec"];
    assert_eq!(spec["clusterIPs"], json!([ip.to_string()]));
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["ports"][0]["targetPort"], 80);
    // The stored object says the same.
    let (_, got) = api.call(Method::GET, &format!("{SVCS}/web"), None).await;
    assert_eq!(ip_of(&got), ip);
}

#[tokio::test]
async fn explicit_cluster_ips_are_honoured_once_and_only_inside_the_range() {
    let api = Api::new().await;
    let fixed = json!({"clusterIP": "10.96.0.50"});
    let (code, body) = api
        .call(Method::POST, SVCS, Some(svc("a", fixed.clone())))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["clusterIPs"], json!(["10.96.0.50"]));

    let (code, body) = api
        .call(Method::POST, SVCS, Some(svc("b", fixed.clone())))
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(
        body["message"],
        "Service \"b\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.50\"}: failed to allocate IP 10.96.0.50: provided IP is already allocated"
    );
    assert_eq!(body["details"]["causes"][0]["field"], "spec.clusterIPs");

    let (code, body) = api
        .call(
            Method::POST,
            SVCS,
            Some(svc("c", json!({"clusterIP": "10.200.0.1"}))),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "Service \"c\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.200.0.1\"}: failed to allocate IP 10.200.0.1: the provided IP (10.200.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
    );
    // `clusterIPs` alone names the address too.
    let (code, body) = api
        .call(
            Method::POST,
            SVCS,
            Some(svc("d", json!({"clusterIPs": ["10.96.0.51"]}))),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["clusterIP"], "10.96.0.51");
    // A failed create takes nothing: "b" fits once "a" lets go of the address.
    let (code, _) = api.call(Method::DELETE, &format!("{SVCS}/a"), None).await;
    assert_eq!(code, 200);
    let (code, body) = api.call(Method::POST, SVCS, Some(svc("b", fixed))).await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn the_cluster_ip_is_immutable_and_kept_by_a_replace_without_it() {
    let api = Api::new().await;
    let (_, created) = api
        .call(Method::POST, SVCS, Some(svc("web", json!({}))))
        .await;
    let ip = ip_of(&created);
    let mut changed = created.clone();
    changed["spec"]["clusterIP"] = json!("10.96.0.77");
    changed["spec"]["clusterIPs"] = json!(["10.96.0.77"]);
    let (code, body) = api
        .call(Method::PUT, &format!("{SVCS}/web"), Some(changed))
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "spec.clusterIPs[0]");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("may not change once set"),
        "{body}"
    );
    // A full replacement that leaves the cluster IP out keeps it.
    let mut replaced = created.clone();
    replaced["spec"]
        .as_object_mut()
        .unwrap()
        .remove("clusterIP");
    replaced["spec"]
        .as_object_mut()
        .unwrap()
        .remove("clusterIPs");
    replaced["metadata"]["labels"] = json!({"v": "2"});
    let (code, body) = api
        .call(Method::PUT, &format!("{SVCS}/web"), Some(replaced))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(ip_of(&body), ip);
}

#[tokio::test]
async fn headless_and_external_name_services_get_no_address() {
    let api = Api::new().await;
    let (code, body) = api
        .call(
            Method::POST,
            SVCS,
            Some(svc("headless", json!({"clusterIP": "None"}))),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["clusterIP"], "None");
    assert_eq!(body["spec"]["clusterIPs"], json!(["None"]));
    let (code, body) = api
        .call(
            Method::POST,
            SVCS,
            Some(svc(
                "ext",
                json!({"type": "ExternalName", "externalName": "db.example.com"}),
            )),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"].get("clusterIP").is_none(), "{body}");
    let (code, body) = api
        .call(
            Method::POST,
            SVCS,
            Some(svc(
                "bad",
                json!({"type": "ExternalName", "externalName": "not a name"}),
            )),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "spec.externalName");
}

/// Many concurrent creates, then delete and recreate loops, in a range small enough for
/// collisions: no two live Services ever share a ClusterIP.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_and_recreates_never_share_a_cluster_ip() {
    // A /26: 62 usable addresses, the low 16 kept for explicit picks (used once the rest is full).
    let api = Arc::new(small_api("10.96.0.0/26").await);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let (code, body) = api
                .call(Method::POST, SVCS, Some(svc(&format!("s{i}"), json!({}))))
                .await;
            assert_eq!(code, 201, "{body}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let live_ips = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["spec"]["clusterIP"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, list) = api.call(Method::GET, SVCS, None).await;
    let ips = live_ips(&list);
    assert_eq!(ips.len(), 50);
    assert_eq!(ips.iter().collect::<HashSet<_>>().len(), 50, "{ips:?}");
    // The upper 46 addresses went first; the last 4 came from the low band.
    let low = ips
        .iter()
        .filter(|ip| ip.parse::<Ipv4Addr>().unwrap().octets()[3] <= 16)
        .count();
    assert_eq!(low, 4, "{ips:?}");

    // Delete and recreate, ten loops of ten Services each at once, with the range nearly full.
    let mut tasks = Vec::new();
    for worker in 0..10 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                let name = format!("s{}", worker * 5 + round);
                let (code, body) = api
                    .call(Method::DELETE, &format!("{SVCS}/{name}"), None)
                    .await;
                assert_eq!(code, 200, "{body}");
                let (code, body) = api
                    .call(Method::POST, SVCS, Some(svc(&name, json!({}))))
                    .await;
                assert_eq!(code, 201, "{body}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, list) = api.call(Method::GET, SVCS, None).await;
    let ips = live_ips(&list);
    assert_eq!(ips.len(), 50);
    assert_eq!(ips.iter().collect::<HashSet<_>>().len(), 50, "{ips:?}");
    // The range has 62 addresses: 12 more fit, the 13th does not.
    for i in 0..12 {
        let (code, body) = api
            .call(
                Method::POST,
                SVCS,
                Some(svc(&format!("extra{i}"), json!({}))),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    let (code, body) = api
        .call(Method::POST, SVCS, Some(svc("one-too-many", json!({}))))
        .await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("range is full"),
        "{body}"
    );
}

#[tokio::test]
async fn node_ports_are_allocated_honoured_and_released() {
    let api = Api::new().await;
    let (code, body) = api
        .call(
            Method::POST,
            SVCS,
            Some(svc("np", json!({"type": "NodePort"}))),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let port = body["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    // min(max(16, 2768/32), 128) = 86 low ports are kept for explicit picks.
    assert!((30086..=32767).contains(&port), "{port}");

    let fixed = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]});
    let (code, body) = api
        .call(Method::POST, SVCS, Some(svc("fixed", fixed.clone())))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["ports"][0]["nodePort"], 30080);
    let (code, body) = api
        .call(Method::POST, SVCS, Some(svc("again", fixed.clone())))
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "Service \"again\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );
    let out = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]});
    let (code, body) = api.call(Method::POST, SVCS, Some(svc("out", out))).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "Service \"out\" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    // A LoadBalancer gets node ports too, and an empty status.loadBalancer.
    let (code, body) = api
        .call(
            Method::POST,
            SVCS,
            Some(svc("lb", json!({"type": "LoadBalancer"}))),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(
        body["spec"]["ports"][0]["nodePort"].as_i64().is_some(),
        "{body}"
    );
    assert_eq!(body["status"]["loadBalancer"], json!({}));

    // Changing the type to ClusterIP lets the port go.
    let patch = json!({"spec": {"type": "ClusterIP"}});
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{SVCS}/fixed"),
            "application/merge-patch+json",
            "application/json",
            Some(patch),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["spec"]["ports"][0].get("nodePort").is_none(), "{body}");
    let (code, body) = api
        .call(Method::POST, SVCS, Some(svc("again", fixed.clone())))
        .await;
    assert_eq!(code, 201, "{body}");
    // Deleting releases it.
    api.call(Method::DELETE, &format!("{SVCS}/again"), None)
        .await;
    let (code, body) = api
        .call(Method::POST, SVCS, Some(svc("third", fixed)))
        .await;
    assert_eq!(code, 201, "{body}");
}

fn node(name: &str, cidr: Option<&str>) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    if let Some(c) = cidr {
        n["spec"] = json!({"podCIDR": c, "podCIDRs": [c]});
    }
    n
}

#[tokio::test]
async fn nodes_get_distinct_pod_cidrs_and_an_overlapping_one_is_refused() {
    let api = Api::new().await;
    let mut cidrs = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let (code, body) = api.call(Method::POST, NODES, Some(node(name, None))).await;
        assert_eq!(code, 201, "{body}");
        let cidr = body["spec"]["podCIDR"].as_str().unwrap().to_string();
        assert_eq!(body["spec"]["podCIDRs"], json!([cidr]));
        cidrs.push(cidr);
    }
    assert_eq!(cidrs, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]);

    // An explicit CIDR that overlaps n2's is refused, with the reason.
    let (code, body) = api
        .call(Method::POST, NODES, Some(node("n4", Some("10.244.1.0/24"))))
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "Node \"n4\" is invalid: spec.podCIDR: Invalid value: \"10.244.1.0/24\": overlaps the pod CIDR of node \"n2\""
    );
    let (code, body) = api
        .call(Method::POST, NODES, Some(node("n4", Some("10.244.0.0/23"))))
        .await;
    assert_eq!(code, 422, "{body}");
    let (code, body) = api
        .call(Method::POST, NODES, Some(node("n4", Some("10.88.0.0/24"))))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("must lie inside the cluster CIDR 10.244.0.0/16"),
        "{body}"
    );
    // A free explicit one is honoured.
    let (code, body) = api
        .call(Method::POST, NODES, Some(node("n4", Some("10.244.7.0/24"))))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["podCIDR"], "10.244.7.0/24");
    // The same node creating its Node again (a restarted `skiff node --pod-cidr`) is told the
    // Node exists, not that it overlaps itself.
    let (code, body) = api
        .call(Method::POST, NODES, Some(node("n4", Some("10.244.7.0/24"))))
        .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["reason"], "AlreadyExists", "{body}");

    // Re-registering (a merge patch of labels) keeps the CIDR; changing it is refused.
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{NODES}/n2"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["podCIDR"], "10.244.1.0/24");
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{NODES}/n2"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"spec": {"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24"]}})),
        )
        .await;
    assert_eq!(code, 422, "{body}");

    // Deleting a Node frees its CIDR for the next one.
    api.call(Method::DELETE, &format!("{NODES}/n2"), None).await;
    let (code, body) = api.call(Method::POST, NODES, Some(node("n5", None))).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["podCIDR"], "10.244.1.0/24");
}

#[tokio::test]
async fn an_ingress_without_a_class_gets_the_default_one() {
    let api = Api::new().await;
    let ingresses = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
    let ingress = |name: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}})
    };
    // No default class yet: nothing is written.
    let (code, body) = api
        .call(Method::POST, ingresses, Some(ingress("before")))
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"].get("ingressClassName").is_none(), "{body}");
    let class = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "skiff", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "skiff.dev/ingress"}});
    let (code, body) = api
        .call(
            Method::POST,
            "/apis/networking.k8s.io/v1/ingressclasses",
            Some(class),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api
        .call(Method::POST, ingresses, Some(ingress("after")))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["ingressClassName"], "skiff");
    let mut other = ingress("other");
    other["spec"]["ingressClassName"] = json!("nginx");
    let (_, body) = api.call(Method::POST, ingresses, Some(other)).await;
    assert_eq!(body["spec"]["ingressClassName"], "nginx");
}

/// A stand-in node endpoint that echoes the pod proxy request it got; its port.
async fn echo_node() -> (u16, tokio::task::JoinHandle<()>) {
    use axum::routing::any;
    let node = axum::Router::new().route(
        "/proxy/{ns}/{pod}/{port}/{*rest}",
        any(
            |axum::extract::Path((ns, pod, port, rest)): axum::extract::Path<(
                String,
                String,
                String,
                String,
            )>,
             q: axum::extract::RawQuery| async move {
                format!("{ns}/{pod}:{port}/{rest}?{}", q.0.unwrap_or_default())
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, node).await;
    });
    (port, task)
}

#[tokio::test]
async fn service_proxy_reaches_a_ready_endpoint_through_its_node() {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;

    let (node_port, server) = echo_node().await;
    let api = Api::new().await;
    let (code, body) = api.call(Method::POST, NODES, Some(node("n1", None))).await;
    assert_eq!(code, 201, "{body}");
    api.call_with(
        Method::PATCH,
        &format!("{NODES}/n1/status"),
        "application/merge-patch+json",
        "application/json",
        Some(
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": node_port}}}}),
        ),
    )
    .await;
    let spec = json!({"selector": {"app": "web"}, "ports": [
        {"name": "http", "port": 80, "targetPort": "web"},
        {"name": "admin", "port": 9000, "targetPort": 9090}]});
    let (code, body) = api.call(Method::POST, SVCS, Some(svc("web", spec))).await;
    assert_eq!(code, 201, "{body}");

    let get = |path: String| {
        let req = Request::get(path)
            .header("Authorization", format!("Bearer {}", super::TOKEN))
            .body(Body::empty())
            .unwrap();
        let api = &api;
        async move {
            let resp = api.request(req).await;
            let code = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (code, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    // No endpoints yet: 503 as Kubernetes says it.
    let (code, body) = get(format!("{SVCS}/web:80/proxy/hello")).await;
    assert_eq!(code, 503, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert_eq!(
        status["message"],
        "no endpoints available for service \"web\""
    );

    // A slice with one ready and one unready endpoint (as the EndpointSlice controller writes).
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                  {"name": "admin", "port": 9090, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.0.5"], "conditions": {"ready": true}, "nodeName": "n1",
             "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default"}},
            {"addresses": ["10.244.0.6"], "conditions": {"ready": false}, "nodeName": "n1",
             "targetRef": {"kind": "Pod", "name": "web-2", "namespace": "default"}}]});
    let (code, body) = api
        .call(
            Method::POST,
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
            Some(slice),
        )
        .await;
    assert_eq!(code, 201, "{body}");

    // By port number, by port name, with a scheme: always the ready pod, on the target port.
    for (id, port) in [
        ("web:80", 8080),
        ("web:http", 8080),
        ("https:web:9000", 9090),
        ("web:admin", 9090),
    ] {
        let (code, body) = get(format!("{SVCS}/{id}/proxy/a/b?x=1")).await;
        assert_eq!(
            (code, body.as_str()),
            (200, format!("default/web-1:{port}/a/b?x=1").as_str()),
            "{id}"
        );
    }
    // A Service with several ports needs one named; an unknown one is 503 too.
    let (code, body) = get(format!("{SVCS}/web/proxy/")).await;
    assert_eq!(code, 503, "{body}");
    let (code, body) = get(format!("{SVCS}/web:7/proxy/")).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("no service port \\\"7\\\" found for service \\\"web\\\""),
        "{body}"
    );
    let (code, _) = get(format!("{SVCS}/nope:80/proxy/")).await;
    assert_eq!(code, 404);
    server.abort();
}

#[tokio::test]
async fn type_changes_and_dry_runs_take_and_free_what_they_should() {
    let api = Api::new().await;
    // A dry run shows an address but takes none: the same explicit address is free afterwards.
    let fixed = json!({"clusterIP": "10.96.0.60"});
    let (code, body) = api
        .call(
            Method::POST,
            &format!("{SVCS}?dryRun=All"),
            Some(svc("dry", fixed.clone())),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["clusterIP"], "10.96.0.60");
    let (code, body) = api
        .call(
            Method::POST,
            &format!("{SVCS}?dryRun=All"),
            Some(svc("dry2", json!({}))),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"]["clusterIP"].is_string(), "{body}");
    let (code, body) = api
        .call(Method::POST, SVCS, Some(svc("real", fixed.clone())))
        .await;
    assert_eq!(code, 201, "{body}");

    // ClusterIP -> ExternalName frees the address; ExternalName -> ClusterIP takes one again.
    let merge = |path: String, patch: Value| {
        let api = &api;
        async move {
            api.call_with(
                Method::PATCH,
                &path,
                "application/merge-patch+json",
                "application/json",
                Some(patch),
            )
            .await
        }
    };
    let (code, body) = merge(
        format!("{SVCS}/real"),
        json!({"spec": {"type": "ExternalName", "externalName": "db.example.com",
            "clusterIP": null, "clusterIPs": null}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["spec"].get("clusterIP").is_none(), "{body}");
    let (code, body) = api
        .call(Method::POST, SVCS, Some(svc("other", fixed)))
        .await;
    assert_eq!(code, 201, "the address was freed: {body}");
    let (code, body) = merge(
        format!("{SVCS}/real"),
        json!({"spec": {"type": "ClusterIP", "externalName": null}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let ip = ip_of(&body);
    assert_ne!(ip.to_string(), "10.96.0.60");
    // ClusterIP -> NodePort takes a node port.
    let (code, body) = merge(
        format!("{SVCS}/real"),
        json!({"spec": {"type": "NodePort"}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body["spec"]["ports"][0]["nodePort"].as_i64().is_some(),
        "{body}"
    );
    assert_eq!(ip_of(&body), ip, "the address stays");
}

/// Allocations live in the store: after a restart on the same store a taken address is still
/// taken, and the `kubernetes` Service points at the new port. (That the store keeps what it
/// acknowledged across a process restart is the store's own tests' business.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_survive_a_restart() {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let call = |store: Arc<dyn skiff_store::Store>,
                method: Method,
                path: String,
                body: Option<Value>| async move {
        let state = Arc::new(skiff_api::AppState::new(
            store,
            vec![(super::TOKEN.into(), skiff_api::UserInfo::admin("admin"))],
        ));
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Bearer {}", super::TOKEN))
            .header("Content-Type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let resp = skiff_api::app(state).oneshot(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            code,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    };
    let fixed = json!({"clusterIP": "10.96.0.70"});
    let store: Arc<dyn skiff_store::Store> = Arc::new(skiff_store::MemoryStore::new());
    let first = skiff_api::start_with_store(
        skiff_api::ServerOptions::new(dir.path(), "127.0.0.1:0".parse().unwrap()),
        store.clone(),
    )
    .await
    .unwrap();
    let (code, body) = call(
        first.store.clone(),
        Method::POST,
        SVCS.into(),
        Some(svc("a", fixed.clone())),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    first.shutdown().await;

    let second = skiff_api::start_with_store(
        skiff_api::ServerOptions::new(dir.path(), "127.0.0.1:0".parse().unwrap()),
        store.clone(),
    )
    .await
    .unwrap();
    let (code, body) = call(
        second.store.clone(),
        Method::POST,
        SVCS.into(),
        Some(svc("b", fixed)),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let (_, kubernetes) = call(
        second.store.clone(),
        Method::GET,
        format!("{SVCS}/kubernetes"),
        None,
    )
    .await;
    assert_eq!(kubernetes["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(
        kubernetes["spec"]["ports"][0]["targetPort"],
        second.addr.port()
    );
    second.shutdown().await;
}

/// As Kubernetes' node IPAM: a full cluster CIDR leaves a new Node without a range instead of
/// refusing it, and a range freed later goes to the next Node.
#[tokio::test]
async fn a_full_cluster_cidr_leaves_a_node_without_a_range() {
    let network = skiff_api::NetworkConfig {
        cluster_cidr: "10.244.0.0/23".parse().unwrap(),
        ..Default::default()
    };
    let api = Api::with(Arc::new(skiff_api::AllowAuthenticated), network).await;
    for (name, cidr) in [("n1", "10.244.0.0/24"), ("n2", "10.244.1.0/24")] {
        let (code, body) = api.call(Method::POST, NODES, Some(node(name, None))).await;
        assert_eq!(
            (code, body["spec"]["podCIDR"].as_str()),
            (201, Some(cidr)),
            "{body}"
        );
    }
    let (code, body) = api.call(Method::POST, NODES, Some(node("n3", None))).await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"].get("podCIDR").is_none(), "{body}");
    api.call(Method::DELETE, &format!("{NODES}/n1"), None).await;
    let (code, body) = api.call(Method::POST, NODES, Some(node("n4", None))).await;
    assert_eq!(
        (code, body["spec"]["podCIDR"].as_str()),
        (201, Some("10.244.0.0/24")),
        "{body}"
    );
}
