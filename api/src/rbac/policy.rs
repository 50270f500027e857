//! The default policy, as Kubernetes' `plugin/pkg/auth/authorizer/rbac/bootstrappolicy`: the
//! user-facing roles (cluster-admin, and admin, edit, view aggregated from
//! `system:aggregate-to-*`), discovery, basic-user and public-info-viewer, the certificate
//! approvers and the roles of add-ons, with their ClusterRoleBindings. The roles of the
//! cluster's own components (nodes, scheduler, controllers) come from `components`.
//!
//! Every resource Skiff serves is a Kubernetes resource, so the rules are Kubernetes' own.

use serde_json::{Value, json};

use super::rules::PolicyRule;

/// The label of every default object.
pub(crate) const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
/// The annotation that lets reconciliation add to an object (`"true"`) or not.
pub(crate) const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
const READ_UPDATE: &[&str] = &["get", "list", "watch", "update", "patch"];

const LEGACY: &str = "";
const APPS: &str = "apps";
const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";
const AUTOSCALING: &str = "autoscaling";
const BATCH: &str = "batch";
const CERTIFICATES: &str = "certificates.k8s.io";
const DISCOVERY: &str = "discovery.k8s.io";
const EXTENSIONS: &str = "extensions";
const POLICY: &str = "policy";
const RBAC: &str = "rbac.authorization.k8s.io";
const STORAGE: &str = "storage.k8s.io";
const NETWORKING: &str = "networking.k8s.io";
const EVENTS: &str = "events.k8s.io";

fn rule(verbs: &[&str]) -> PolicyRule {
    PolicyRule::verbs(verbs)
}

/// Kubernetes' `eventsRule()`: what a component needs to record Events.
fn events_rule() -> PolicyRule {
    rule(&["create", "update", "patch"])
        .groups(&[LEGACY, EVENTS])
        .resources(&["events"])
}

fn default_metadata(name: &str, labels: &[(&str, &str)]) -> Value {
    let mut label_map = serde_json::Map::new();
    label_map.insert(BOOTSTRAPPING_LABEL.into(), json!("rbac-defaults"));
    for (k, v) in labels {
        label_map.insert((*k).into(), json!(v));
    }
    json!({
        "name": name,
        "labels": label_map,
        "annotations": {AUTOUPDATE: "true"},
    })
}

/// A default ClusterRole with rules.
pub(crate) fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": default_metadata(name, labels),
        "rules": rules.iter().map(PolicyRule::to_json).collect::<Vec<_>>(),
    })
}

/// A default ClusterRole whose rules are those of the ClusterRoles labelled `aggregate: "true"`.
fn aggregated_role(name: &str, labels: &[(&str, &str)], aggregate: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": default_metadata(name, labels),
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {aggregate: "true"}}]},
        "rules": [],
    })
}

/// A subject of a default binding.
pub(crate) enum To<'a> {
    User(&'a str),
    Group(&'a str),
    ServiceAccount(&'a str, &'a str),
}

/// A default ClusterRoleBinding of the ClusterRole of the same name.
pub(crate) fn cluster_binding(name: &str, subjects: &[To<'_>]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|s| match s {
            To::User(n) => json!({"apiGroup": RBAC, "kind": "User", "name": n}),
            To::Group(n) => json!({"apiGroup": RBAC, "kind": "Group", "name": n}),
            To::ServiceAccount(ns, n) => {
                json!({"kind": "ServiceAccount", "name": n, "namespace": ns})
            }
        })
        .collect();
    let mut binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": default_metadata(name, &[]),
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
    });
    if !subjects.is_empty() {
        binding["subjects"] = Value::Array(subjects);
    }
    binding
}

const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

