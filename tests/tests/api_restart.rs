//! Restarting `skiff server` on the same data directory keeps every object, the CA and the admin
//! token; SIGTERM shuts it down cleanly.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;
use skiff_tests::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_objects_ca_and_token() {
    let mut server = Server::start().expect("server starts");
    let token_before = server.token().expect("the kubeconfig has a token");
    let ca_before = std::fs::read_to_string(server.dir.join("pki/ca.crt")).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    for i in 0..20 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("keep-{i}")}, "data": {"i": i.to_string()}}),
        )
        .unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let status = server.stop().expect("SIGTERM stops the server");
    assert!(status.success(), "clean shutdown exits 0, got {status}");

    server.restart().expect("restarts on the same directory");
    assert_eq!(
        std::fs::read_to_string(server.dir.join("pki/ca.crt")).unwrap(),
        ca_before,
        "same CA"
    );
    assert_eq!(
        server.token().expect("the kubeconfig has a token"),
        token_before,
        "same admin token"
    );

    // The old kubeconfig (same CA, same token) still works, and every object is there.
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    for i in 0..20 {
        let cm = api
            .get(&format!("keep-{i}"))
            .await
            .expect("object kept across restart");
        assert_eq!(cm.data.unwrap()["i"], i.to_string());
    }
}
