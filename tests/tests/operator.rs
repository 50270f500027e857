//! The operator pattern end to end: a controller written here with kube-runtime's
//! `Controller` and kube's `#[derive(CustomResource)]` installs its CRD from
//! `CustomResourceExt::crd()` into a real `skiff server`, reconciles each `Greeting` into a
//! ConfigMap it owns and reports through the status subresource; deleting a Greeting
//! garbage-collects its ConfigMap.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_tests::{Server, wait_object, wait_object_map};

/// How long a reconcile may take to show.
const WAIT: Duration = Duration::from_secs(30);

/// The field manager of the controller's writes.
const MANAGER: &str = "greeting-controller";

/// What a Greeting asks for: a ConfigMap carrying `message`, `replicas` times.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "samples.skiff.dev",
    version = "v1",
    kind = "Greeting",
    namespaced,
    status = "GreetingStatus",
    shortname = "gr",
    printcolumn(name = "Message", type_ = "string", json_path = ".spec.message")
)]
#[serde(rename_all = "camelCase")]
pub struct GreetingSpec {
    message: String,
    replicas: i32,
}

/// What the controller reports.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GreetingStatus {
    config_map: Option<String>,
    observed_generation: Option<i64>,
}

/// The ConfigMap a Greeting owns.
fn config_map_name(g: &Greeting) -> String {
    format!("greeting-{}", g.name_any())
}

/// Server-side applies the Greeting's ConfigMap (owned by it), then its status.
async fn reconcile(g: Arc<Greeting>, client: Arc<kube::Client>) -> Result<Action, kube::Error> {
    let ns = g.namespace().unwrap_or_else(|| "default".into());
    let name = config_map_name(&g);
    let owner = g
        .controller_owner_ref(&())
        .expect("a Greeting read from the API has a name and uid");
    let text = vec![g.spec.message.as_str(); g.spec.replicas.max(0) as usize].join(" ");
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": [owner]},
        "data": {"message": g.spec.message, "text": text},
    });
    let pp = PatchParams::apply(MANAGER).force();
    Api::<ConfigMap>::namespaced((*client).clone(), &ns)
        .patch(&name, &pp, &Patch::Apply(&cm))
        .await?;
    let status = json!({
        "status": {"configMap": name, "observedGeneration": g.metadata.generation},
    });
    Api::<Greeting>::namespaced((*client).clone(), &ns)
        .patch_status(
            &g.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_g: Arc<Greeting>, _e: &kube::Error, _client: Arc<kube::Client>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kube_runtime_controller_reconciles_a_derived_custom_resource() {
    let server = Server::start().expect("server starts");
    let client = server.client().await.expect("a client");

    // The CRD, as the derive generates it.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Greeting::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("greetings.samples.skiff.dev")
    );
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("the derived CRD is accepted");
    wait_object(
        &crds,
        "greetings.samples.skiff.dev",
        "Established",
        WAIT,
        |c| {
            c.and_then(|c| c.status.as_ref()?.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        },
    )
    .await
    .expect("the CRD is established");

    // The controller, for Greetings and the ConfigMaps they own.
    let greetings: Api<Greeting> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let controller = Controller::new(greetings.clone(), watcher::Config::default())
        .owns(cms.clone(), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client.clone()))
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    // A Greeting is reconciled into its ConfigMap and its status.
    let hello = Greeting::new(
        "hello",
        GreetingSpec {
            message: "hi".into(),
            replicas: 2,
        },
    );
    let created = greetings
        .create(&PostParams::default(), &hello)
        .await
        .expect("the Greeting is created");
    let uid = created.uid().expect("the server set a uid");
    assert_eq!(created.metadata.generation, Some(1));
    let cm = wait_object_map(
        &cms,
        "greeting-hello",
        "the reconciled ConfigMap",
        WAIT,
        |cm| cm.data.clone(),
    )
    .await
    .expect("the controller writes the ConfigMap");
    assert_eq!(cm["message"], "hi");
    assert_eq!(cm["text"], "hi hi");
    let owners = cms
        .get("greeting-hello")
        .await
        .expect("the ConfigMap")
        .metadata
        .owner_references
        .unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].uid, uid);
    assert_eq!(owners[0].kind, "Greeting");
    assert_eq!(owners[0].api_version, "samples.skiff.dev/v1");
    assert_eq!(owners[0].controller, Some(true));
    let observed = |generation: i64| {
        move |g: &Greeting| {
            let s = g.status.as_ref()?;
            (s.observed_generation == Some(generation)).then(|| s.clone())
        }
    };
    let status = wait_object_map(
        &greetings,
        "hello",
        "status for generation 1",
        WAIT,
        observed(1),
    )
    .await
    .expect("the controller writes the status");
    assert_eq!(status.config_map.as_deref(), Some("greeting-hello"));
    let now = greetings.get("hello").await.expect("the Greeting");
    assert_eq!(
        now.metadata.generation,
        Some(1),
        "a status write does not bump the generation"
    );

    // A spec change is reconciled again.
    let change = json!({"spec": {"message": "bonjour", "replicas": 3}});
    let changed = greetings
        .patch("hello", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .expect("the Greeting is patched");
    assert_eq!(changed.metadata.generation, Some(2));
    assert_eq!(
        changed.status.and_then(|s| s.config_map).as_deref(),
        Some("greeting-hello"),
        "a spec write keeps the status"
    );
    let text = wait_object_map(&cms, "greeting-hello", "the new message", WAIT, |cm| {
        cm.data
            .as_ref()?
            .get("text")
            .filter(|t| t.as_str() == "bonjour bonjour bonjour")
            .cloned()
    })
    .await
    .expect("the ConfigMap follows the spec");
    assert_eq!(text, "bonjour bonjour bonjour");
    wait_object_map(
        &greetings,
        "hello",
        "status for generation 2",
        WAIT,
        observed(2),
    )
    .await
    .expect("the status follows the spec");

    // The schema the derive wrote is enforced: replicas is an int32.
    let bad = json!({
        "apiVersion": "samples.skiff.dev/v1",
        "kind": "Greeting",
        "metadata": {"name": "bad"},
        "spec": {"message": "x", "replicas": "two"},
    });
    let raw = kube::core::Request::new("/apis/samples.skiff.dev/v1/namespaces/default/greetings")
        .create(
            &PostParams::default(),
            serde_json::to_vec(&bad).expect("JSON"),
        )
        .expect("a request");
    let err = client
        .request::<serde_json::Value>(raw)
        .await
        .expect_err("a string replicas is refused");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(status.message.contains("spec.replicas"), "{status:?}");
        }
        other => panic!("expected a 422, got {other:?}"),
    }

    // Deleting the Greeting garbage-collects its ConfigMap.
    greetings
        .delete("hello", &DeleteParams::default())
        .await
        .expect("the Greeting is deleted");
    wait_object(&cms, "greeting-hello", "garbage-collected", WAIT, |cm| {
        cm.is_none()
    })
    .await
    .expect("the owned ConfigMap goes with its Greeting");

    controller.abort();
    let _ = controller.await;
}
