//! Pod Security admission for Linux container pods through the router: each field baseline
//! forbids refused with Kubernetes' 403 text, a namespace labelled `privileged` or `restricted`,
//! wasm pods untouched; and the RuntimeClasses every start creates.

use std::sync::Arc;

use axum::http::Method;
use serde_json::{Value, json};

use super::Api;

const RCS: &str = "/apis/node.k8s.io/v1/runtimeclasses";

/// An API with the two RuntimeClasses the server creates at start and a class `linux` that
/// names the oci handler under another name.
async fn api() -> Api {
    let api = Api::new().await;
    for (name, handler) in [("wasm", "wasm"), ("oci", "oci"), ("linux", "oci")] {
        let rc = json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": name}, "handler": handler});
        let (code, body) = api.call(Method::POST, RCS, Some(rc)).await;
        assert_eq!(code, 201, "{body}");
    }
    api
}

async fn namespace(api: &Api, name: &str, level: &str) {
    let ns = json!({"metadata": {"name": name,
        "labels": {"pod-security.kubernetes.io/enforce": level}}});
    let (code, body) = api.call(Method::POST, "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(code, 201, "{body}");
}

/// A pod of class `class` with one container `c`; `spec` and `container` are merged in.
fn pod(name: &str, class: Option<&str>, spec: Value, container: Value) -> Value {
    let mut c = json!({"name": "c", "image": "busybox:1.36"});
    c.as_object_mut()
        .unwrap()
        .extend(container.as_object().cloned().unwrap_or_default());
    let mut s = json!({"containers": [c]});
    if let Some(class) = class {
        s["runtimeClassName"] = json!(class);
    }
    s.as_object_mut()
        .unwrap()
        .extend(spec.as_object().cloned().unwrap_or_default());
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": s})
}

async fn create(api: &Api, namespace: &str, pod: Value) -> (u16, Value) {
    api.call(
        Method::POST,
        &format!("/api/v1/namespaces/{namespace}/pods"),
        Some(pod),
    )
    .await
}

/// Asserts Kubernetes' PodSecurity refusal of pod `name` with `detail` at `level`.
fn assert_refused(code: u16, body: &Value, name: &str, level: &str, detail: &str) {
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden", "{body}");
    assert_eq!(
        body["message"],
        format!("pods \"{name}\" is forbidden: violates PodSecurity \"{level}:latest\": {detail}"),
    );
    assert_eq!(body["details"]["name"], name, "{body}");
    assert_eq!(body["details"]["kind"], "pods", "{body}");
}

/// Each field baseline forbids, alone, on an oci pod in an unlabelled namespace.
fn forbidden_cases() -> Vec<(&'static str, Value, Value, &'static str)> {
    vec![
        (
            "privileged",
            json!({}),
            json!({"securityContext": {"privileged": true}}),
            "privileged (container \"c\" must not set securityContext.privileged=true)",
        ),
        (
            "host-network",
            json!({"hostNetwork": true}),
            json!({}),
            "host namespaces (hostNetwork=true)",
        ),
        (
            "host-pid",
            json!({"hostPID": true}),
            json!({}),
            "host namespaces (hostPID=true)",
        ),
        (
            "host-ipc",
            json!({"hostIPC": true}),
            json!({}),
            "host namespaces (hostIPC=true)",
        ),
        (
            "host-path",
            json!({"volumes": [{"name": "v", "hostPath": {"path": "/etc"}}]}),
            json!({"volumeMounts": [{"name": "v", "mountPath": "/host"}]}),
            "hostPath volumes (volume \"v\")",
        ),
        (
            "host-port",
            json!({}),
            json!({"ports": [{"containerPort": 80, "hostPort": 8080}]}),
            "hostPort (container \"c\" uses hostPort 8080)",
        ),
        (
            "capabilities",
            json!({}),
            json!({"securityContext": {"capabilities": {"add": ["CHOWN", "SYS_ADMIN"]}}}),
            "non-default capabilities (container \"c\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add)",
        ),
        (
            "proc-mount",
            json!({}),
            json!({"securityContext": {"procMount": "Unmasked"}}),
            "procMount (container \"c\" must not set securityContext.procMount to \"Unmasked\")",
        ),
    ]
}

#[tokio::test]
async fn baseline_refuses_each_forbidden_field_of_an_oci_pod() {
    let api = api().await;
    for (name, spec, container, detail) in forbidden_cases() {
        let (code, body) = create(&api, "default", pod(name, Some("oci"), spec, container)).await;
        assert_refused(code, &body, name, "baseline", detail);
    }
    // Several at once, in Kubernetes' order; through a class of another name with handler oci.
    let (code, body) = create(
        &api,
        "default",
        pod(
            "many",
            Some("linux"),
            json!({"hostNetwork": true, "volumes": [{"name": "v", "hostPath": {"path": "/"}}]}),
            json!({"securityContext": {"privileged": true}}),
        ),
    )
    .await;
    assert_refused(
        code,
        &body,
        "many",
        "baseline",
        "host namespaces (hostNetwork=true), privileged (container \"c\" must not set securityContext.privileged=true), hostPath volumes (volume \"v\")",
    );
    // Nothing was stored.
    let (code, _) = api
        .call(Method::GET, "/api/v1/namespaces/default/pods/many", None)
        .await;
    assert_eq!(code, 404);
    // A plain oci pod, and one adding only default capabilities, are fine.
    let (code, body) = create(
        &api,
        "default",
        pod("plain", Some("oci"), json!({}), json!({})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let caps = json!({"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}});
    let (code, body) = create(&api, "default", pod("caps", Some("oci"), json!({}), caps)).await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn a_namespace_labelled_privileged_allows_them_and_baseline_still_refuses() {
    let api = api().await;
    namespace(&api, "ops", "privileged").await;
    namespace(&api, "apps", "baseline").await;
    for (name, spec, container, detail) in forbidden_cases() {
        let (code, body) = create(
            &api,
            "ops",
            pod(name, Some("oci"), spec.clone(), container.clone()),
        )
        .await;
        assert_eq!(code, 201, "{name}: {body}");
        let (code, body) = create(&api, "apps", pod(name, Some("oci"), spec, container)).await;
        assert_refused(code, &body, name, "baseline", detail);
    }
}

#[tokio::test]
async fn restricted_asks_more_and_names_its_version() {
    let api = api().await;
    let ns = json!({"metadata": {"name": "locked", "labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "v1.35"}}});
    let (code, body) = api.call(Method::POST, "/api/v1/namespaces", Some(ns)).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = create(
        &api,
        "locked",
        pod("loose", Some("oci"), json!({}), json!({})),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"loose\" is forbidden: violates PodSecurity \"restricted:v1.35\": \
         allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
         unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
         runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
         seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
    );
    let tight = pod(
        "tight",
        Some("oci"),
        json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}}),
        json!({"securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}),
    );
    let (code, body) = create(&api, "locked", tight).await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn wasm_pods_are_not_checked() {
    let api = api().await;
    let spec = json!({"volumes": [{"name": "v", "hostPath": {"path": "/data"}}]});
    let container = json!({"securityContext": {"privileged": true}});
    for (name, class) in [("implicit", None), ("explicit", Some("wasm"))] {
        let (code, body) = create(
            &api,
            "default",
            pod(name, class, spec.clone(), container.clone()),
        )
        .await;
        assert_eq!(code, 201, "{name}: {body}");
    }
}

#[tokio::test]
async fn a_class_not_created_yet_is_checked_as_a_linux_one() {
    let api = api().await;
    let (code, body) = create(
        &api,
        "default",
        pod("later", Some("runsc"), json!({"hostIPC": true}), json!({})),
    )
    .await;
    assert_refused(
        code,
        &body,
        "later",
        "baseline",
        "host namespaces (hostIPC=true)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_start_creates_the_wasm_and_oci_runtime_classes_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn skiff_store::Store> = Arc::new(skiff_store::MemoryStore::new());
    let kind = skiff_kinds::find("node.k8s.io", "v1", "runtimeclasses").expect("kind");
    let get = |store: Arc<dyn skiff_store::Store>, name: &'static str| async move {
        let kv = store
            .get(&format!("{}{name}", kind.storage_prefix()))
            .await
            .expect("store answers")
            .expect("the class exists");
        serde_json::from_slice::<Value>(&kv.value).expect("JSON")
    };
    let start = || {
        skiff_api::start_with_store(
            skiff_api::ServerOptions::new(dir.path(), "127.0.0.1:0".parse().unwrap()),
            store.clone(),
        )
    };
    let first = start().await.unwrap();
    for name in ["wasm", "oci"] {
        let rc = get(store.clone(), name).await;
        assert_eq!(rc["handler"], name, "{rc}");
        assert_eq!(rc["kind"], "RuntimeClass", "{rc}");
    }
    first.shutdown().await;

    // An operator's change to a class survives the next start.
    let state = Arc::new(skiff_api::AppState::new(
        store.clone(),
        vec![(super::TOKEN.into(), skiff_api::UserInfo::admin("admin"))],
    ));
    let api = Api {
        router: skiff_api::app(state),
        store: store.clone(),
        _shutdown: tokio::sync::watch::channel(false).0,
    };
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{RCS}/oci"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"metadata": {"labels": {"team": "ops"}}})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let second = start().await.unwrap();
    assert_eq!(
        get(store.clone(), "oci").await["metadata"]["labels"]["team"],
        "ops"
    );
    second.shutdown().await;
}

/// Sends `body` with `method` and returns the status and the `Warning` headers.
async fn warnings_of(api: &Api, method: Method, path: &str, body: Value) -> (u16, Vec<String>) {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("Authorization", format!("Bearer {}", super::TOKEN))
        .header("Content-Type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = api.request(req).await;
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    (resp.status().as_u16(), warnings)
}

fn deployment(name: &str, class: &str) -> Value {
    let template = pod(
        name,
        Some(class),
        json!({}),
        json!({"securityContext": {"privileged": true}}),
    );
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": template["spec"]}}})
}

#[tokio::test]
async fn a_workload_whose_pods_would_be_refused_is_written_with_a_warning() {
    let api = api().await;
    const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
    let expected = "299 - \"would violate PodSecurity \\\"baseline:latest\\\": privileged (container \\\"c\\\" must not set securityContext.privileged=true)\"";
    let (code, warnings) =
        warnings_of(&api, Method::POST, DEPLOYS, deployment("root", "oci")).await;
    assert_eq!(code, 201);
    assert_eq!(warnings, [expected]);
    let (code, warnings) = warnings_of(
        &api,
        Method::PUT,
        &format!("{DEPLOYS}/root"),
        deployment("root", "oci"),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(warnings, [expected]);
    let req = axum::http::Request::builder()
        .method(Method::PATCH)
        .uri(format!("{DEPLOYS}/root"))
        .header("Authorization", format!("Bearer {}", super::TOKEN))
        .header("Content-Type", "application/merge-patch+json")
        .body(axum::body::Body::from(r#"{"spec": {"replicas": 2}}"#))
        .unwrap();
    let resp = api.request(req).await;
    assert_eq!(resp.status().as_u16(), 200);
    let patched: Vec<&str> = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(patched, [expected]);
    let (code, warnings) =
        warnings_of(&api, Method::POST, DEPLOYS, deployment("wasm", "wasm")).await;
    assert_eq!(code, 201);
    assert!(warnings.is_empty(), "{warnings:?}");
}
