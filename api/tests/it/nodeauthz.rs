//! The Node authorizer and NodeRestriction through the router: what a node's own credential
//! (`system:node:NAME`, group `system:nodes`) may read and write, with Kubernetes' messages.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_api::nodeauthz::NodeAuthorizer;
use skiff_api::serviceaccount::{ServiceAccountOptions, ServiceAccounts};
use skiff_api::{AppState, Masters, Union, UserInfo, app};
use skiff_store::{MemoryStore, Store};
use tower::ServiceExt;

const ADMIN: &str = "admin-token";
const N1: &str = "n1-token";
const N2: &str = "n2-token";
const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

struct Cluster {
    router: axum::Router,
    _authorizer: Arc<NodeAuthorizer>,
}

impl Cluster {
    async fn new() -> Cluster {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let node = |n: &str| UserInfo::new(format!("system:node:{n}"), &["system:nodes"]);
        let authorizer = NodeAuthorizer::start(store.clone()).await.unwrap();
        let accounts = ServiceAccounts::ephemeral(&ServiceAccountOptions::default(), CA.into())
            .expect("a signing key");
        let state = AppState::new(
            store,
            vec![
                (ADMIN.into(), UserInfo::admin("admin")),
                (N1.into(), node("n1")),
                (N2.into(), node("n2")),
            ],
        )
        .with_service_accounts(Arc::new(accounts))
        .with_authorizer(Arc::new(Union(vec![Arc::new(Masters), authorizer.clone()])));
        let c = Cluster {
            router: app(Arc::new(state)),
            _authorizer: authorizer,
        };
        for ns in ["default", "kube-node-lease"] {
            c.ok(
                ADMIN,
                Method::POST,
                "/api/v1/namespaces",
                json!({"metadata": {"name": ns}}),
            )
            .await;
        }
        c
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let ct = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", ct)
            .body(
                body.map(|b| Body::from(serde_json::to_vec(&b).unwrap()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A write or read that must succeed; returns the object.
    async fn ok(&self, token: &str, method: Method, path: &str, body: Value) -> Value {
        let body = (method != Method::GET).then_some(body);
        let (code, out) = self.call(token, method, path, body).await;
        assert!((200..300).contains(&code), "{path}: {code} {out}");
        out
    }

    /// A request that must be refused with 403 and exactly `message`.
    async fn forbidden(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        message: &str,
    ) {
        let out = self.refused(token, method, path, body).await;
        assert_eq!(out["message"], message, "{out}");
    }

    /// A request that must be refused with 403; returns the Status.
    async fn refused(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        let (code, out) = self.call(token, method, path, body).await;
        assert_eq!(code, 403, "{path}: {out}");
        assert_eq!(out["reason"], "Forbidden", "{out}");
        out
    }
}

fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {"k": "dg=="}})
}

/// A pod mounting Secret `secret`, running as ServiceAccount `sa`, bound to `node` (if any).
fn pod(name: &str, node: Option<&str>, secret: &str, sa: &str) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"serviceAccountName": sa,
            "containers": [{"name": "c", "image": "example/app:1"}],
            "volumes": [{"name": "s", "secret": {"secretName": secret}}]}});
    if let Some(node) = node {
        pod["spec"]["nodeName"] = node.into();
    }
    pod
}

const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn no_relationship(resource: &str, name: &str, verb: &str) -> String {
    format!(
        "{resource} \"{name}\" is forbidden: User \"system:node:n1\" cannot {verb} resource \"{resource}\" in API group \"\" in the namespace \"default\": no relationship found between node 'n1' and this object"
    )
}

