//! CustomResourceDefinitions and custom resources through the router: establishing, every verb,
//! status and scale, watches, schema validation, pruning and defaults, several versions, name
//! conflicts, and the removal of a deleted CRD's objects.

use axum::http::Method;
use futures::StreamExt;
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
    // Written through v1beta1, stored as v1 (the storage version).
    let mut b = crontab("b", json!({}));
    b["apiVersion"] = json!("stable.example.com/v1beta1");
    let (code, body) = api
        .call(
            Method::POST,
            "/apis/stable.example.com/v1beta1/namespaces/default/crontabs",
            Some(b),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["apiVersion"], "stable.example.com/v1beta1");
    let stored = api
        .store
        .get("/stable.example.com/crontabs/default/b")
        .await
        .unwrap()
        .expect("stored");
    let stored: Value = serde_json::from_slice(&stored.value).unwrap();
    assert_eq!(stored["apiVersion"], "stable.example.com/v1");
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

fn names_of(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn custom_resources_take_every_verb() {
    let api = Api::new().await;
    create_crd(&api, crontab_crd()).await;
    for (name, tier) in [("a", "front"), ("b", "back"), ("c", "front")] {
        let (code, body) = api
            .call(
                Method::POST,
                CRONTABS,
                Some(crontab(name, json!({"tier": tier}))),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    // Label and field selectors.
    let (_, list) = api
        .call(
            Method::GET,
            &format!("{CRONTABS}?labelSelector=tier%3Dfront"),
            None,
        )
        .await;
    assert_eq!(names_of(&list), ["a", "c"]);
    let (_, list) = api
        .call(
            Method::GET,
            &format!("{CRONTABS}?fieldSelector=metadata.name%3Db"),
            None,
        )
        .await;
    assert_eq!(names_of(&list), ["b"]);
    let (code, _) = api
        .call(
            Method::GET,
            &format!("{CRONTABS}?fieldSelector=spec.image%3Dx"),
            None,
        )
        .await;
    assert_eq!(code, 400, "only metadata fields select custom resources");

    // Update, JSON patch, merge patch; strategic merge patch is refused.
    let (_, mut a) = api.call(Method::GET, &format!("{CRONTABS}/a"), None).await;
    a["spec"]["image"] = json!("v2");
    let (code, body) = api
        .call(Method::PUT, &format!("{CRONTABS}/a"), Some(a))
        .await;
    assert_eq!(
        (code, &body["spec"]["image"]),
        (200, &json!("v2")),
        "{body}"
    );
    assert_eq!(body["metadata"]["generation"], 2);
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{CRONTABS}/a"),
            "application/json-patch+json",
            "application/json",
            Some(json!([{"op": "replace", "path": "/spec/image", "value": "v3"}])),
        )
        .await;
    assert_eq!(
        (code, &body["spec"]["image"]),
        (200, &json!("v3")),
        "{body}"
    );
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{CRONTABS}/a"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"metadata": {"labels": {"patched": "yes"}}})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["metadata"]["labels"]["patched"], "yes");
    assert_eq!(
        body["metadata"]["generation"], 3,
        "metadata changes keep the generation"
    );
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{CRONTABS}/a"),
            "application/strategic-merge-patch+json",
            "application/json",
            Some(json!({"spec": {"image": "v4"}})),
        )
        .await;
    assert_eq!(code, 415, "{body}");
    assert_eq!(body["reason"], "UnsupportedMediaType");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        "{body}"
    );
    // Server-side apply creates and then updates, with its managed fields.
    let applied = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": "d"}, "spec": {"image": "applied", "replicas": 2}});
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{CRONTABS}/d?fieldManager=test"),
            "application/apply-patch+yaml",
            "application/json",
            Some(applied),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["metadata"]["managedFields"][0]["manager"], "test");
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{CRONTABS}/d?fieldManager=test"),
            "application/apply-patch+yaml",
            "application/json",
            Some(
                json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
                "metadata": {"name": "d"}, "spec": {"image": "applied2"}}),
            ),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["image"], "applied2");
    assert!(
        body["spec"].get("replicas").is_none(),
        "a field the manager dropped goes: {body}"
    );

    // Protobuf bodies are refused.
    let (code, _) = api
        .call_with(
            Method::POST,
            CRONTABS,
            "application/vnd.kubernetes.protobuf",
            "application/json",
            Some(crontab("e", json!({}))),
        )
        .await;
    assert_eq!(code, 415);

    // Delete one, then the collection by label.
    let (code, _) = api
        .call(Method::DELETE, &format!("{CRONTABS}/d"), None)
        .await;
    assert_eq!(code, 200);
    let (code, _) = api.call(Method::GET, &format!("{CRONTABS}/d"), None).await;
    assert_eq!(code, 404);
    let (code, body) = api
        .call(
            Method::DELETE,
            &format!("{CRONTABS}?labelSelector=tier%3Dfront"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (_, list) = api.call(Method::GET, CRONTABS, None).await;
    assert_eq!(names_of(&list), ["b"]);
}

#[tokio::test]
async fn status_and_scale_subresources() {
    let api = Api::new().await;
    create_crd(&api, crontab_crd()).await;
    let (code, _) = api
        .call(Method::POST, CRONTABS, Some(crontab("a", json!({}))))
        .await;
    assert_eq!(code, 201);
    // A main-resource write ignores status; a status write ignores the spec.
    let (_, mut a) = api.call(Method::GET, &format!("{CRONTABS}/a"), None).await;
    a["status"] = json!({"replicas": 7});
    let (code, body) = api
        .call(Method::PUT, &format!("{CRONTABS}/a"), Some(a.clone()))
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.get("status")
            .is_none_or(|s| s.get("replicas").is_none()),
        "{body}"
    );
    assert_eq!(body["metadata"]["generation"], 1);
    let mut a = body;
    a["status"] = json!({"replicas": 1, "labelSelector": "app=cron"});
    a["spec"]["image"] = json!("ignored");
    let (code, body) = api
        .call(Method::PUT, &format!("{CRONTABS}/a/status"), Some(a))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"]["replicas"], 1);
    assert_eq!(body["spec"]["image"], "my-cron-image");
    assert_eq!(
        body["metadata"]["generation"], 1,
        "status writes keep the generation"
    );

    let (code, scale) = api
        .call(Method::GET, &format!("{CRONTABS}/a/scale"), None)
        .await;
    assert_eq!(code, 200, "{scale}");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=cron");
    let (code, scale) = api
        .call_with(
            Method::PATCH,
            &format!("{CRONTABS}/a/scale"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"spec": {"replicas": 3}})),
        )
        .await;
    assert_eq!(
        (code, &scale["spec"]["replicas"]),
        (200, &json!(3)),
        "{scale}"
    );
    let (_, a) = api.call(Method::GET, &format!("{CRONTABS}/a"), None).await;
    assert_eq!(a["spec"]["replicas"], 3);
    assert_eq!(a["metadata"]["generation"], 2);
    let mut scale = scale;
    scale["spec"]["replicas"] = json!(5);
    let (code, scale) = api
        .call(Method::PUT, &format!("{CRONTABS}/a/scale"), Some(scale))
        .await;
    assert_eq!(
        (code, &scale["spec"]["replicas"]),
        (200, &json!(5)),
        "{scale}"
    );
}

