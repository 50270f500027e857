//! The garbage collector through custom resources on the in-process tier: a custom resource
//! owning built-in objects (the operator pattern) takes them along when deleted in the
//! background or the foreground and leaves them with `orphan`; a custom resource owned by a
//! built-in object goes with it; the objects a deleted CRD's resources owned are collected.

use std::time::Duration;

use futures::StreamExt;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_controllers::{Clock, Options, Running};
use skiff_testkit::inproc::{InProcess, wait_deleted, wait_object};

const DEADLINE: Duration = Duration::from_secs(30);

fn collector(client: &Client) -> Running {
    let mut opts = Options {
        scheduler: false,
        clock: Clock::real(),
        ..Options::default()
    };
    opts.select("garbagecollector").expect("known controller");
    skiff_controllers::start(client.clone(), opts)
}

fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).expect("a valid object literal")
}

fn widgets() -> ApiResource {
    ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

/// Creates the Widget CRD (namespaced, `example.com/v1`) and waits until it is Established.
async fn widget_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = from_json(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {
                "openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                }},
            }}],
        },
    }));
    crds.create(&PostParams::default(), &crd).await.unwrap();
    wait_object(&crds, "widgets.example.com", DEADLINE, |c| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
    })
    .await
    .unwrap();
}

/// Waits until the custom resource `name` is gone, watching it (`wait_deleted` wants a typed
/// kind).
async fn wait_gone(api: &Api<DynamicObject>, name: &str) {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api.clone(), cfg).boxed();
    let gone = async {
        let mut present = false;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Init) => present = false,
                Ok(watcher::Event::InitApply(_) | watcher::Event::Apply(_)) => present = true,
                Ok(watcher::Event::InitDone) if !present => return,
                Ok(watcher::Event::Delete(_)) => return,
                _ => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, gone)
        .await
        .unwrap_or_else(|_| panic!("widget {name} still there after {DEADLINE:?}"));
}

async fn widget(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    let w = DynamicObject::new(name, &widgets()).data(json!({"spec": {"size": 1}}));
    api.create(&PostParams::default(), &w).await.unwrap()
}

fn owner_ref(api_version: &str, kind: &str, name: &str, uid: Option<String>) -> serde_json::Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
        "controller": true, "blockOwnerDeletion": true})
}

async fn config_map(api: &Api<ConfigMap>, name: &str, owner: serde_json::Value) {
    let cm: ConfigMap = from_json(json!({
        "metadata": {"name": name, "ownerReferences": [owner]},
        "data": {"k": "v"},
    }));
    api.create(&PostParams::default(), &cm).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_custom_resource_collects_or_orphans_what_it_owns() {
    let api = InProcess::start().await.unwrap();
    let _c = collector(&api.client);
    widget_crd(&api.client).await;
    let ws: Api<DynamicObject> = Api::namespaced_with(api.client.clone(), "default", &widgets());
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), "default");

    // Background: the owner goes at once, its dependent after it.
    let w = widget(&ws, "bg").await;
    let owner = owner_ref("example.com/v1", "Widget", "bg", w.metadata.uid.clone());
    config_map(&cms, "bg-config", owner).await;
    ws.delete("bg", &DeleteParams::background()).await.unwrap();
    wait_deleted(&cms, "bg-config", DEADLINE).await.unwrap();

    // Foreground: the owner waits for its blocking dependent.
    let w = widget(&ws, "fg").await;
    let owner = owner_ref("example.com/v1", "Widget", "fg", w.metadata.uid.clone());
    config_map(&cms, "fg-config", owner).await;
    ws.delete("fg", &DeleteParams::foreground()).await.unwrap();
    wait_gone(&ws, "fg").await;
    assert!(
        cms.get_opt("fg-config").await.unwrap().is_none(),
        "a blocking dependent outlived its owner's foreground deletion"
    );

    // Orphan: the dependent stays, without the reference.
    let w = widget(&ws, "or").await;
    let owner = owner_ref("example.com/v1", "Widget", "or", w.metadata.uid.clone());
    config_map(&cms, "or-config", owner).await;
    ws.delete("or", &DeleteParams::orphan()).await.unwrap();
    wait_gone(&ws, "or").await;
    let kept = wait_object(&cms, "or-config", DEADLINE, |c| {
        c.metadata
            .owner_references
            .as_ref()
            .is_none_or(Vec::is_empty)
    })
    .await
    .unwrap();
    assert!(kept.metadata.deletion_timestamp.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_resource_goes_with_its_owner() {
    let api = InProcess::start().await.unwrap();
    let _c = collector(&api.client);
    widget_crd(&api.client).await;
    let ws: Api<DynamicObject> = Api::namespaced_with(api.client.clone(), "default", &widgets());
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), "default");
    let cm: ConfigMap = from_json(json!({"metadata": {"name": "parent"}}));
    let parent = cms.create(&PostParams::default(), &cm).await.unwrap();
    let mut child = DynamicObject::new("child", &widgets()).data(json!({"spec": {"size": 2}}));
    child.metadata.owner_references = Some(vec![from_json(owner_ref(
        "v1",
        "ConfigMap",
        "parent",
        parent.metadata.uid.clone(),
    ))]);
    let child = ws.create(&PostParams::default(), &child).await.unwrap();
    assert_eq!(child.name_any(), "child");
    cms.delete("parent", &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&ws, "child").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_crd_collects_what_its_objects_owned() {
    let api = InProcess::start().await.unwrap();
    let _c = collector(&api.client);
    widget_crd(&api.client).await;
    let ws: Api<DynamicObject> = Api::namespaced_with(api.client.clone(), "default", &widgets());
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), "default");
    let w = widget(&ws, "w").await;
    let owner = owner_ref("example.com/v1", "Widget", "w", w.metadata.uid.clone());
    config_map(&cms, "w-config", owner).await;
    // The CRD's cleanup finalizer removes its objects; their dependents follow.
    let crds: Api<CustomResourceDefinition> = Api::all(api.client.clone());
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted(&crds, "widgets.example.com", DEADLINE)
        .await
        .unwrap();
    wait_deleted(&cms, "w-config", DEADLINE).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_scoped_custom_owner_takes_its_namespaced_dependents() {
    let api = InProcess::start().await.unwrap();
    let _c = collector(&api.client);
    let crds: Api<CustomResourceDefinition> = Api::all(api.client.clone());
    let crd: CustomResourceDefinition = from_json(json!({
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {
                "openAPIV3Schema": {"type": "object"},
            }}],
        },
    }));
    crds.create(&PostParams::default(), &crd).await.unwrap();
    wait_object(&crds, "gadgets.example.com", DEADLINE, |c| {
        c.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
    })
    .await
    .unwrap();
    let gadgets = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    let gs: Api<DynamicObject> = Api::all_with(api.client.clone(), &gadgets);
    let g = gs
        .create(&PostParams::default(), &DynamicObject::new("g", &gadgets))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(api.client.clone(), "default");
    let owner = owner_ref("example.com/v1", "Gadget", "g", g.metadata.uid.clone());
    config_map(&cms, "g-config", owner).await;
    gs.delete("g", &DeleteParams::background()).await.unwrap();
    wait_deleted(&cms, "g-config", DEADLINE).await.unwrap();
}
