//! PriorityClasses and priority admission through the router: a pod's class resolved to its
//! priority, the global default, and Kubernetes' refusals.

use axum::http::Method;
use serde_json::{Value, json};

use super::Api;

const PCS: &str = "/apis/scheduling.k8s.io/v1/priorityclasses";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn class(name: &str, value: i64, extra: Value) -> Value {
    let mut pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": name}, "value": value});
    if let (Some(pc), Some(extra)) = (pc.as_object_mut(), extra.as_object()) {
        pc.extend(extra.clone());
    }
    pc
}

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c1", "image": "app.wasm"}]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn a_pods_priority_comes_from_its_class() {
    let api = Api::new().await;
    let (code, body) = api
        .call(Method::POST, PODS, Some(pod("plain", json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["priority"], 0);
    assert_eq!(body["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    assert!(body["spec"].get("priorityClassName").is_none(), "{body}");

    let high = class(
        "high",
        1000,
        json!({"preemptionPolicy": "Never", "description": "d"}),
    );
    let (code, body) = api.call(Method::POST, PCS, Some(high)).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api
        .call(
            Method::POST,
            PODS,
            Some(pod("important", json!({"priorityClassName": "high"}))),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["priority"], 1000);
    assert_eq!(body["spec"]["preemptionPolicy"], "Never");

    // The same priority may be stated; another one may not.
    let (code, body) = api
        .call(
            Method::POST,
            PODS,
            Some(pod(
                "same",
                json!({"priorityClassName": "high", "priority": 1000}),
            )),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api
        .call(
            Method::POST,
            PODS,
            Some(pod(
                "other",
                json!({"priorityClassName": "high", "priority": 5}),
            )),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"other\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
    );
    assert_eq!(body["reason"], "Forbidden");

    let (code, body) = api
        .call(
            Method::POST,
            PODS,
            Some(pod("lost", json!({"priorityClassName": "nope"}))),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"lost\" is forbidden: no PriorityClass with name nope was found"
    );
    assert_eq!(body["details"]["name"], "lost");
    assert_eq!(body["details"]["kind"], "pods");
}

#[tokio::test]
async fn one_global_default_gives_unnamed_pods_its_priority() {
    let api = Api::new().await;
    let def = class("everyday", 10, json!({"globalDefault": true}));
    let (code, body) = api.call(Method::POST, PCS, Some(def)).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["preemptionPolicy"], "PreemptLowerPriority");
    let (code, body) = api
        .call(
            Method::POST,
            PCS,
            Some(class("second", 20, json!({"globalDefault": true}))),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "priorityclasses.scheduling.k8s.io \"second\" is forbidden: PriorityClass everyday is already marked as default. Only one default can exist"
    );
    // The default itself may be updated and stay default.
    let (code, body) = api
        .call(Method::GET, &format!("{PCS}/everyday"), None)
        .await;
    assert_eq!(code, 200, "{body}");
    let mut updated = body.clone();
    updated["description"] = json!("the default");
    let (code, body) = api
        .call(Method::PUT, &format!("{PCS}/everyday"), Some(updated))
        .await;
    assert_eq!(code, 200, "{body}");

    let (code, body) = api
        .call(Method::POST, PODS, Some(pod("p", json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["priority"], 10);
    assert_eq!(body["spec"]["priorityClassName"], "everyday");
}

#[tokio::test]
async fn classes_are_validated_as_kubernetes_does() {
    let api = Api::new().await;
    let (code, body) = api
        .call(
            Method::POST,
            PCS,
            Some(class("huge", 1_000_000_001, json!({}))),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "PriorityClass.scheduling.k8s.io \"huge\" is invalid: value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
    );
    let (code, body) = api
        .call(Method::POST, PCS, Some(class("system-mine", 5, json!({}))))
        .await;
    assert_eq!(code, 422, "{body}");
    let (code, body) = api
        .call(Method::POST, PCS, Some(class("low", 5, json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    let mut changed = body.clone();
    changed["value"] = json!(6);
    let (code, body) = api
        .call(Method::PUT, &format!("{PCS}/low"), Some(changed))
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "PriorityClass.scheduling.k8s.io \"low\" is invalid: value: Forbidden: may not be changed in an update."
    );
    // A user class is deleted as any object.
    let (code, body) = api.call(Method::DELETE, &format!("{PCS}/low"), None).await;
    assert_eq!(code, 200, "{body}");
}