/// The default ClusterRoles (not the components').
pub(crate) fn cluster_roles() -> Vec<Value> {
    vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![
                rule(&["*"]).groups(&["*"]).resources(&["*"]),
                rule(&["*"]).urls(&["*"]),
            ],
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![rule(&["get"]).urls(&[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ])],
        ),
        cluster_role(
            "system:monitoring",
            &[],
            vec![rule(&["get"]).urls(&[
                "/healthz",
                "/healthz/*",
                "/livez",
                "/livez/*",
                "/metrics",
                "/metrics/slis",
                "/readyz",
                "/readyz/*",
            ])],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(&["create"])
                    .groups(&[AUTHORIZATION])
                    .resources(&["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                rule(&["create"])
                    .groups(&[AUTHENTICATION])
                    .resources(&["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![rule(&["get"]).urls(&["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        aggregated_role("admin", &[], AGGREGATE_TO_ADMIN),
        aggregated_role("edit", &[(AGGREGATE_TO_ADMIN, "true")], AGGREGATE_TO_EDIT),
        aggregated_role("view", &[(AGGREGATE_TO_EDIT, "true")], AGGREGATE_TO_VIEW),
        cluster_role(
            "system:aggregate-to-admin",
            &[(AGGREGATE_TO_ADMIN, "true")],
            vec![
                rule(&["create"])
                    .groups(&[AUTHORIZATION])
                    .resources(&["localsubjectaccessreviews"]),
                rule(READ_WRITE)
                    .groups(&[RBAC])
                    .resources(&["rolebindings", "roles"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[(AGGREGATE_TO_EDIT, "true")],
            aggregate_to_edit(),
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[(AGGREGATE_TO_VIEW, "true")],
            aggregate_to_view(),
        ),
        // What metrics-server ships with its APIService: reading usage is part of view, edit
        // and admin.
        cluster_role(
            "system:aggregated-metrics-reader",
            &[
                ("k8s-app", "metrics-server"),
                (AGGREGATE_TO_ADMIN, "true"),
                (AGGREGATE_TO_EDIT, "true"),
                (AGGREGATE_TO_VIEW, "true"),
            ],
            vec![
                rule(&["get", "list", "watch"])
                    .groups(&["metrics.k8s.io"])
                    .resources(&["pods", "nodes"]),
            ],
        ),
        cluster_role(
            "system:node-problem-detector",
            &[],
            vec![
                rule(&["get"]).groups(&[LEGACY]).resources(&["nodes"]),
                rule(&["patch"])
                    .groups(&[LEGACY])
                    .resources(&["nodes/status"]),
                events_rule(),
            ],
        ),
        cluster_role(
            "system:kubelet-api-admin",
            &[],
            vec![
                rule(&["get", "list", "watch"])
                    .groups(&[LEGACY])
                    .resources(&["nodes"]),
                rule(&["proxy"]).groups(&[LEGACY]).resources(&["nodes"]),
                rule(&["*"]).groups(&[LEGACY]).resources(&[
                    "nodes/log",
                    "nodes/metrics",
                    "nodes/proxy",
                    "nodes/stats",
                ]),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            &[],
            vec![
                rule(&["create", "get", "list", "watch"])
                    .groups(&[CERTIFICATES])
                    .resources(&["certificatesigningrequests"]),
            ],
        ),
        cluster_role(
            "system:auth-delegator",
            &[],
            vec![
                rule(&["create"])
                    .groups(&[AUTHENTICATION])
                    .resources(&["tokenreviews"]),
                rule(&["create"])
                    .groups(&[AUTHORIZATION])
                    .resources(&["subjectaccessreviews"]),
            ],
        ),
        cluster_role(
            "system:kube-aggregator",
            &[],
            vec![
                rule(READ)
                    .groups(&[LEGACY])
                    .resources(&["endpoints", "services"]),
            ],
        ),
        cluster_role(
            "system:kube-dns",
            &[],
            vec![
                rule(&["list", "watch"])
                    .groups(&[LEGACY])
                    .resources(&["endpoints", "services"]),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            &[],
            vec![
                rule(&["list", "watch"])
                    .groups(&[LEGACY])
                    .resources(&["endpoints", "services"]),
                rule(&["get", "list", "watch"])
                    .groups(&[LEGACY])
                    .resources(&["nodes"]),
                events_rule(),
                rule(&["list", "watch"])
                    .groups(&[DISCOVERY])
                    .resources(&["endpointslices"]),
            ],
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            &[],
            vec![
                rule(&["create", "delete", "get", "list", "watch"])
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumes"]),
                rule(&["get", "list", "watch", "update"])
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumeclaims"]),
                rule(READ).groups(&[STORAGE]).resources(&["storageclasses"]),
                rule(&["watch"]).groups(&[LEGACY]).resources(&["events"]),
                events_rule(),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &[],
            vec![
                rule(&["create"])
                    .groups(&[CERTIFICATES])
                    .resources(&["certificatesigningrequests/nodeclient"]),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            &[],
            vec![
                rule(&["create"])
                    .groups(&[CERTIFICATES])
                    .resources(&["certificatesigningrequests/selfnodeclient"]),
            ],
        ),
        cluster_role(
            "system:volume-scheduler",
            &[],
            vec![
                rule(READ_UPDATE)
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumes"]),
                rule(READ).groups(&[STORAGE]).resources(&["storageclasses"]),
                rule(READ_UPDATE)
                    .groups(&[LEGACY])
                    .resources(&["persistentvolumeclaims"]),
            ],
        ),
        approver("legacy-unknown-approver", "kubernetes.io/legacy-unknown"),
        approver("kubelet-serving-approver", "kubernetes.io/kubelet-serving"),
        approver(
            "kube-apiserver-client-approver",
            "kubernetes.io/kube-apiserver-client",
        ),
        approver(
            "kube-apiserver-client-kubelet-approver",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            &[],
            vec![rule(&["get"]).urls(&["/.well-known/openid-configuration", "/openid/v1/jwks"])],
        ),
    ]
}

/// `system:certificates.k8s.io:NAME`: may approve requests for one signer.
fn approver(name: &str, signer: &str) -> Value {
    cluster_role(
        &format!("system:certificates.k8s.io:{name}"),
        &[],
        vec![
            rule(&["approve"])
                .groups(&[CERTIFICATES])
                .resources(&["signers"])
                .names(&[signer]),
        ],
    )
}

fn aggregate_to_edit() -> Vec<PolicyRule> {
    vec![
        rule(READ).groups(&[LEGACY]).resources(&[
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
            "secrets",
            "services/proxy",
        ]),
        rule(&["impersonate"])
            .groups(&[LEGACY])
            .resources(&["serviceaccounts"]),
        rule(WRITE).groups(&[LEGACY]).resources(&[
            "pods",
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
        ]),
        rule(&["create"])
            .groups(&[LEGACY])
            .resources(&["pods/eviction"]),
        rule(WRITE).groups(&[LEGACY]).resources(&[
            "configmaps",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
            "services/proxy",
        ]),
        rule(&["create"])
            .groups(&[LEGACY])
            .resources(&["serviceaccounts/token"]),
        rule(WRITE).groups(&[APPS]).resources(&[
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ]),
        rule(WRITE)
            .groups(&[AUTOSCALING])
            .resources(&["horizontalpodautoscalers"]),
        rule(WRITE)
            .groups(&[BATCH])
            .resources(&["cronjobs", "jobs"]),
        rule(WRITE).groups(&[EXTENSIONS]).resources(&[
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "ingresses",
            "networkpolicies",
            "replicasets",
            "replicasets/scale",
            "replicationcontrollers/scale",
        ]),
        rule(WRITE)
            .groups(&[POLICY])
            .resources(&["poddisruptionbudgets"]),
        rule(WRITE)
            .groups(&[NETWORKING])
            .resources(&["ingresses", "networkpolicies"]),
    ]
}

fn aggregate_to_view() -> Vec<PolicyRule> {
    vec![
        rule(READ).groups(&[LEGACY]).resources(&[
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/status",
        ]),
        rule(READ).groups(&[LEGACY]).resources(&[
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "pods/log",
            "pods/status",
            "replicationcontrollers/status",
            "resourcequotas",
            "resourcequotas/status",
        ]),
        rule(READ).groups(&[LEGACY]).resources(&["namespaces"]),
        rule(READ)
            .groups(&[DISCOVERY])
            .resources(&["endpointslices"]),
        rule(READ).groups(&[APPS]).resources(&[
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ]),
        rule(READ).groups(&[AUTOSCALING]).resources(&[
            "horizontalpodautoscalers",
            "horizontalpodautoscalers/status",
        ]),
        rule(READ).groups(&[BATCH]).resources(&[
            "cronjobs",
            "cronjobs/status",
            "jobs",
            "jobs/status",
        ]),
        rule(READ).groups(&[EXTENSIONS]).resources(&[
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "ingresses",
            "ingresses/status",
            "networkpolicies",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "replicationcontrollers/scale",
        ]),
        rule(READ)
            .groups(&[POLICY])
            .resources(&["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        rule(READ).groups(&[NETWORKING]).resources(&[
            "ingresses",
            "ingresses/status",
            "networkpolicies",
        ]),
    ]
}

/// The default ClusterRoleBindings (not the components').
pub(crate) fn cluster_role_bindings() -> Vec<Value> {
    vec![
        cluster_binding("cluster-admin", &[To::Group("system:masters")]),
        cluster_binding("system:monitoring", &[To::Group("system:monitoring")]),
        cluster_binding("system:discovery", &[To::Group("system:authenticated")]),
        cluster_binding("system:basic-user", &[To::Group("system:authenticated")]),
        cluster_binding(
            "system:public-info-viewer",
            &[
                To::Group("system:authenticated"),
                To::Group("system:unauthenticated"),
            ],
        ),
        cluster_binding("system:node-proxier", &[To::User("system:kube-proxy")]),
        cluster_binding(
            "system:kube-dns",
            &[To::ServiceAccount("kube-system", "kube-dns")],
        ),
        cluster_binding(
            "system:volume-scheduler",
            &[To::User("system:kube-scheduler")],
        ),
        cluster_binding(
            "system:service-account-issuer-discovery",
            &[To::Group("system:serviceaccounts")],
        ),
        // Nodes joining with a bootstrap token of `skiff token create` (kubeadm's
        // kubelet-bootstrap and node-autoapprove bindings): they may ask for a node client
        // certificate, which csrapproving then approves; nodes may renew their own.
        cluster_binding(
            "system:node-bootstrapper",
            &[To::Group("system:bootstrappers:skiff:default-node-token")],
        ),
        cluster_binding(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &[To::Group("system:bootstrappers:skiff:default-node-token")],
        ),
        cluster_binding(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            &[To::Group("system:nodes")],
        ),
    ]
}
