//! CustomResourceDefinitions and custom resources through the router: establishing, every verb,
//! status and scale, watches, schema validation, pruning and defaults, several versions, name
//! conflicts, and the removal of a deleted CRD's objects.

use axum::http::Method;
use serde_json::{Value, json};

use super::Api;

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const CRONTABS: &str = "/apis/stable.example.com/v1/namespaces/default/crontabs";

/// A CronTab CRD: v1 (storage) and v1beta1 served, status and scale subresources, a schema with
/// a default, a pattern and a minimum, printer columns, in category `all`.
fn crontab_crd() -> Value {
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                    "image": {"type": "string"},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer"},
                    "labelSelector": {"type": "string"},
                },
            },
        },
    });
    let version = |name: &str, storage: bool| {
        json!({
            "name": name,
            "served": true,
            "storage": storage,
            "schema": {"openAPIV3Schema": schema},
            "subresources": {
                "status": {},
                "scale": {
                    "specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas",
                    "labelSelectorPath": ".status.labelSelector",
                },
            },
            "additionalPrinterColumns": [
                {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            ],
        })
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {
                "plural": "crontabs",
                "singular": "crontab",
                "kind": "CronTab",
                "shortNames": ["ct"],
                "categories": ["all"],
            },
            "versions": [version("v1", true), version("v1beta1", false)],
        },
    })
}

fn crontab(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": name, "labels": labels},
        "spec": {"cronSpec": "* * * * */5", "image": "my-cron-image", "replicas": 1}})
}

fn condition<'a>(crd: &'a Value, type_: &str) -> Option<&'a Value> {
    crd["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

async fn create_crd(api: &Api, crd: Value) -> Value {
    let (code, body) = api.call(Method::POST, CRDS, Some(crd)).await;
    assert_eq!(code, 201, "{body}");
    body
}

#[tokio::test]
async fn a_created_crd_is_established_and_serves_its_kind() {
    let api = Api::new().await;
    let crd = create_crd(&api, crontab_crd()).await;
    assert_eq!(condition(&crd, "Established").unwrap()["status"], "True");
    assert_eq!(condition(&crd, "NamesAccepted").unwrap()["status"], "True");
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "CronTab");
    assert_eq!(crd["status"]["acceptedNames"]["listKind"], "CronTabList");
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    assert_eq!(
        crd["metadata"]["finalizers"],
        json!(["customresourcecleanup.apiextensions.k8s.io"])
    );
    assert_eq!(crd["metadata"]["generation"], 1);

    let (code, body) = api
        .call(
            Method::POST,
            CRONTABS,
            Some(crontab("a", json!({"app": "x"}))),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["metadata"]["generation"], 1);
    assert_eq!(body["apiVersion"], "stable.example.com/v1");
    let (code, body) = api.call(Method::GET, &format!("{CRONTABS}/a"), None).await;
    assert_eq!(
        (code, &body["spec"]["image"]),
        (200, &json!("my-cron-image"))
    );
    let (code, body) = api.call(Method::GET, CRONTABS, None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "CronTabList");
    assert_eq!(body["items"][0]["metadata"]["name"], "a");
    // All namespaces, and the same object through the other served version.
    let (code, body) = api
        .call(Method::GET, "/apis/stable.example.com/v1/crontabs", None)
        .await;
    assert_eq!(
        (code, body["items"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let (code, body) = api
        .call(
            Method::GET,
            "/apis/stable.example.com/v1beta1/namespaces/default/crontabs/a",
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["apiVersion"], "stable.example.com/v1beta1");
    assert_eq!(body["spec"]["cronSpec"], "* * * * */5");
    // An unknown resource in the group is still a 404.
    let (code, _) = api
        .call(
            Method::GET,
            "/apis/stable.example.com/v1/namespaces/default/others",
            None,
        )
        .await;
    assert_eq!(code, 404);
}
