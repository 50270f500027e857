//! The namespaced part of the default policy, as Kubernetes' `NamespaceRoles` and
//! `NamespaceRoleBindings` (`bootstrappolicy/namespace_policy.go`): Roles and RoleBindings in
//! `kube-system` and `kube-public` for leader locking, the extension API server's
//! authentication ConfigMap and the bootstrap-token controllers. Reconciled at start with the
//! cluster-wide policy; the system namespaces exist by then.

use serde_json::{Value, json};

use super::policy::{AUTOUPDATE, BOOTSTRAPPING_LABEL};
use super::rules::PolicyRule;

const RBAC: &str = "rbac.authorization.k8s.io";
const KUBE_SYSTEM: &str = "kube-system";
const KUBE_PUBLIC: &str = "kube-public";

fn metadata(namespace: &str, name: &str) -> Value {
    json!({
        "name": name,
        "namespace": namespace,
        "labels": {BOOTSTRAPPING_LABEL: "rbac-defaults"},
        "annotations": {AUTOUPDATE: "true"},
    })
}

fn role(namespace: &str, name: &str, rules: &[PolicyRule]) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": metadata(namespace, name),
        "rules": rules.iter().map(PolicyRule::to_json).collect::<Vec<_>>(),
    })
}

/// A subject: a user, or a ServiceAccount `(namespace, name)`.
enum Subject<'a> {
    User(&'a str),
    ServiceAccount(&'a str),
}

fn binding(namespace: &str, name: &str, role: &str, subjects: &[Subject<'_>]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|s| match s {
            Subject::User(n) => json!({"apiGroup": RBAC, "kind": "User", "name": n}),
            Subject::ServiceAccount(n) => {
                json!({"kind": "ServiceAccount", "name": n, "namespace": KUBE_SYSTEM})
            }
        })
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": metadata(namespace, name),
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": role},
        "subjects": subjects,
    })
}

fn events() -> PolicyRule {
    PolicyRule::verbs(&["create", "update", "patch"])
        .groups(&["", "events.k8s.io"])
        .resources(&["events"])
}

/// Leader locking on a ConfigMap of the component's name, as Kubernetes still grants.
fn leader_locking(component: &str) -> Vec<PolicyRule> {
    vec![
        PolicyRule::verbs(&["watch"])
            .groups(&[""])
            .resources(&["configmaps"]),
        PolicyRule::verbs(&["get", "update"])
            .groups(&[""])
            .resources(&["configmaps"])
            .names(&[component]),
    ]
}

/// The default Roles and RoleBindings.
pub(crate) fn namespaced_policy() -> Vec<Value> {
    let read = ["get", "list", "watch"];
    vec![
        role(
            KUBE_SYSTEM,
            "extension-apiserver-authentication-reader",
            &[PolicyRule::verbs(&read)
                .groups(&[""])
                .resources(&["configmaps"])
                .names(&["extension-apiserver-authentication"])],
        ),
        role(
            KUBE_SYSTEM,
            "system::leader-locking-kube-controller-manager",
            &leader_locking("kube-controller-manager"),
        ),
        role(
            KUBE_SYSTEM,
            "system::leader-locking-kube-scheduler",
            &leader_locking("kube-scheduler"),
        ),
        role(
            KUBE_SYSTEM,
            "system:controller:bootstrap-signer",
            &[PolicyRule::verbs(&read)
                .groups(&[""])
                .resources(&["secrets"])],
        ),
        role(
            KUBE_SYSTEM,
            "system:controller:cloud-provider",
            &[PolicyRule::verbs(&["create", "get", "list", "watch"])
                .groups(&[""])
                .resources(&["configmaps"])],
        ),
        role(
            KUBE_SYSTEM,
            "system:controller:token-cleaner",
            &[
                PolicyRule::verbs(&["delete", "get", "list", "watch"])
                    .groups(&[""])
                    .resources(&["secrets"]),
                events(),
            ],
        ),
        role(
            KUBE_PUBLIC,
            "system:controller:bootstrap-signer",
            &[
                PolicyRule::verbs(&read)
                    .groups(&[""])
                    .resources(&["configmaps"]),
                PolicyRule::verbs(&["update"])
                    .groups(&[""])
                    .resources(&["configmaps"])
                    .names(&["cluster-info"]),
                events(),
            ],
        ),
        binding(
            KUBE_SYSTEM,
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            &[
                Subject::User("system:kube-controller-manager"),
                Subject::User("system:kube-scheduler"),
            ],
        ),
        binding(
            KUBE_SYSTEM,
            "system::leader-locking-kube-controller-manager",
            "system::leader-locking-kube-controller-manager",
            &[
                Subject::User("system:kube-controller-manager"),
                Subject::ServiceAccount("kube-controller-manager"),
            ],
        ),
        binding(
            KUBE_SYSTEM,
            "system::leader-locking-kube-scheduler",
            "system::leader-locking-kube-scheduler",
            &[
                Subject::User("system:kube-scheduler"),
                Subject::ServiceAccount("kube-scheduler"),
            ],
        ),
        binding(
            KUBE_SYSTEM,
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            &[Subject::ServiceAccount("bootstrap-signer")],
        ),
        binding(
            KUBE_SYSTEM,
            "system:controller:cloud-provider",
            "system:controller:cloud-provider",
            &[Subject::ServiceAccount("cloud-provider")],
        ),
        binding(
            KUBE_SYSTEM,
            "system:controller:token-cleaner",
            "system:controller:token-cleaner",
            &[Subject::ServiceAccount("token-cleaner")],
        ),
        binding(
            KUBE_PUBLIC,
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            &[Subject::ServiceAccount("bootstrap-signer")],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_names_a_role_of_its_own_namespace() {
        let all = namespaced_policy();
        let roles: Vec<(&str, &str)> = all
            .iter()
            .filter(|o| o["kind"] == "Role")
            .map(|o| {
                (
                    o["metadata"]["namespace"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        let bindings: Vec<&Value> = all.iter().filter(|o| o["kind"] == "RoleBinding").collect();
        assert_eq!(bindings.len(), 7);
        for b in bindings {
            let ns = b["metadata"]["namespace"].as_str().unwrap();
            let role = b["roleRef"]["name"].as_str().unwrap();
            assert!(roles.contains(&(ns, role)), "{b}");
            assert!(!b["subjects"].as_array().unwrap().is_empty(), "{b}");
        }
    }
}