#[tokio::test]
async fn a_node_reads_only_the_secrets_of_pods_bound_to_it() {
    let c = Cluster::new().await;
    for s in ["s1", "s2", "s3"] {
        c.ok(ADMIN, Method::POST, SECRETS, secret(s)).await;
    }
    c.ok(
        ADMIN,
        Method::POST,
        PODS,
        pod("p1", Some("n1"), "s1", "default"),
    )
    .await;
    c.ok(
        ADMIN,
        Method::POST,
        PODS,
        pod("p2", Some("n2"), "s2", "default"),
    )
    .await;
    let got = c
        .ok(N1, Method::GET, &format!("{SECRETS}/s1"), Value::Null)
        .await;
    assert_eq!(got["data"]["k"], "dg==");
    c.forbidden(
        N1,
        Method::GET,
        &format!("{SECRETS}/s2"),
        None,
        &no_relationship("secrets", "s2", "get"),
    )
    .await;
    // Listing every Secret is not reading one a pod references.
    let (code, _) = c.call(N1, Method::GET, SECRETS, None).await;
    assert_eq!(code, 403);
    // Every node is an ingress controller: it may list and watch TLS Secrets, and only those.
    let tls = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert"},
        "type": "kubernetes.io/tls", "data": {"tls.crt": "Yw==", "tls.key": "aw=="}});
    c.ok(ADMIN, Method::POST, SECRETS, tls).await;
    let listed = c
        .ok(
            N1,
            Method::GET,
            "/api/v1/secrets?fieldSelector=type%3Dkubernetes.io%2Ftls",
            Value::Null,
        )
        .await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["cert"]);
    let (code, _) = c
        .call(
            N1,
            Method::GET,
            "/api/v1/secrets?fieldSelector=type%3DOpaque",
            None,
        )
        .await;
    assert_eq!(code, 403);
    // Writing a Secret is never a node's business.
    c.forbidden(
        N1,
        Method::DELETE,
        &format!("{SECRETS}/s1"),
        None,
        "secrets \"s1\" is forbidden: User \"system:node:n1\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"default\": can only read resources of this type",
    )
    .await;

    // A pod bound by this server is in the graph before the binding's answer: the node may read
    // its Secret at once.
    c.ok(ADMIN, Method::POST, PODS, pod("p3", None, "s3", "default"))
        .await;
    c.forbidden(
        N1,
        Method::GET,
        &format!("{SECRETS}/s3"),
        None,
        &no_relationship("secrets", "s3", "get"),
    )
    .await;
    c.ok(
        ADMIN,
        Method::POST,
        &format!("{PODS}/p3/binding"),
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p3"},
            "target": {"kind": "Node", "name": "n1"}}),
    )
    .await;
    c.ok(N1, Method::GET, &format!("{SECRETS}/s3"), Value::Null)
        .await;
    // Once the pod is gone, so is the relationship.
    c.ok(
        ADMIN,
        Method::DELETE,
        &format!("{PODS}/p3?gracePeriodSeconds=0"),
        Value::Null,
    )
    .await;
    c.forbidden(
        N1,
        Method::GET,
        &format!("{SECRETS}/s3"),
        None,
        &no_relationship("secrets", "s3", "get"),
    )
    .await;
}

#[tokio::test]
async fn a_node_writes_only_the_status_of_its_own_pods() {
    let c = Cluster::new().await;
    c.ok(
        ADMIN,
        Method::POST,
        PODS,
        pod("p1", Some("n1"), "s1", "default"),
    )
    .await;
    c.ok(
        ADMIN,
        Method::POST,
        PODS,
        pod("p2", Some("n2"), "s2", "default"),
    )
    .await;
    let status = json!({"status": {"phase": "Running"}});
    let done = c
        .ok(
            N1,
            Method::PATCH,
            &format!("{PODS}/p1/status"),
            status.clone(),
        )
        .await;
    assert_eq!(done["status"]["phase"], "Running");
    c.forbidden(
        N1,
        Method::PATCH,
        &format!("{PODS}/p2/status"),
        Some(status),
        "pods \"p2\" is forbidden: node \"n1\" can only update pod status for pods with spec.nodeName set to itself",
    )
    .await;
    c.forbidden(
        N1,
        Method::PATCH,
        &format!("{PODS}/p1/status"),
        Some(json!({"metadata": {"labels": {"a": "b"}}})),
        "pods \"p1\" is forbidden: node \"n1\" cannot update labels through pod status",
    )
    .await;
    // The pod itself is not the node's to change.
    c.forbidden(
        N1,
        Method::PATCH,
        &format!("{PODS}/p1"),
        Some(json!({"metadata": {"labels": {"a": "b"}}})),
        "pods \"p1\" is forbidden: User \"system:node:n1\" cannot patch resource \"pods\" in API group \"\" in the namespace \"default\"",
    )
    .await;
    c.forbidden(
        N1,
        Method::POST,
        PODS,
        Some(pod("p9", Some("n1"), "s1", "default")),
        "pods \"p9\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods",
    )
    .await;
    // It deletes its own pods (after stopping them), not another node's.
    c.forbidden(
        N1,
        Method::DELETE,
        &format!("{PODS}/p2?gracePeriodSeconds=0"),
        None,
        "pods \"p2\" is forbidden: node \"n1\" can only delete pods with spec.nodeName set to itself",
    )
    .await;
    c.ok(
        N1,
        Method::DELETE,
        &format!("{PODS}/p1?gracePeriodSeconds=0"),
        Value::Null,
    )
    .await;
}

