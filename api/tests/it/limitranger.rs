//! LimitRanger admission through the router: container defaults and their annotation, the
//! `min`, `max` and `maxLimitRequestRatio` refusals with Kubernetes' messages, the Pod and
//! PersistentVolumeClaim types, and quota charging the defaulted pod.

use axum::http::Method;
use serde_json::{Value, json};

use super::Api;

const RANGES: &str = "/api/v1/namespaces/default/limitranges";
const PODS: &str = "/api/v1/namespaces/default/pods";

async fn limit_range(api: &Api, name: &str, limits: Value) {
    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name},
        "spec": {"limits": limits}});
    let (code, body) = api.call(Method::POST, RANGES, Some(lr)).await;
    assert_eq!(code, 201, "{body}");
}

fn pod(name: &str, resources: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "app.wasm", "resources": resources}]}})
}

async fn refused(api: &Api, path: &str, obj: Value) -> String {
    let (code, body) = api.call(Method::POST, path, Some(obj)).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden");
    body["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn container_defaults_fill_what_containers_lack_and_say_so() {
    let api = Api::new().await;
    limit_range(
        &api,
        "defaults",
        json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]),
    )
    .await;
    let mut p = pod("p", json!({}));
    p["spec"]["initContainers"] = json!([{"name": "i", "image": "init.wasm",
        "resources": {"limits": {"cpu": "200m"}}}]);
    let (code, body) = api.call(Method::POST, PODS, Some(p)).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "256Mi"},
            "requests": {"cpu": "100m", "memory": "128Mi"}})
    );
    // The init container had a cpu limit (and so, by pod defaulting, the same request).
    assert_eq!(
        body["spec"]["initContainers"][0]["resources"],
        json!({"limits": {"cpu": "200m", "memory": "256Mi"},
            "requests": {"cpu": "200m", "memory": "128Mi"}})
    );
    assert_eq!(
        body["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c; memory request for init container i; memory limit for init container i"
    );
    // What a container states is kept, and nothing set means no annotation.
    let stated = json!({"limits": {"cpu": "300m", "memory": "64Mi"},
        "requests": {"cpu": "300m", "memory": "64Mi"}});
    let (code, body) = api
        .call(Method::POST, PODS, Some(pod("q", stated.clone())))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["containers"][0]["resources"], stated);
    assert!(body["metadata"]["annotations"]["kubernetes.io/limit-ranger"].is_null());
}

#[tokio::test]
async fn min_max_and_ratio_refusals_use_kubernetes_messages() {
    let api = Api::new().await;
    limit_range(
        &api,
        "bounds",
        json!([{"type": "Container",
            "max": {"cpu": "500m"},
            "min": {"memory": "64Mi"},
            "maxLimitRequestRatio": {"cpu": "2"}}]),
    )
    .await;
    assert_eq!(
        refused(
            &api,
            PODS,
            pod(
                "p",
                json!({"limits": {"cpu": "1"}, "requests": {"cpu": "500m"}})
            )
        )
        .await,
        "pods \"p\" is forbidden: maximum cpu usage per Container is 500m, but limit is 1"
    );
    assert_eq!(
        refused(
            &api,
            PODS,
            pod(
                "p",
                json!({"requests": {"memory": "32Mi"}, "limits": {"memory": "32Mi"}})
            )
        )
        .await,
        "pods \"p\" is forbidden: minimum memory usage per Container is 64Mi, but request is 32Mi"
    );
    assert_eq!(
        refused(
            &api,
            PODS,
            pod(
                "p",
                json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "400m"}})
            )
        )
        .await,
        "pods \"p\" is forbidden: cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"
    );
    // Several failures: Kubernetes' aggregate, in brackets.
    assert_eq!(
        refused(
            &api,
            PODS,
            pod(
                "p",
                json!({"requests": {"cpu": "100m", "memory": "32Mi"},
                "limits": {"cpu": "400m", "memory": "32Mi"}})
            )
        )
        .await,
        "pods \"p\" is forbidden: [minimum memory usage per Container is 64Mi, but request is 32Mi, cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000]"
    );
    // Within bounds, with the max defaulted as limit and request (LimitRange defaulting).
    let (code, body) = api
        .call(Method::POST, PODS, Some(pod("ok", json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "500m", "memory": "64Mi"}})
    );
}

