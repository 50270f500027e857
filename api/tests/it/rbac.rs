//! RBAC through the router: Kubernetes' evaluation corner cases as a table of (bindings,
//! request) → decision, non-resource URLs, the default roles and their aggregation, the 403
//! texts, escalation refusals, and read-your-writes of this server's own RBAC writes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_api::{AppState, UserInfo, app};
use skiff_store::{MemoryStore, Store};
use tower::ServiceExt;

const ADMIN: &str = "admin-token";

/// A router over a fresh store authorizing with `system:masters` then RBAC, the default policy
/// reconciled, namespaces `team-a` and `team-b`, and the users `alice`, `bob` (group `devs`)
/// and `carol`, each with a token named after them.
struct Rbac {
    router: axum::Router,
    state: Arc<AppState>,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

impl Rbac {
    async fn new() -> Rbac {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let tokens = vec![
            (ADMIN.to_string(), UserInfo::admin("admin")),
            ("alice".to_string(), UserInfo::new("alice", &[])),
            ("bob".to_string(), UserInfo::new("bob", &["devs"])),
            ("carol".to_string(), UserInfo::new("carol", &[])),
        ];
        let state = AppState::new(store, tokens).with_shutdown(rx).with_rbac();
        state
            .reconcile_default_policy()
            .await
            .expect("the default policy is written");
        let state = Arc::new(state);
        let api = Rbac {
            router: app(state.clone()),
            state,
            _shutdown: tx,
        };
        for ns in ["team-a", "team-b"] {
            api.ok(
                ADMIN,
                Method::POST,
                "/api/v1/namespaces",
                json!({"metadata": {"name": ns}}),
            )
            .await;
        }
        api
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
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

    async fn ok(&self, token: &str, method: Method, path: &str, body: Value) -> Value {
        let (code, out) = self.call(token, method, path, Some(body)).await;
        assert!((200..300).contains(&code), "{code} {out}");
        out
    }

    /// Binds `role` (a ClusterRole unless `kind` says Role) to `subject` in `ns`, or
    /// cluster-wide when `ns` is `None`.
    async fn bind(&self, name: &str, ns: Option<&str>, kind: &str, role: &str, subject: Value) {
        let (path, binding_kind) = match ns {
            Some(ns) => (
                format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
                "RoleBinding",
            ),
            None => (
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".to_string(),
                "ClusterRoleBinding",
            ),
        };
        self.ok(
            ADMIN,
            Method::POST,
            &path,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": binding_kind,
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
                "subjects": [subject],
            }),
        )
        .await;
    }

    async fn role(&self, ns: Option<&str>, name: &str, rules: Value, labels: Value) {
        let (path, kind) = match ns {
            Some(ns) => (
                format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
                "Role",
            ),
            None => (
                "/apis/rbac.authorization.k8s.io/v1/clusterroles".to_string(),
                "ClusterRole",
            ),
        };
        self.ok(
            ADMIN,
            Method::POST,
            &path,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                "metadata": {"name": name, "labels": labels}, "rules": rules}),
        )
        .await;
    }

    /// What a SubjectAccessReview answers for `user` in `groups` (`system:authenticated` added).
    async fn can(&self, user: &str, groups: &[&str], attributes: Value) -> bool {
        let mut groups: Vec<&str> = groups.to_vec();
        groups.push("system:authenticated");
        let key = if attributes.get("path").is_some() {
            "nonResourceAttributes"
        } else {
            "resourceAttributes"
        };
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, key: attributes},
        });
        let out = self
            .ok(
                ADMIN,
                Method::POST,
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                review,
            )
            .await;
        out["status"]["allowed"] == json!(true)
    }
}

fn user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

fn res(verb: &str, group: &str, resource: &str, ns: &str) -> Value {
    json!({"verb": verb, "group": group, "resource": resource, "namespace": ns})
}