#[tokio::test]
async fn a_node_changes_only_its_own_node_and_lease() {
    let c = Cluster::new().await;
    let node = |n: &str| {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n,
            "labels": {"kubernetes.io/hostname": n}}})
    };
    c.ok(N1, Method::POST, "/api/v1/nodes", node("n1")).await;
    c.forbidden(
        N1,
        Method::POST,
        "/api/v1/nodes",
        Some(node("n2")),
        "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\"",
    )
    .await;
    c.ok(N2, Method::POST, "/api/v1/nodes", node("n2")).await;
    let labelled = c
        .ok(
            N1,
            Method::PATCH,
            "/api/v1/nodes/n1",
            json!({"metadata": {"labels": {"skiff.dev/runtime": "wasm"}}}),
        )
        .await;
    assert_eq!(labelled["metadata"]["labels"]["skiff.dev/runtime"], "wasm");
    c.ok(
        N1,
        Method::PATCH,
        "/api/v1/nodes/n1/status",
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    )
    .await;
    for path in ["/api/v1/nodes/n2", "/api/v1/nodes/n2/status"] {
        c.forbidden(
            N1,
            Method::PATCH,
            path,
            Some(json!({"metadata": {"labels": {"x": "y"}}})),
            "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\"",
        )
        .await;
    }
    // Deleting Nodes is not in a node's rules at all.
    c.forbidden(
        N1,
        Method::DELETE,
        "/api/v1/nodes/n2",
        None,
        "nodes \"n2\" is forbidden: User \"system:node:n1\" cannot delete resource \"nodes\" in API group \"\" at the cluster scope",
    )
    .await;
    c.forbidden(
        N1,
        Method::PATCH,
        "/api/v1/nodes/n1",
        Some(json!({"metadata": {"labels": {"node-restriction.kubernetes.io/secure": "true"}}})),
        "nodes \"n1\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/secure",
    )
    .await;
    c.forbidden(
        N1,
        Method::PATCH,
        "/api/v1/nodes/n1",
        Some(json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}})),
        "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify taints",
    )
    .await;

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let lease = |n: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": n},
            "spec": {"holderIdentity": n, "leaseDurationSeconds": 40}})
    };
    c.ok(N1, Method::POST, LEASES, lease("n1")).await;
    c.ok(
        N1,
        Method::PATCH,
        &format!("{LEASES}/n1"),
        json!({"spec": {"leaseDurationSeconds": 41}}),
    )
    .await;
    c.forbidden(
        N1,
        Method::POST,
        LEASES,
        Some(lease("n2")),
        "leases.coordination.k8s.io \"n2\" is forbidden: can only access node lease with the same name as the requesting node",
    )
    .await;
    c.ok(N2, Method::POST, LEASES, lease("n2")).await;
    c.forbidden(
        N1,
        Method::GET,
        &format!("{LEASES}/n2"),
        None,
        "leases.coordination.k8s.io \"n2\" is forbidden: User \"system:node:n1\" cannot get resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"kube-node-lease\": can only access node lease with the same name as the requesting node",
    )
    .await;
}