#[tokio::test]
async fn pod_type_limits_the_sum_of_containers() {
    let api = Api::new().await;
    limit_range(
        &api,
        "per-pod",
        json!([{"type": "Pod", "max": {"memory": "1Gi"}}]),
    )
    .await;
    let mut p = pod("p", json!({"limits": {"memory": "600Mi"}}));
    p["spec"]["containers"].as_array_mut().unwrap().push(
        json!({"name": "d", "image": "app.wasm", "resources": {"limits": {"memory": "600Mi"}}}),
    );
    assert_eq!(
        refused(&api, PODS, p).await,
        "pods \"p\" is forbidden: maximum memory usage per Pod is 1Gi, but limit is 1200Mi"
    );
    assert_eq!(
        refused(&api, PODS, pod("p", json!({}))).await,
        "pods \"p\" is forbidden: maximum memory usage per Pod is 1Gi.  No limit is specified"
    );
    let (code, body) = api
        .call(
            Method::POST,
            PODS,
            Some(pod("small", json!({"limits": {"memory": "512Mi"}}))),
        )
        .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn claim_type_bounds_the_storage_request() {
    let api = Api::new().await;
    limit_range(
        &api,
        "storage",
        json!([{"type": "PersistentVolumeClaim",
            "min": {"storage": "1Gi"}, "max": {"storage": "5Gi"}}]),
    )
    .await;
    let claim = |name: &str, size: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}}}})
    };
    const CLAIMS: &str = "/api/v1/namespaces/default/persistentvolumeclaims";
    assert_eq!(
        refused(&api, CLAIMS, claim("big", "10Gi")).await,
        "persistentvolumeclaims \"big\" is forbidden: maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 10Gi"
    );
    assert_eq!(
        refused(&api, CLAIMS, claim("tiny", "100Mi")).await,
        "persistentvolumeclaims \"tiny\" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 100Mi"
    );
    let (code, body) = api
        .call(Method::POST, CLAIMS, Some(claim("fits", "2Gi")))
        .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn quota_charges_the_defaulted_pod() {
    let api = Api::new().await;
    limit_range(
        &api,
        "defaults",
        json!([{"type": "Container", "defaultRequest": {"cpu": "600m"}, "default": {"cpu": "600m"}}]),
    )
    .await;
    const QUOTAS: &str = "/api/v1/namespaces/default/resourcequotas";
    let hard = json!({"requests.cpu": "1"});
    let q = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "cpu"},
        "spec": {"hard": hard}});
    let (code, mut body) = api.call(Method::POST, QUOTAS, Some(q)).await;
    assert_eq!(code, 201, "{body}");
    body["status"] = json!({"hard": hard, "used": {"requests.cpu": "0"}});
    let (code, body) = api
        .call(Method::PUT, &format!("{QUOTAS}/cpu/status"), Some(body))
        .await;
    assert_eq!(code, 200, "{body}");
    // The pod states nothing: without LimitRanger first, quota would refuse it for lacking a
    // cpu request.
    let (code, body) = api
        .call(Method::POST, PODS, Some(pod("one", json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        refused(&api, PODS, pod("two", json!({}))).await,
        "pods \"two\" is forbidden: exceeded quota: cpu, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"
    );
}

#[tokio::test]
async fn a_limit_range_must_order_min_default_request_default_max() {
    let api = Api::new().await;
    let lr = |limits: Value| {
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "bad"},
            "spec": {"limits": limits}})
    };
    let (code, body) = api
        .call(
            Method::POST,
            RANGES,
            Some(lr(
                json!([{"type": "Container", "default": {"cpu": "2"}, "max": {"cpu": "1"}}]),
            )),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "LimitRange \"bad\" is invalid: [spec.limits[0].defaultRequest[cpu]: Invalid value: \"2\": default request value 2 is greater than max value 1, spec.limits[0].default[cpu]: Invalid value: \"1\": default value 2 is greater than max value 1]"
    );
    let (code, body) = api
        .call(
            Method::POST,
            RANGES,
            Some(lr(
                json!([{"type": "Pod", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
                {"type": "PersistentVolumeClaim", "max": {"memory": "1Gi"}}]),
            )),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(
            "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"
        ),
        "{message}"
    );
    assert!(
        message.contains("spec.limits[1].limits: Required value: either minimum or maximum storage value is required, but neither was provided"),
        "{message}"
    );
}