/// Kubernetes' evaluation rules, one row per corner case.
#[tokio::test]
async fn rules_match_as_kubernetes_evaluates_them() {
    let api = Rbac::new().await;
    api.role(
        Some("team-a"),
        "pod-reader",
        json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app"], "verbs": ["get", "update"]},
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
            {"apiGroups": [""], "resources": ["*/status"], "verbs": ["get"]},
        ]),
        json!({}),
    )
    .await;
    api.bind(
        "alice-reads",
        Some("team-a"),
        "Role",
        "pod-reader",
        user("alice"),
    )
    .await;
    api.role(
        None,
        "urls",
        json!([{"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]},
               {"apiGroups": ["*"], "resources": ["nodes"], "verbs": ["*"]}]),
        json!({}),
    )
    .await;
    api.bind("devs-urls", None, "ClusterRole", "urls", group("devs"))
        .await;
    // A RoleBinding to a ClusterRole grants it in the binding's namespace only.
    api.bind(
        "bob-view",
        Some("team-b"),
        "ClusterRole",
        "view",
        user("bob"),
    )
    .await;
    api.bind(
        "sa-edit",
        Some("team-b"),
        "ClusterRole",
        "edit",
        json!({"kind": "ServiceAccount", "name": "builder"}),
    )
    .await;

    let sa = "system:serviceaccount:team-b:builder";
    let with = |name: &str, ns: &str| json!({"verb": "get", "resource": "configmaps", "namespace": ns, "name": name});
    let rows: Vec<(&str, &[&str], Value, bool, &str)> = vec![
        (
            "alice",
            &[],
            res("get", "", "pods", "team-a"),
            true,
            "verb and resource match",
        ),
        (
            "alice",
            &[],
            res("watch", "", "pods", "team-a"),
            false,
            "another verb",
        ),
        (
            "alice",
            &[],
            res("get", "", "pods", "team-b"),
            false,
            "another namespace",
        ),
        (
            "alice",
            &[],
            res("get", "apps", "pods", "team-a"),
            false,
            "another group",
        ),
        (
            "alice",
            &[],
            json!({"verb": "get", "resource": "pods", "subresource": "log", "namespace": "team-a", "name": "p"}),
            false,
            "pods does not grant pods/log",
        ),
        (
            "alice",
            &[],
            json!({"verb": "get", "resource": "pods", "subresource": "status", "namespace": "team-a", "name": "p"}),
            true,
            "*/status grants every status",
        ),
        ("alice", &[], with("app", "team-a"), true, "a named object"),
        ("alice", &[], with("other", "team-a"), false, "another name"),
        (
            "alice",
            &[],
            json!({"verb": "list", "resource": "configmaps", "namespace": "team-a"}),
            false,
            "resourceNames never match an unnamed request",
        ),
        (
            "alice",
            &[],
            json!({"verb": "patch", "group": "apps", "resource": "deployments", "subresource": "scale", "namespace": "team-a", "name": "d"}),
            true,
            "resource/subresource",
        ),
        (
            "alice",
            &[],
            json!({"verb": "patch", "group": "apps", "resource": "deployments", "namespace": "team-a", "name": "d"}),
            false,
            "a subresource rule does not grant the resource",
        ),
        (
            "alice",
            &[],
            json!({"verb": "get", "path": "/metrics"}),
            false,
            "no URL rule",
        ),
        (
            "carol",
            &["devs"],
            json!({"verb": "get", "path": "/metrics"}),
            true,
            "a group's ClusterRoleBinding",
        ),
        (
            "carol",
            &["devs"],
            json!({"verb": "get", "path": "/logs/kube.log"}),
            true,
            "a trailing * is a prefix",
        ),
        (
            "carol",
            &["devs"],
            json!({"verb": "get", "path": "/logs"}),
            false,
            "the prefix needs its slash",
        ),
        (
            "carol",
            &["devs"],
            json!({"verb": "post", "path": "/metrics"}),
            false,
            "another verb on a URL",
        ),
        (
            "carol",
            &["devs"],
            json!({"verb": "delete", "resource": "nodes"}),
            true,
            "cluster-scoped through a ClusterRoleBinding",
        ),
        (
            "carol",
            &[],
            json!({"verb": "delete", "resource": "nodes"}),
            false,
            "not in the group",
        ),
        (
            "bob",
            &[],
            res("list", "", "pods", "team-b"),
            true,
            "view in team-b",
        ),
        (
            "bob",
            &[],
            res("list", "", "pods", "team-a"),
            false,
            "view only where bound",
        ),
        (
            "bob",
            &[],
            res("get", "", "secrets", "team-b"),
            false,
            "view cannot read secrets",
        ),
        (
            "bob",
            &[],
            json!({"verb": "list", "resource": "pods"}),
            false,
            "a RoleBinding grants nothing cluster-wide",
        ),
        (
            sa,
            &[],
            res("create", "", "secrets", "team-b"),
            true,
            "a ServiceAccount subject takes the binding's namespace",
        ),
        (
            sa,
            &[],
            res("create", "", "secrets", "team-a"),
            false,
            "only in that namespace",
        ),
        (
            "system:serviceaccount:team-a:builder",
            &[],
            res("create", "", "secrets", "team-b"),
            false,
            "a ServiceAccount of another namespace",
        ),
        (
            "anyone",
            &[],
            json!({"verb": "get", "path": "/apis/apps/v1"}),
            true,
            "system:discovery for every authenticated user",
        ),
        (
            "anyone",
            &[],
            json!({"verb": "create", "group": "authorization.k8s.io", "resource": "selfsubjectaccessreviews"}),
            true,
            "system:basic-user",
        ),
    ];
    for (name, groups, attributes, allowed, why) in rows {
        assert_eq!(
            api.can(name, groups, attributes.clone()).await,
            allowed,
            "{why}: {name} {attributes}"
        );
    }
}

