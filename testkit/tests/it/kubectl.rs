//! kubectl 1.37 reading what the Service controllers write: `get endpointslices`, `get endpoints`
//! and `describe service`, against the API router served on a loopback port.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_api::{AppState, UserInfo};
use skiff_controllers::{Clock, Options};
use skiff_store::{MemoryStore, Store};
use skiff_testkit::inproc::{TOKEN, client_over, wait_list, wait_object};

fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("a valid object literal")
}

fn kubectl(bin: &std::path::Path, dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(bin)
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_lists_endpointslices_and_describes_a_service() {
    let Some(bin) = skiff_tools::kubectl() else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let state =
        AppState::new(store, vec![(TOKEN.into(), UserInfo::admin("admin"))]).with_shutdown(stopped);
    let router = skiff_api::app(Arc::new(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // kubectl sends no bearer token over plain HTTP: the listener adds it, as TLS would carry it.
    let bearer = http::HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap();
    let served = router.clone().layer(tower::util::MapRequestLayer::new(
        move |mut req: http::Request<axum::body::Body>| {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, bearer.clone());
            req
        },
    ));
    let server = tokio::spawn(axum::serve(listener, served).into_future());
    let c = client_over(router, TOKEN);
    let namespaces: Api<Namespace> = Api::all(c.clone());
    namespaces
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "default"}})),
        )
        .await
        .unwrap();
    let mut opts = Options {
        scheduler: false,
        clock: Clock::real(),
        ..Options::default()
    };
    opts.select("endpointslice,endpoint").unwrap();
    let _controllers = skiff_controllers::start(c.clone(), opts);

    let nodes: Api<Node> = Api::all(c.clone());
    nodes
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "node-a",
                "labels": {"topology.kubernetes.io/zone": "zone-a"}}})),
        )
        .await
        .unwrap();
    let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
    svcs.create(
        &PostParams::default(),
        &from_json(json!({"metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    for (name, ip, ready) in [
        ("p1", "10.244.0.10", "True"),
        ("p2", "10.244.0.11", "False"),
    ] {
        pods.create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {"nodeName": "node-a", "containers": [{"name": "c",
                    "image": "example.com/web:v1",
                    "ports": [{"name": "http", "containerPort": 8080}]}]}})),
        )
        .await
        .unwrap();
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "podIP": ip,
                "podIPs": [{"ip": ip}], "conditions": [{"type": "Ready", "status": ready}]}})),
        )
        .await
        .unwrap();
    }
    let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    let got = wait_list(
        &slices,
        "kubernetes.io/service-name=web",
        Duration::from_secs(30),
        |l| l.iter().map(|s| s.endpoints.len()).sum::<usize>() == 2,
    )
    .await
    .unwrap();
    let slice_name = got[0].metadata.name.clone().unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: u\n  user:\n    token: unused\ncontexts:\n- name: x\n  context:\n    \
             cluster: c\n    user: u\n    namespace: default\ncurrent-context: x\n"
        ),
    )
    .unwrap();

    let get = tokio::task::spawn_blocking({
        let (bin, dir) = (bin.clone(), dir.path().to_path_buf());
        move || kubectl(&bin, &dir, &["get", "endpointslices"])
    })
    .await
    .unwrap();
    let mut lines = get.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        "{get}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..4],
        [
            slice_name.as_str(),
            "IPv4",
            "8080",
            "10.244.0.10,10.244.0.11"
        ],
        "{get}"
    );

    // The Endpoints mirror, for older clients: ready addresses only.
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> =
        Api::namespaced(c.clone(), "default");
    wait_object(&endpoints, "web", Duration::from_secs(30), |e| {
        e.subsets.as_ref().is_some_and(|s| !s.is_empty())
    })
    .await
    .unwrap();
    let get = tokio::task::spawn_blocking({
        let (bin, dir) = (bin.clone(), dir.path().to_path_buf());
        move || kubectl(&bin, &dir, &["get", "endpoints", "web"])
    })
    .await
    .unwrap();
    let row: Vec<&str> = get
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..2], ["web", "10.244.0.10:8080"], "{get}");

    let describe = tokio::task::spawn_blocking({
        let (bin, dir) = (bin.clone(), dir.path().to_path_buf());
        move || kubectl(&bin, &dir, &["describe", "service", "web"])
    })
    .await
    .unwrap();
    let field = |name: &str| -> String {
        describe
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in:\n{describe}"))
    };
    assert_eq!(field("Selector:"), "app=web");
    assert_eq!(field("Endpoints:"), "10.244.0.10:8080", "{describe}");
    server.abort();
}
