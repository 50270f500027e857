//! Scheduling by WIT world, end to end on real processes: `skiff push` records a component's
//! imports in its manifest; a node started with `--disable-interface wasi:keyvalue` advertises
//! its linker's interfaces without keyvalue; a pod of a component importing
//! `wasi:keyvalue/store` stays Pending with a FailedScheduling Event naming the interface;
//! creating (or `kubectl apply --dry-run=server`) such a pod is refused by the API server with
//! the interface named; once a node that provides it joins, the Pending pod is scheduled there.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Event, Node as KNode, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use skiff_meta::wit;
use skiff_registry::{ClientOptions, RegistryClient};
use skiff_tests::{Node, Registry, Server, tools};

const KV_STORE: &str = "wasi:keyvalue/store@0.2.0-draft";

/// A component importing `wasi:keyvalue/store` (an empty instance type: it links against any
/// definition of that name) and `wasi:cli/stdout`.
fn keyvalue_component() -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
            (import "{KV_STORE}" (instance))
            (import "wasi:cli/stdout@0.2.0" (instance)))"#
    ))
    .expect("the component parses")
}

fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }))
    .unwrap()
}

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The interfaces Node `name` advertises, once it does.
async fn advertised(nodes: &Api<KNode>, name: &str) -> Vec<String> {
    eventually(
        &format!("node {name} to advertise its interfaces"),
        Duration::from_secs(60),
        || async {
            let n = nodes.get_opt(name).await.ok()??;
            let v = n.metadata.annotations?.get(wit::NODE_INTERFACES)?.clone();
            Some(wit::parse_list(&v).expect("a JSON array"))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_importing_keyvalue_is_refused_where_no_node_provides_it() {
    let server = Server::start().expect("server starts");
    let registry = Registry::start().expect("registry starts");
    let client = server.client().await.unwrap();

    // Push: the manifest records the component's world.
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("kv.wasm");
    std::fs::write(&wasm, keyvalue_component()).unwrap();
    let reference = registry.push(&wasm, "wit/kv:1").expect("skiff push");
    let reader = RegistryClient::new(ClientOptions::new(dir.path().join("cache"))).unwrap();
    let (digest, annotations) = reader.manifest_annotations(&reference).await.unwrap();
    let imports = wit::parse_list(&annotations[wit::IMPORTS_ANNOTATION]).unwrap();
    assert_eq!(imports, [KV_STORE, "wasi:cli/stdout@0.2.0"]);
    assert_eq!(annotations[wit::EXPORTS_ANNOTATION], "[]");
    let pinned = format!("{}/wit/kv@{digest}", registry.addr);

    // The cluster names its registry as `skiff up` does.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    let info: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "skiff-info"},
        "data": {"registry": registry.addr},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &info).await.unwrap();

    // Created before any node exists: nothing to check against, but the imports are recorded.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pods
        .create(&PostParams::default(), &pod("kv", &pinned))
        .await
        .expect("a pod is admitted while no node says what it provides");
    let recorded = &created.metadata.annotations.unwrap()[wit::POD_IMPORTS];
    let recorded: BTreeMap<String, Vec<String>> = serde_json::from_str(recorded).unwrap();
    assert_eq!(recorded["app"], imports);

    // A node without keyvalue: it advertises what its linker provides, minus keyvalue.
    let _nokv = Node::start_with(&server, "nokv", &["--disable-interface", "wasi:keyvalue"])
        .expect("node starts");
    let nodes: Api<KNode> = Api::all(client.clone());
    let have = advertised(&nodes, "nokv").await;
    assert!(
        have.iter().any(|i| i.starts_with("wasi:http/types@0.2.")),
        "{have:?}"
    );
    assert!(
        have.iter().any(|i| i.starts_with("wasi:cli/stdout@0.2.")),
        "{have:?}"
    );
    assert!(
        !have.iter().any(|i| i.starts_with("wasi:keyvalue/")),
        "{have:?}"
    );

    // The pod stays Pending; FailedScheduling names the interface.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let message = eventually(
        "a FailedScheduling event naming the interface",
        Duration::from_secs(60),
        || async {
            let list = events
                .list(&ListParams::default().fields("involvedObject.name=kv"))
                .await
                .ok()?;
            list.items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
                .filter_map(|e| e.message)
                .find(|m| m.starts_with("0/1 nodes provide"))
        },
    )
    .await;
    assert_eq!(
        message,
        format!("0/1 nodes provide {KV_STORE}. preemption: not supported.")
    );
    let p = pods.get("kv").await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    assert!(p.spec.unwrap().node_name.is_none());

    // Now a node advertises: a new pod importing keyvalue is refused, dry run or not.
    let refused = pods
        .create(&PostParams::default(), &pod("kv2", &pinned))
        .await
        .expect_err("refused");
    let kube::Error::Api(status) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status.message.contains(&format!(
            "imports {KV_STORE}, an interface no node provides"
        )),
        "{}",
        status.message
    );
    assert!(
        status
            .message
            .contains(&format!("0/1 nodes provide {KV_STORE}")),
        "{}",
        status.message
    );
    if let Some(kubectl) = tools::kubectl() {
        let yaml = serde_yaml::to_string(&pod("kv3", &pinned)).unwrap();
        let out = server
            .kubectl_stdin(
                &kubectl,
                &["apply", "--dry-run=server", "-f", "-"],
                Some(&yaml),
            )
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "imports {KV_STORE}, an interface no node provides"
            )),
            "{stderr}"
        );
    }
    // A pod of an image outside the cluster's registry is not looked up.
    pods.create(&PostParams::default(), &pod("other", "example.com/app:1"))
        .await
        .expect("not checked");

    // A node that provides keyvalue joins: the Pending pod is scheduled there.
    let _kv = Node::start(&server, "kv").expect("node starts");
    let have = advertised(&nodes, "kv").await;
    assert!(have.iter().any(|i| i == KV_STORE), "{have:?}");
    let node = eventually(
        "the pod to be scheduled",
        Duration::from_secs(60),
        || async { pods.get("kv").await.ok()?.spec?.node_name },
    )
    .await;
    assert_eq!(node, "kv");
    // And new pods importing it are admitted.
    pods.create(&PostParams::default(), &pod("kv4", &pinned))
        .await
        .expect("admitted once a node provides the interface");
    drop(registry);
}