/// The default roles: view cannot read secrets, edit can, admin may write roles in its
/// namespace; admin, edit and view are filled from `system:aggregate-to-*`, and a ClusterRole
/// labelled to aggregate reaches them when the policy is reconciled.
#[tokio::test]
async fn default_roles_are_aggregated_and_grant_what_kubernetes_grants() {
    let api = Rbac::new().await;
    let can =
        |role: &'static str, verb: &'static str, group: &'static str, resource: &'static str| {
            let api = &api;
            async move {
                api.can(
                    &format!("someone-with-{role}"),
                    &[role],
                    res(verb, group, resource, "team-a"),
                )
                .await
            }
        };
    for (role, binding) in [("view", "g-view"), ("edit", "g-edit"), ("admin", "g-admin")] {
        api.bind(binding, Some("team-a"), "ClusterRole", role, group(role))
            .await;
    }
    let table = [
        ("view", "get", "", "pods", true),
        ("view", "list", "apps", "deployments", true),
        ("view", "get", "", "secrets", false),
        ("view", "create", "", "pods", false),
        ("edit", "get", "", "secrets", true),
        ("edit", "create", "apps", "deployments", true),
        ("edit", "delete", "", "pods", true),
        (
            "edit",
            "create",
            "rbac.authorization.k8s.io",
            "roles",
            false,
        ),
        ("edit", "create", "", "resourcequotas", false),
        (
            "admin",
            "create",
            "rbac.authorization.k8s.io",
            "roles",
            true,
        ),
        (
            "admin",
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings",
            true,
        ),
        ("admin", "get", "", "secrets", true),
        ("admin", "create", "", "namespaces", false),
    ];
    for (role, verb, group, resource, allowed) in table {
        assert_eq!(
            can(role, verb, group, resource).await,
            allowed,
            "{role} {verb} {group}/{resource}"
        );
    }

    let (_, view) = api
        .call(
            ADMIN,
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/view",
            None,
        )
        .await;
    assert_eq!(
        view["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    assert_eq!(
        view["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
        "true"
    );
    assert_eq!(
        view["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );

    api.role(
        None,
        "widgets-view",
        json!([{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}]),
        json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"}),
    )
    .await;
    assert!(!can("admin", "get", "example.com", "widgets").await);
    // What the server does at its next start (the aggregation controller does it at once).
    api.state.reconcile_default_policy().await.unwrap();
    for role in ["view", "edit", "admin"] {
        assert!(
            can(role, "get", "example.com", "widgets").await,
            "{role} aggregates widgets-view"
        );
    }
}

/// Refusals carry Kubernetes' texts, resource and non-resource; a binding written by this
/// server applies to the very next request.
#[tokio::test]
async fn refusals_are_kubernetes_403s_and_grants_apply_at_once() {
    let api = Rbac::new().await;
    api.bind(
        "alice-edit",
        Some("team-a"),
        "ClusterRole",
        "edit",
        user("alice"),
    )
    .await;
    let (code, _) = api
        .call("alice", Method::GET, "/api/v1/namespaces/team-a/pods", None)
        .await;
    assert_eq!(code, 200, "the binding applies to the next request");
    let (code, body) = api
        .call("alice", Method::GET, "/api/v1/namespaces/team-b/pods", None)
        .await;
    assert_eq!(code, 403);
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["message"],
        r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team-b""#
    );
    let (code, body) = api
        .call(
            "alice",
            Method::DELETE,
            "/api/v1/namespaces/team-b/pods/web",
            None,
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        r#"pods "web" is forbidden: User "alice" cannot delete resource "pods" in API group "" in the namespace "team-b""#
    );
    let (code, body) = api
        .call(
            "alice",
            Method::POST,
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": "mine"}})),
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        r#"namespaces is forbidden: User "alice" cannot create resource "namespaces" in API group "" at the cluster scope"#
    );

    // A binding to a role that does not exist: refused, with RBAC's reason.
    api.bind("ghost", Some("team-b"), "Role", "ghost", user("alice"))
        .await;
    let (_, body) = api
        .call(
            "alice",
            Method::GET,
            "/api/v1/namespaces/team-b/secrets",
            None,
        )
        .await;
    assert_eq!(
        body["message"],
        r#"secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "team-b": RBAC: role.rbac.authorization.k8s.io "ghost" not found"#
    );

    // Discovery and OpenAPI are non-resource URLs: system:discovery grants them.
    for path in ["/api", "/apis", "/apis/apps/v1", "/openapi/v3", "/version"] {
        let (code, body) = api.call("carol", Method::GET, path, None).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, _) = api
        .call(
            ADMIN,
            Method::DELETE,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:discovery",
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (code, body) = api.call("carol", Method::GET, "/apis", None).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        r#"forbidden: User "carol" cannot get path "/apis""#
    );
    let (code, _) = api.call("carol", Method::GET, "/healthz", None).await;
    assert_eq!(code, 200, "health stays public");

    // A deleted binding stops granting at once.
    let (code, _) = api
        .call(
            ADMIN,
            Method::DELETE,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/alice-edit",
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = api
        .call("alice", Method::GET, "/api/v1/namespaces/team-a/pods", None)
        .await;
    assert_eq!(code, 403);
}

/// A writer cannot grant what it does not hold, as Kubernetes' escalation checks: roles need
/// the rules or `escalate`, bindings the role's rules in the namespace or `bind`.
#[tokio::test]
async fn escalation_is_refused_with_kubernetes_message() {
    let api = Rbac::new().await;
    api.bind(
        "alice-admin",
        Some("team-a"),
        "ClusterRole",
        "admin",
        user("alice"),
    )
    .await;
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles";
    let role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name}, "rules": rules})
    };
    // Within what admin holds: allowed.
    let (code, body) = api
        .call(
            "alice",
            Method::POST,
            roles,
            Some(role(
                "pods",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]),
            )),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    // Beyond it: refused, naming what is missing.
    let (code, body) = api
        .call(
            "alice",
            Method::POST,
            roles,
            Some(role(
                "nodes",
                json!([
                    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                    {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
                ]),
            )),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["message"],
        "roles.rbac.authorization.k8s.io \"nodes\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\" \"list\"]}\n{NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}"
    );
    // Updating a role to more than one holds is refused too.
    let (_, current) = api
        .call("alice", Method::GET, &format!("{roles}/pods"), None)
        .await;
    let mut more = current.clone();
    more["rules"] = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
    let (code, _) = api
        .call("alice", Method::PUT, &format!("{roles}/pods"), Some(more))
        .await;
    assert_eq!(code, 403);

    // Binding: admin's rules cover edit in team-a, not cluster-admin.
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings";
    let binding = |name: &str, role: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [user("bob")]})
    };
    let (code, body) = api
        .call(
            "alice",
            Method::POST,
            bindings,
            Some(binding("bob-edit", "edit")),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api
        .call(
            "alice",
            Method::POST,
            bindings,
            Some(binding("bob-root", "cluster-admin")),
        )
        .await;
    assert_eq!(code, 403);
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "rolebindings.rbac.authorization.k8s.io \"bob-root\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n"
        ),
        "{message}"
    );
    // Not in another namespace, where she holds nothing.
    let (code, _) = api
        .call(
            "alice",
            Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/team-b/rolebindings",
            Some(binding("bob-edit", "edit")),
        )
        .await;
    assert_eq!(code, 403);

    // `bind` on a role lets one bind it without holding it; `escalate` lets one write it.
    api.role(
        None,
        "binder",
        json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
            "verbs": ["bind", "escalate"], "resourceNames": ["cluster-admin"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}]),
        json!({}),
    )
    .await;
    api.bind("alice-binder", None, "ClusterRole", "binder", user("alice"))
        .await;
    let (code, body) = api
        .call(
            "alice",
            Method::POST,
            bindings,
            Some(binding("bob-root", "cluster-admin")),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = api
        .call(
            "alice",
            Method::POST,
            roles,
            Some(role(
                "nodes",
                json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]),
            )),
        )
        .await;
    assert_eq!(code, 201, "{body}");
}

