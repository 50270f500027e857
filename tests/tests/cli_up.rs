//! `skiff up` end to end: the one-process cluster names its API server, registry and node in its
//! ready file (the `--ready-file` contract every serving command keeps), each of them serves, and
//! SIGTERM stops it cleanly and removes the file.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node as KNode;
use kube::api::Api;
use serde_json::Value;
use skiff_tests::{client, http_get, start_up_with, wait_object};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_names_what_it_serves_in_its_ready_file() {
    let dir = tempfile::Builder::new()
        .prefix("skiff-e2e-up-")
        .tempdir()
        .unwrap();
    let ready_file = dir.path().join("up.ready");
    let (mut up, ready) = start_up_with(dir.path(), &["--node-name", "solo"]);
    let child = &mut up.0;
    let show_log = || std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    let field = |key: &str| {
        ready
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no {key:?} in the ready file {ready:?}"))
            .to_string()
    };
    assert_eq!(ready["pid"], Value::from(child.id()));
    assert!(field("apiServer").starts_with("https://127.0.0.1:"));
    assert_eq!(field("node"), "solo");
    let ingress = field("ingress");
    assert!(
        ingress.starts_with("127.0.0.1:") && !ingress.ends_with(":0"),
        "the bound ingress address: {ingress}"
    );
    assert_eq!(
        field("registryUrl"),
        format!("http://{}", field("registry"))
    );

    // The API server, with the kubeconfig named there; the node registered with it.
    let kubeconfig = std::path::PathBuf::from(field("kubeconfig"));
    let kube = client::client(&kubeconfig).await.expect("a kube client");
    wait_object(
        &Api::<KNode>::all(kube),
        "solo",
        "the node to register",
        Duration::from_secs(60),
        |n: Option<&KNode>| n.is_some(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", show_log()));

    // The registry, seeded with the samples.
    let (code, body) = http_get(
        &field("registry"),
        "/v2/samples/hello-http/tags/list",
        None,
        Duration::from_secs(30),
    )
    .expect("the registry answers");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("1.0") && body.contains("2.0"), "{body}");
    let token = std::fs::read_to_string(field("registryTokenFile")).expect("the token file");
    assert!(!token.trim().is_empty());

    // The node endpoint, which admits the API server's own credential, not the admin's.
    let endpoint = field("nodeEndpoint");
    let path = "/proxy/default/nope/8080/";
    let (code, _) = http_get(&endpoint, path, None, Duration::from_secs(30))
        .expect("the node endpoint answers");
    assert_eq!(code, 401, "no token, no access");
    let admin = client::bearer_token(&kubeconfig).expect("the kubeconfig's token");
    let (code, _) = http_get(&endpoint, path, Some(&admin), Duration::from_secs(30))
        .expect("the node endpoint answers");
    assert_eq!(code, 403, "the admin's token is refused by the node");
    let data = dir.path().join("data");
    let server = std::fs::read_to_string(data.join("pki/kubelet-client.token"))
        .expect("the server's node credential");
    let (code, _) = http_get(
        &endpoint,
        path,
        Some(server.trim()),
        Duration::from_secs(30),
    )
    .expect("the node endpoint answers");
    assert_eq!(
        code, 404,
        "the API server's credential is accepted; there is no such pod"
    );
    // The node runs on its own credential, not the admin kubeconfig.
    let node_kubeconfig =
        std::fs::read_to_string(data.join(format!("node-{}.kubeconfig", field("node"))))
            .expect("the node's kubeconfig");
    assert!(
        node_kubeconfig.contains("client-certificate-data"),
        "{node_kubeconfig}"
    );
    assert!(!node_kubeconfig.contains(admin.as_str()));

    // SIGTERM: a clean exit, and the ready file is gone.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("skiff up exits");
    assert!(status.success(), "{status}\n{}", show_log());
    assert!(
        !ready_file.exists(),
        "a clean shutdown removes the ready file"
    );
}