#[tokio::test]
async fn a_watch_with_selectors_sees_add_update_delete() {
    let api = Api::new().await;
    create_crd(&api, crontab_crd()).await;
    let mut events = Box::pin(
        api.watch(&format!(
            "{CRONTABS}?watch=1&labelSelector=app%3Dx&fieldSelector=metadata.namespace%3Ddefault"
        ))
        .await,
    );
    api.call(
        Method::POST,
        CRONTABS,
        Some(crontab("other", json!({"app": "y"}))),
    )
    .await;
    api.call(
        Method::POST,
        CRONTABS,
        Some(crontab("a", json!({"app": "x"}))),
    )
    .await;
    api.call_with(
        Method::PATCH,
        &format!("{CRONTABS}/a"),
        "application/merge-patch+json",
        "application/json",
        Some(json!({"spec": {"image": "v2"}})),
    )
    .await;
    api.call(Method::DELETE, &format!("{CRONTABS}/a"), None)
        .await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = events.next().await.expect("the watch goes on");
        assert_eq!(event["object"]["metadata"]["name"], "a", "{event}");
        assert_eq!(event["object"]["kind"], "CronTab");
        seen.push(event["type"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(seen, ["ADDED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn discovery_lists_custom_groups_and_resources() {
    let api = Api::new().await;
    create_crd(&api, crontab_crd()).await;
    let (_, groups) = api.call(Method::GET, "/apis", None).await;
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "stable.example.com")
        .cloned()
        .expect("the CRD's group is listed");
    assert_eq!(group["preferredVersion"]["version"], "v1");
    assert_eq!(
        group["versions"],
        json!([{"groupVersion": "stable.example.com/v1", "version": "v1"},
            {"groupVersion": "stable.example.com/v1beta1", "version": "v1beta1"}])
    );
    assert_eq!(
        groups["groups"].as_array().unwrap().last().unwrap()["name"],
        "stable.example.com"
    );
    let (code, _) = api
        .call(Method::GET, "/apis/stable.example.com", None)
        .await;
    assert_eq!(code, 200);
    let (code, list) = api
        .call(Method::GET, "/apis/stable.example.com/v1", None)
        .await;
    assert_eq!(code, 200);
    let resources = list["resources"].as_array().unwrap();
    let names: Vec<&str> = resources
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["crontabs", "crontabs/scale", "crontabs/status"]);
    assert_eq!(resources[0]["shortNames"], json!(["ct"]));
    assert_eq!(resources[0]["categories"], json!(["all"]));
    assert_eq!(resources[0]["kind"], "CronTab");
    assert!(resources[0]["storageVersionHash"].is_string());
    let (code, crd_list) = api
        .call(Method::GET, "/apis/apiextensions.k8s.io/v1", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        crd_list["resources"][0]["shortNames"],
        json!(["crd", "crds"])
    );
    let (code, agg) = api
        .call_with(
            Method::GET,
            "/apis",
            "application/json",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            None,
        )
        .await;
    assert_eq!(code, 200);
    let item = agg["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "stable.example.com")
        .cloned()
        .expect("aggregated discovery lists the CRD's group");
    assert_eq!(item["versions"][0]["version"], "v1");
    assert_eq!(item["versions"][0]["resources"][0]["resource"], "crontabs");
}

#[tokio::test]
async fn a_name_another_crd_accepted_is_refused_by_the_naming_rules() {
    let api = Api::new().await;
    create_crd(&api, crontab_crd()).await;
    let mut other = crontab_crd();
    other["metadata"]["name"] = json!("crontabs2.stable.example.com");
    other["spec"]["names"] =
        json!({"plural": "crontabs2", "kind": "CronTab2", "shortNames": ["ct"]});
    let crd = create_crd(&api, other).await;
    let accepted = condition(&crd, "NamesAccepted").unwrap();
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "NameConflict");
    assert_eq!(accepted["message"], "\"ct\" is already in use");
    assert_eq!(condition(&crd, "Established").unwrap()["status"], "False");
    let (code, _) = api
        .call(
            Method::GET,
            "/apis/stable.example.com/v1/namespaces/default/crontabs2",
            None,
        )
        .await;
    assert_eq!(code, 404, "a CRD that is not established serves nothing");
}

/// Waits until the CRD is gone from the store.
async fn wait_crd_gone(api: &Api, name: &str) {
    let (_, list) = api.call(Method::GET, CRDS, None).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    if !names_of(&list).iter().any(|n| n == name) {
        return;
    }
    let mut events = Box::pin(
        api.watch(&format!("{CRDS}?watch=1&resourceVersion={rv}"))
            .await,
    );
    let wait = async {
        while let Some(event) = events.next().await {
            if event["type"] == "DELETED" && event["object"]["metadata"]["name"] == name {
                return;
            }
        }
        panic!("the watch ended before {name} was deleted");
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), wait)
        .await
        .expect("the CRD is removed");
}

#[tokio::test]
async fn deleting_a_crd_removes_its_objects_then_itself() {
    let api = Api::new().await;
    create_crd(&api, crontab_crd()).await;
    for ns in ["default", "other"] {
        let path = format!("/apis/stable.example.com/v1/namespaces/{ns}/crontabs");
        let (code, body) = api
            .call(Method::POST, &path, Some(crontab("a", json!({}))))
            .await;
        assert_eq!(code, 201, "{body}");
    }
    // An object with a finalizer holds the CRD until the finalizer goes.
    let mut held = crontab("held", json!({}));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let (code, _) = api.call(Method::POST, CRONTABS, Some(held)).await;
    assert_eq!(code, 201);

    let mut objects = Box::pin(
        api.watch("/apis/stable.example.com/v1/crontabs?watch=1")
            .await,
    );
    let (code, crd) = api
        .call(
            Method::DELETE,
            &format!("{CRDS}/crontabs.stable.example.com"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{crd}");
    assert!(crd["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(condition(&crd, "Terminating").unwrap()["status"], "True");
    // Creates are refused while the CRD terminates.
    let (code, body) = api
        .call(Method::POST, CRONTABS, Some(crontab("late", json!({}))))
        .await;
    assert_eq!(code, 405, "{body}");
    assert_eq!(
        body["message"],
        "create not allowed while custom resource definition is terminating"
    );
    // The two plain objects are deleted; the held one is marked.
    let mut deleted = 0;
    let mut marked = false;
    while deleted < 2 || !marked {
        let event = objects.next().await.expect("the watch goes on");
        match event["type"].as_str() {
            Some("DELETED") => deleted += 1,
            Some("MODIFIED") if event["object"]["metadata"]["name"] == "held" => {
                marked = event["object"]["metadata"]["deletionTimestamp"].is_string();
            }
            _ => {}
        }
    }
    let (code, _) = api
        .call(
            Method::GET,
            &format!("{CRDS}/crontabs.stable.example.com"),
            None,
        )
        .await;
    assert_eq!(code, 200, "the CRD waits for the held object");
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{CRONTABS}/held"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    wait_crd_gone(&api, "crontabs.stable.example.com").await;
    let (code, _) = api.call(Method::GET, CRONTABS, None).await;
    assert_eq!(code, 404, "the kind is no longer served");

    // Created again, it starts empty.
    create_crd(&api, crontab_crd()).await;
    let (code, list) = api
        .call(Method::GET, "/apis/stable.example.com/v1/crontabs", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(names_of(&list), Vec::<String>::new());
}

#[tokio::test]
async fn a_second_server_over_the_store_serves_the_crd() {
    let api = Api::new().await;
    create_crd(&api, crontab_crd()).await;
    let (code, _) = api
        .call(Method::POST, CRONTABS, Some(crontab("a", json!({}))))
        .await;
    assert_eq!(code, 201);
    // A server started afterwards over the same store loads the CRD before its first answer.
    let second = api.second_server();
    let (code, body) = second
        .call(Method::GET, &format!("{CRONTABS}/a"), None)
        .await;
    assert_eq!(code, 200, "{body}");
}

impl Api {
    /// Another API server over the same store.
    fn second_server(&self) -> Api {
        self.second_server_with_state().0
    }

    /// Another API server over the same store, and its state.
    fn second_server_with_state(&self) -> (Api, std::sync::Arc<skiff_api::AppState>) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let state = std::sync::Arc::new(
            skiff_api::AppState::new(
                self.store.clone(),
                vec![(super::TOKEN.into(), skiff_api::UserInfo::admin("admin"))],
            )
            .with_shutdown(rx),
        );
        let api = Api {
            router: skiff_api::app(state.clone()),
            store: self.store.clone(),
            _shutdown: tx,
        };
        (api, state)
    }
}

#[tokio::test]
async fn a_running_server_follows_crds_written_by_another() {
    let api = Api::new().await;
    let (second, state) = api.second_server_with_state();
    let (code, _) = second.call(Method::GET, CRONTABS, None).await;
    assert_eq!(code, 404, "no CRD yet");
    let crd = create_crd(&api, crontab_crd()).await;
    let rv: u64 = crd["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("a resourceVersion");
    tokio::time::timeout(std::time::Duration::from_secs(60), state.crds.synced(rv))
        .await
        .expect("the second server sees the CRD");
    let (code, body) = second
        .call(Method::POST, CRONTABS, Some(crontab("a", json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(state.crds.kinds().len(), 2, "both served versions");
    assert!(
        state
            .crds
            .find("stable.example.com", "v1beta1", "crontabs")
            .is_some()
    );
    assert_eq!(
        state
            .crds
            .find_by_plural("stable.example.com", "ct")
            .map(|k| k.version),
        Some("v1")
    );
}

#[tokio::test]
async fn the_schema_validates_prunes_and_defaults() {
    let api = Api::new().await;
    create_crd(&api, crontab_crd()).await;
    // Invalid: 422 naming the schema path.
    let mut bad = crontab("bad", json!({}));
    bad["spec"]["replicas"] = json!(20);
    let (code, body) = api.call(Method::POST, CRONTABS, Some(bad)).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(
        body["details"]["causes"][0]["field"], "spec.replicas",
        "{body}"
    );
    let mut bad = crontab("bad", json!({}));
    bad["spec"]["cronSpec"] = json!("not a schedule");
    let (code, body) = api.call(Method::POST, CRONTABS, Some(bad)).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["field"], "spec.cronSpec",
        "{body}"
    );
    // Unknown fields are pruned.
    let mut extra = crontab("extra", json!({}));
    extra["spec"]["unknown"] = json!("dropped");
    extra["other"] = json!(1);
    let (code, body) = api.call(Method::POST, CRONTABS, Some(extra)).await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"].get("unknown").is_none(), "{body}");
    assert!(body.get("other").is_none(), "{body}");
    let (_, body) = api
        .call(Method::GET, &format!("{CRONTABS}/extra"), None)
        .await;
    assert!(body["spec"].get("unknown").is_none(), "{body}");

    // A default added later: applied on create, and when reading objects stored before it.
    let (_, mut crd) = api
        .call(
            Method::GET,
            &format!("{CRDS}/crontabs.stable.example.com"),
            None,
        )
        .await;
    for v in crd["spec"]["versions"].as_array_mut().unwrap() {
        v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["image"]["default"] =
            json!("default-image");
    }
    let mut old = crontab("old", json!({}));
    old["spec"].as_object_mut().unwrap().remove("image");
    let (code, body) = api.call(Method::POST, CRONTABS, Some(old)).await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"].get("image").is_none(), "{body}");
    let (code, body) = api
        .call(
            Method::PUT,
            &format!("{CRDS}/crontabs.stable.example.com"),
            Some(crd),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["metadata"]["generation"], 2);
    let (_, body) = api
        .call(Method::GET, &format!("{CRONTABS}/old"), None)
        .await;
    assert_eq!(
        body["spec"]["image"], "default-image",
        "default on read: {body}"
    );
    let (_, list) = api.call(Method::GET, CRONTABS, None).await;
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "old")
        .cloned()
        .unwrap();
    assert_eq!(
        listed["spec"]["image"], "default-image",
        "default on list: {listed}"
    );
    let mut new = crontab("new", json!({}));
    new["spec"].as_object_mut().unwrap().remove("image");
    let (code, body) = api.call(Method::POST, CRONTABS, Some(new)).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["spec"]["image"], "default-image",
        "default on create: {body}"
    );
}

#[tokio::test]
async fn invalid_crds_are_refused() {
    let api = Api::new().await;
    // CEL validation rules are not supported.
    let mut cel = crontab_crd();
    for v in cel["spec"]["versions"].as_array_mut().unwrap() {
        v["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] =
            json!([{"rule": "self.replicas <= 5"}]);
    }
    let (code, body) = api.call(Method::POST, CRDS, Some(cel)).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("x-kubernetes-validations"),
        "{body}"
    );
    // The name must be plural.group.
    let mut misnamed = crontab_crd();
    misnamed["metadata"]["name"] = json!("other.stable.example.com");
    let (code, body) = api.call(Method::POST, CRDS, Some(misnamed)).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
    let (_, list) = api.call(Method::GET, CRDS, None).await;
    assert_eq!(names_of(&list), Vec::<String>::new());
}

#[tokio::test]
async fn tables_of_custom_resources_show_the_printer_columns() {
    let api = Api::new().await;
    create_crd(&api, crontab_crd()).await;
    api.call(Method::POST, CRONTABS, Some(crontab("a", json!({}))))
        .await;
    let (code, table) = api
        .call_with(
            Method::GET,
            CRONTABS,
            "application/json",
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            None,
        )
        .await;
    assert_eq!(code, 200, "{table}");
    let headers: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    // Columns of their own replace the default Age column, as in Kubernetes.
    assert_eq!(headers, ["Name", "Spec", "Replicas"]);
    assert_eq!(table["rows"][0]["cells"][1], "* * * * */5");
    assert_eq!(table["rows"][0]["cells"][2], 1);
}

#[tokio::test]
async fn cluster_scoped_custom_resources() {
    let api = Api::new().await;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusterthings.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "clusterthings", "kind": "ClusterThing"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    });
    let crd = create_crd(&api, crd).await;
    assert_eq!(crd["status"]["acceptedNames"]["singular"], "clusterthing");
    let path = "/apis/example.com/v1alpha1/clusterthings";
    let thing = json!({"apiVersion": "example.com/v1alpha1", "kind": "ClusterThing",
        "metadata": {"name": "one"}, "anything": {"goes": [1, 2]}});
    let (code, body) = api.call(Method::POST, path, Some(thing)).await;
    assert_eq!(code, 201, "{body}");
    assert!(body["metadata"].get("namespace").is_none(), "{body}");
    assert_eq!(
        body["anything"]["goes"],
        json!([1, 2]),
        "kept by preserve-unknown-fields"
    );
    let (code, body) = api.call(Method::GET, &format!("{path}/one"), None).await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = api
        .call(
            Method::GET,
            "/apis/example.com/v1alpha1/namespaces/default/clusterthings/one",
            None,
        )
        .await;
    assert_eq!(code, 404, "a cluster-scoped kind has no namespaced path");
    let (_, list) = api
        .call(Method::GET, "/apis/example.com/v1alpha1", None)
        .await;
    assert_eq!(list["resources"][0]["namespaced"], false);
}

#[tokio::test]
async fn names_freed_by_a_deleted_crd_are_accepted() {
    let api = Api::new().await;
    create_crd(&api, crontab_crd()).await;
    let mut other = crontab_crd();
    other["metadata"]["name"] = json!("crontabs2.stable.example.com");
    other["spec"]["names"] =
        json!({"plural": "crontabs2", "kind": "CronTab2", "shortNames": ["ct"]});
    let crd = create_crd(&api, other).await;
    assert_eq!(condition(&crd, "NamesAccepted").unwrap()["status"], "False");
    let rv = crd["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut events = Box::pin(
        api.watch(&format!("{CRDS}?watch=1&resourceVersion={rv}"))
            .await,
    );
    let (code, _) = api
        .call(
            Method::DELETE,
            &format!("{CRDS}/crontabs.stable.example.com"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let wait = async {
        while let Some(event) = events.next().await {
            let obj = &event["object"];
            if obj["metadata"]["name"] == "crontabs2.stable.example.com"
                && condition(obj, "Established").is_some_and(|c| c["status"] == "True")
            {
                return obj.clone();
            }
        }
        panic!("the watch ended");
    };
    let crd = tokio::time::timeout(std::time::Duration::from_secs(60), wait)
        .await
        .expect("the names are accepted");
    assert_eq!(condition(&crd, "NamesAccepted").unwrap()["status"], "True");
    let (code, _) = api
        .call(
            Method::GET,
            "/apis/stable.example.com/v1/namespaces/default/crontabs2",
            None,
        )
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn a_crd_update_changes_what_is_served() {
    let api = Api::new().await;
    let crd = create_crd(&api, crontab_crd()).await;
    // Stop serving v1beta1.
    let mut crd = crd;
    crd["spec"]["versions"][1]["served"] = json!(false);
    let (code, body) = api
        .call(
            Method::PUT,
            &format!("{CRDS}/crontabs.stable.example.com"),
            Some(crd),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = api
        .call(
            Method::GET,
            "/apis/stable.example.com/v1beta1/namespaces/default/crontabs",
            None,
        )
        .await;
    assert_eq!(code, 404, "a version no longer served");
    let (code, _) = api.call(Method::GET, CRONTABS, None).await;
    assert_eq!(code, 200);
    let (_, group) = api
        .call(Method::GET, "/apis/stable.example.com", None)
        .await;
    assert_eq!(
        group["versions"],
        json!([{"groupVersion": "stable.example.com/v1", "version": "v1"}])
    );
}

#[tokio::test]
async fn without_a_status_subresource_status_is_content() {
    let api = Api::new().await;
    let mut crd = crontab_crd();
    for v in crd["spec"]["versions"].as_array_mut().unwrap() {
        v.as_object_mut().unwrap().remove("subresources");
    }
    create_crd(&api, crd).await;
    let mut a = crontab("a", json!({}));
    a["status"] = json!({"replicas": 2});
    let (code, body) = api.call(Method::POST, CRONTABS, Some(a)).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["replicas"], 2, "kept on create");
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{CRONTABS}/a"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"status": {"replicas": 3}})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"]["replicas"], 3);
    assert_eq!(
        body["metadata"]["generation"], 2,
        "a status change bumps the generation"
    );
    let (code, _) = api
        .call(Method::GET, &format!("{CRONTABS}/a/status"), None)
        .await;
    assert_eq!(code, 404, "no status subresource");
}

#[tokio::test]
async fn crds_print_their_creation_time() {
    let api = Api::new().await;
    let crd = create_crd(&api, crontab_crd()).await;
    let (code, table) = api
        .call_with(
            Method::GET,
            CRDS,
            "application/json",
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            None,
        )
        .await;
    assert_eq!(code, 200, "{table}");
    assert_eq!(table["columnDefinitions"][1]["name"], "Created At");
    assert_eq!(
        table["rows"][0]["cells"],
        json!([
            "crontabs.stable.example.com",
            crd["metadata"]["creationTimestamp"]
        ])
    );
}