/// `kubectl auth can-i --list`: the rules of the caller in a namespace.
#[tokio::test]
async fn rules_reviews_list_the_callers_rules() {
    let api = Rbac::new().await;
    api.bind(
        "alice-view",
        Some("team-a"),
        "ClusterRole",
        "view",
        user("alice"),
    )
    .await;
    let review = |ns: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": ns}})
    };
    let path = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
    let out = api.ok("alice", Method::POST, path, review("team-a")).await;
    let status = &out["status"];
    assert_eq!(status["incomplete"], false);
    let rules = status["resourceRules"].as_array().unwrap();
    assert!(
        rules.iter().any(
            |r| r["resources"].as_array().unwrap().contains(&json!("pods"))
                && r["verbs"].as_array().unwrap().contains(&json!("list"))
        ),
        "{status}"
    );
    assert!(
        status["nonResourceRules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["nonResourceURLs"]
                .as_array()
                .unwrap()
                .contains(&json!("/api"))),
        "{status}"
    );
    let elsewhere = api.ok("alice", Method::POST, path, review("team-b")).await;
    assert!(
        !elsewhere["status"]["resourceRules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"].as_array().unwrap().contains(&json!("pods"))),
        "{elsewhere}"
    );
}

/// Reconciling adds what a default object lacks and leaves `autoupdate: "false"` alone.
#[tokio::test]
async fn reconciliation_adds_and_respects_autoupdate_false() {
    let api = Rbac::new().await;
    let path = "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:basic-user";
    let (_, mut role) = api.call(ADMIN, Method::GET, path, None).await;
    role["rules"] = json!([]);
    api.ok(ADMIN, Method::PUT, path, role.clone()).await;
    api.state.reconcile_default_policy().await.unwrap();
    let (_, restored) = api.call(ADMIN, Method::GET, path, None).await;
    assert!(
        !restored["rules"].as_array().unwrap().is_empty(),
        "missing rules come back: {restored}"
    );
    let mut frozen = restored.clone();
    frozen["rules"] = json!([]);
    frozen["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] =
        json!("false");
    api.ok(ADMIN, Method::PUT, path, frozen).await;
    api.state.reconcile_default_policy().await.unwrap();
    let (_, kept) = api.call(ADMIN, Method::GET, path, None).await;
    assert_eq!(kept["rules"], json!([]), "autoupdate false is left alone");
}

/// The namespaced default policy: the components' leader-locking Roles in `kube-system`, bound
/// to them, each limited to the component's own ConfigMap.
#[tokio::test]
async fn the_namespaced_default_roles_bind_the_components_in_kube_system() {
    let api = Rbac::new().await;
    let (status, binding) = api
        .call(
            ADMIN,
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings/system::leader-locking-kube-scheduler",
            None,
        )
        .await;
    assert_eq!(status, 200, "{binding}");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["subjects"][0]["name"], "system:kube-scheduler");
    let named = |verb: &str, name: &str| json!({"verb": verb, "group": "", "resource": "configmaps", "namespace": "kube-system", "name": name});
    assert!(
        api.can(
            "system:kube-scheduler",
            &[],
            named("update", "kube-scheduler")
        )
        .await
    );
    assert!(
        !api.can(
            "system:kube-scheduler",
            &[],
            named("update", "kube-controller-manager")
        )
        .await
    );
    assert!(
        api.can(
            "system:kube-controller-manager",
            &[],
            named("get", "extension-apiserver-authentication")
        )
        .await
    );
    assert!(
        !api.can(
            "alice",
            &[],
            named("get", "extension-apiserver-authentication")
        )
        .await
    );
}
