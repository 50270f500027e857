//! The `serviceaccount` and `root-ca-cert-publisher` controllers against the in-process API:
//! every namespace gets its `default` ServiceAccount and `kube-root-ca.crt`, and gets them back
//! when they are deleted or (the ConfigMap) changed.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use skiff_controllers::{Options, Running};
use skiff_testkit::inproc::{InProcess, wait_object};

const DEADLINE: Duration = Duration::from_secs(30);
const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBcluster\n-----END CERTIFICATE-----\n";

fn controllers(client: &Client) -> Running {
    let mut opts = Options {
        scheduler: false,
        root_ca: Some(CA.to_string()),
        ..Options::default()
    };
    opts.select("serviceaccount,root-ca-cert-publisher")
        .expect("known controllers");
    skiff_controllers::start(client.clone(), opts)
}

fn has_ca(cm: &ConfigMap) -> bool {
    cm.data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .is_some_and(|ca| ca == CA)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_default_service_account_comes_back() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client);
    let accounts: Api<ServiceAccount> = Api::namespaced(api.client.clone(), "default");
    let first = wait_object(&accounts, "default", DEADLINE, |_| true)
        .await
        .expect("the default ServiceAccount is made");
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    let again = wait_object(&accounts, "default", DEADLINE, |sa| sa.uid() != first.uid())
        .await
        .expect("the default ServiceAccount comes back");
    assert_ne!(again.uid(), first.uid());

    // A new namespace gets both.
    let namespaces: Api<Namespace> = Api::all(api.client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "fresh"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let fresh: Api<ServiceAccount> = Api::namespaced(api.client.clone(), "fresh");
    wait_object(&fresh, "default", DEADLINE, |_| true)
        .await
        .expect("the new namespace's default ServiceAccount");
    let maps: Api<ConfigMap> = Api::namespaced(api.client.clone(), "fresh");
    wait_object(&maps, "kube-root-ca.crt", DEADLINE, has_ca)
        .await
        .expect("the new namespace's kube-root-ca.crt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_root_ca_is_published_repaired_and_recreated() {
    let api = InProcess::start().await.unwrap();
    let _c = controllers(&api.client);
    let maps: Api<ConfigMap> = Api::namespaced(api.client.clone(), "default");
    let first = wait_object(&maps, "kube-root-ca.crt", DEADLINE, has_ca)
        .await
        .expect("kube-root-ca.crt is published");
    let patch = serde_json::json!({"data": {"ca.crt": "tampered"}});
    maps.patch(
        "kube-root-ca.crt",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    wait_object(&maps, "kube-root-ca.crt", DEADLINE, has_ca)
        .await
        .expect("a changed kube-root-ca.crt is put back");
    maps.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .unwrap();
    wait_object(&maps, "kube-root-ca.crt", DEADLINE, |cm| {
        has_ca(cm) && cm.uid() != first.uid()
    })
    .await
    .expect("a deleted kube-root-ca.crt comes back");
}