#[tokio::test]
async fn a_node_asks_tokens_only_for_its_pods_service_accounts() {
    let c = Cluster::new().await;
    for sa in ["runner", "other"] {
        c.ok(
            ADMIN,
            Method::POST,
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"metadata": {"name": sa}}),
        )
        .await;
    }
    c.ok(
        ADMIN,
        Method::POST,
        PODS,
        pod("p1", Some("n1"), "s1", "runner"),
    )
    .await;
    c.ok(
        ADMIN,
        Method::POST,
        PODS,
        pod("p2", Some("n2"), "s2", "other"),
    )
    .await;
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": []}});
    c.forbidden(
        N1,
        Method::POST,
        "/api/v1/namespaces/default/serviceaccounts/other/token",
        Some(request.clone()),
        "serviceaccounts \"other\" is forbidden: User \"system:node:n1\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"default\": no relationship found between node 'n1' and this object",
    )
    .await;
    // Reading the ServiceAccount itself is not a token request.
    c.forbidden(
        N1,
        Method::GET,
        "/api/v1/namespaces/default/serviceaccounts/runner",
        None,
        "serviceaccounts \"runner\" is forbidden: User \"system:node:n1\" cannot get resource \"serviceaccounts\" in API group \"\" in the namespace \"default\": can only create tokens for individual service accounts",
    )
    .await;
    // A token of its pod's ServiceAccount, bound to that pod.
    let p1 = c
        .ok(ADMIN, Method::GET, &format!("{PODS}/p1"), Value::Null)
        .await;
    let bound = |name: &str, uid: &str| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [], "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                "name": name, "uid": uid}}})
    };
    let token = c
        .ok(
            N1,
            Method::POST,
            RUNNER_TOKEN,
            bound("p1", p1["metadata"]["uid"].as_str().unwrap()),
        )
        .await;
    assert!(
        token["status"]["token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    // Not bound to a pod, or bound to another node's pod running as the same account.
    c.forbidden(
        N1,
        Method::POST,
        RUNNER_TOKEN,
        Some(request),
        "serviceaccounts \"runner\" is forbidden: node requested token not bound to a pod",
    )
    .await;
    let p3 = c
        .ok(
            ADMIN,
            Method::POST,
            PODS,
            pod("p3", Some("n2"), "s2", "runner"),
        )
        .await;
    c.forbidden(
        N1,
        Method::POST,
        RUNNER_TOKEN,
        Some(bound("p3", p3["metadata"]["uid"].as_str().unwrap())),
        "serviceaccounts \"runner\" is forbidden: node requested token bound to a pod scheduled on a different node",
    )
    .await;
    c.forbidden(
        N1,
        Method::POST,
        RUNNER_TOKEN,
        Some(bound("p1", "not-its-uid")),
        "serviceaccounts \"runner\" is forbidden: the UID in the bound object reference (not-its-uid) does not match the UID in record. The object might have been deleted and then recreated",
    )
    .await;
}

const RUNNER_TOKEN: &str = "/api/v1/namespaces/default/serviceaccounts/runner/token";

#[tokio::test]
async fn a_node_only_records_requests_and_scales_from_zero_on_a_deployment() {
    let c = Cluster::new().await;
    const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
    c.ok(
        ADMIN,
        Method::POST,
        DEPLOYS,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "example/app:1"}]}}}}),
    )
    .await;
    let web = format!("{DEPLOYS}/web");
    c.ok(
        N1,
        Method::PATCH,
        &web,
        json!({"metadata": {"annotations": {"skiff.dev/last-request-time": "2026-01-01T00:00:00Z"}}}),
    )
    .await;
    c.forbidden(
        N1,
        Method::PATCH,
        &web,
        Some(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "evil/app:1"}]}}}})),
        "deployments.apps \"web\" is forbidden: node \"n1\" can only set the \"skiff.dev/last-request-time\" annotation of a Deployment",
    )
    .await;
    let scale = |n: i64| json!({"spec": {"replicas": n}});
    c.forbidden(
        N1,
        Method::PATCH,
        &format!("{web}/scale"),
        Some(scale(5)),
        "deployments.apps \"web\" is forbidden: node \"n1\" can only scale a Deployment from zero to one replica",
    )
    .await;
    let scaled = c
        .ok(N1, Method::PATCH, &format!("{web}/scale"), scale(1))
        .await;
    assert_eq!(scaled["spec"]["replicas"], 1);
    c.forbidden(
        N1,
        Method::PATCH,
        &format!("{web}/scale"),
        Some(scale(0)),
        "deployments.apps \"web\" is forbidden: node \"n1\" can only scale a Deployment from zero to one replica",
    )
    .await;
}
