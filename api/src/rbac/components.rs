//! The default policy of the cluster's own components (controller manager, scheduler, nodes,
//! the API server's node client): their ClusterRoles and ClusterRoleBindings, least privilege.
//!
//! Each role is a table of [`Rule`]s, so the Node authorizer (`crate::nodeauthz`) and the
//! `system:node` ClusterRole share one list ([`node_rules`]), as Kubernetes' `NodeRules()` does.

use serde_json::{Value, json};

/// One RBAC policy rule, as a static table row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub(crate) verbs: &'static [&'static str],
    pub(crate) groups: &'static [&'static str],
    /// Resources, `resource/subresource` for a subresource.
    pub(crate) resources: &'static [&'static str],
    /// Object names the rule is limited to; empty for any.
    pub(crate) names: &'static [&'static str],
}

const fn rule(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
) -> Rule {
    Rule {
        verbs,
        groups,
        resources,
        names: &[],
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const EVENT_WRITE: &[&str] = &["create", "update", "patch"];

impl Rule {
    /// Whether the rule allows `verb` on `group`/`resource[/subresource]` named `name`, with
    /// Kubernetes' `RuleAllows` semantics (`*` for any verb, group or resource; names never
    /// match an unnamed request).
    pub(crate) fn allows(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        let any = |list: &[&str], value: &str| list.iter().any(|v| *v == "*" || *v == value);
        if !any(self.verbs, verb) || !any(self.groups, group) {
            return false;
        }
        let resource_ok = match subresource {
            Some(sub) => {
                let full = format!("{resource}/{sub}");
                self.resources
                    .iter()
                    .any(|r| *r == "*" || *r == full || *r == format!("*/{sub}"))
            }
            None => any(self.resources, resource),
        };
        if !resource_ok {
            return false;
        }
        self.names.is_empty() || name.is_some_and(|n| self.names.contains(&n))
    }

    /// The rule as an `rbac.authorization.k8s.io/v1` PolicyRule.
    pub(crate) fn to_json(self) -> Value {
        let mut rule = json!({
            "verbs": self.verbs,
            "apiGroups": self.groups,
            "resources": self.resources,
        });
        if !self.names.is_empty() {
            rule["resourceNames"] = json!(self.names);
        }
        rule
    }
}

/// What a node may do beyond what the Node authorizer decides from its graph (Kubernetes'
/// `NodeRules()`, plus what a Skiff node does that a kubelet does not: it is also the cluster's
/// local-path provisioner — it watches every claim and volume and creates and deletes the
/// volumes it provisions —, its Service router, ingress and NetworkPolicy enforcer, which watch
/// Services, EndpointSlices, Deployments, Ingresses, IngressClasses, Namespaces,
/// NetworkPolicies and Nodes, annotate a scaled-to-zero Deployment and scale it up, and write
/// their Ingresses' `status`). Secrets and ConfigMaps are not here: they are graph decisions.
pub(crate) const NODE_RULES: &[Rule] = &[
    // Checking API access (the node endpoint's callers).
    rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
    rule(
        &["create"],
        &["authorization.k8s.io"],
        &["subjectaccessreviews", "localsubjectaccessreviews"],
    ),
    rule(READ, &[""], &["services", "endpoints", "namespaces"]),
    // Registering its Node and reporting its status (NodeRestriction: only its own).
    rule(&["create", "get", "list", "watch"], &[""], &["nodes"]),
    rule(&["update", "patch"], &[""], &["nodes/status", "nodes"]),
    rule(EVENT_WRITE, &["", "events.k8s.io"], &["events"]),
    // Its pods (NodeRestriction: only pods bound to it).
    rule(READ, &[""], &["pods"]),
    rule(&["create", "delete"], &[""], &["pods"]),
    rule(&["update", "patch"], &[""], &["pods/status"]),
    rule(&["create"], &[""], &["pods/eviction"]),
    // Claims and volumes: read as a kubelet does, listed, watched and (volumes) created and
    // deleted as the local-path provisioner.
    rule(READ, &[""], &["persistentvolumeclaims"]),
    rule(
        &["get", "update", "patch"],
        &[""],
        &["persistentvolumeclaims/status"],
    ),
    rule(
        &["get", "list", "watch", "create", "delete"],
        &[""],
        &["persistentvolumes"],
    ),
    rule(READ, &["storage.k8s.io"], &["storageclasses", "csidrivers"]),
    rule(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
    rule(
        &["get", "create", "update", "patch", "delete"],
        &["storage.k8s.io"],
        &["csinodes"],
    ),
    // Rotating its own client certificate.
    rule(
        &["create", "get", "list", "watch"],
        &["certificates.k8s.io"],
        &["certificatesigningrequests"],
    ),
    // Its Lease (the Node authorizer limits it to kube-node-lease/NAME).
    rule(
        &["get", "create", "update", "patch", "delete"],
        &["coordination.k8s.io"],
        &["leases"],
    ),
    // Tokens of its pods' ServiceAccounts (the Node authorizer limits which).
    rule(&["create"], &[""], &["serviceaccounts/token"]),
    rule(READ, &["node.k8s.io"], &["runtimeclasses"]),
    // The Service router, ingress and NetworkPolicy.
    rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
    rule(READ, &["apps"], &["deployments"]),
    rule(&["patch"], &["apps"], &["deployments"]),
    rule(
        &["get", "update", "patch"],
        &["apps"],
        &["deployments/scale"],
    ),
    rule(
        READ,
        &["networking.k8s.io"],
        &["ingresses", "ingressclasses", "networkpolicies"],
    ),
    rule(
        &["update", "patch"],
        &["networking.k8s.io"],
        &["ingresses/status"],
    ),
];

/// `system:kube-controller-manager`. Kubernetes gives each controller its own ServiceAccount
/// (`--use-service-account-credentials`) and this role only what the manager itself does;
/// Skiff runs every controller under the one `system:kube-controller-manager` identity, so this
/// role is the union of what its controllers do: the garbage collector and the namespace
/// controller read, update, patch and delete objects of every kind (as Kubernetes'
/// `generic-garbage-collector` and `namespace-controller` roles), so those verbs are `*`;
/// creates are limited to the kinds the controllers make. It holds no `bind`, `impersonate`,
/// Secret creation or role creation.
const CONTROLLER_MANAGER_RULES: &[Rule] = &[
    rule(
        &[
            "get",
            "list",
            "watch",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ],
        &["*"],
        &["*"],
    ),
    rule(
        &["create"],
        &[""],
        &[
            "pods",
            "pods/eviction",
            "endpoints",
            "persistentvolumeclaims",
            "serviceaccounts",
            "configmaps",
        ],
    ),
    rule(&["create"], &["", "events.k8s.io"], &["events"]),
    rule(
        &["create"],
        &["apps"],
        &["replicasets", "controllerrevisions"],
    ),
    rule(&["create"], &["batch"], &["jobs"]),
    rule(&["create"], &["discovery.k8s.io"], &["endpointslices"]),
    rule(&["create"], &["coordination.k8s.io"], &["leases"]),
    rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
    rule(
        &["create"],
        &["authorization.k8s.io"],
        &["subjectaccessreviews"],
    ),
    // csrapproving and csrsigning.
    rule(&["approve", "sign"], &["certificates.k8s.io"], &["signers"]),
    // The ClusterRole aggregation controller writes rules it does not hold itself.
    rule(
        &["escalate"],
        &["rbac.authorization.k8s.io"],
        &["clusterroles"],
    ),
];

/// `system:kube-scheduler`, as Kubernetes' role, plus RuntimeClasses (a pod's class picks its
/// nodes) and PriorityClasses.
const SCHEDULER_RULES: &[Rule] = &[
    rule(EVENT_WRITE, &["", "events.k8s.io"], &["events"]),
    rule(&["create"], &["coordination.k8s.io"], &["leases"]),
    rule(&["get", "update"], &["coordination.k8s.io"], &["leases"]),
    rule(READ, &[""], &["nodes"]),
    rule(&["delete", "get", "list", "watch"], &[""], &["pods"]),
    rule(&["create"], &[""], &["bindings", "pods/binding"]),
    rule(&["patch", "update"], &[""], &["pods/status"]),
    rule(
        READ,
        &[""],
        &[
            "replicationcontrollers",
            "services",
            "namespaces",
            "persistentvolumeclaims",
            "persistentvolumes",
        ],
    ),
    rule(READ, &["apps"], &["replicasets", "statefulsets"]),
    rule(READ, &["policy"], &["poddisruptionbudgets"]),
    rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
    rule(
        &["create"],
        &["authorization.k8s.io"],
        &["subjectaccessreviews"],
    ),
    rule(
        READ,
        &["storage.k8s.io"],
        &["csinodes", "csidrivers", "csistoragecapacities"],
    ),
    rule(READ, &["node.k8s.io"], &["runtimeclasses"]),
    rule(READ, &["scheduling.k8s.io"], &["priorityclasses"]),
];

/// `system:volume-scheduler`: the scheduler's volume binding (the selected-node annotation on
/// claims).
const VOLUME_SCHEDULER_RULES: &[Rule] = &[
    rule(
        &["get", "list", "patch", "update", "watch"],
        &[""],
        &["persistentvolumes", "persistentvolumeclaims"],
    ),
    rule(READ, &["storage.k8s.io"], &["storageclasses"]),
];

/// `system:node-proxier` (what kube-proxy reads).
const NODE_PROXIER_RULES: &[Rule] = &[
    rule(&["list", "watch"], &[""], &["services", "endpoints"]),
    rule(READ, &[""], &["nodes"]),
    rule(EVENT_WRITE, &["", "events.k8s.io"], &["events"]),
    rule(
        &["list", "watch"],
        &["discovery.k8s.io"],
        &["endpointslices"],
    ),
];

/// `system:kubelet-api-admin`: the API server's calls to nodes (logs, exec, proxy).
const KUBELET_API_ADMIN_RULES: &[Rule] = &[
    rule(&["get", "list", "watch", "proxy"], &[""], &["nodes"]),
    rule(
        &["*"],
        &[""],
        &[
            "nodes/proxy",
            "nodes/log",
            "nodes/stats",
            "nodes/metrics",
            "nodes/spec",
        ],
    ),
];

/// `system:controller:horizontal-pod-autoscaler`, as Kubernetes' controller role: read HPAs,
/// write their status, get and update any `*/scale`, list pods and their resource, custom and
/// external metrics, record Events. Skiff runs the controller as
/// `system:kube-controller-manager`, whose role covers all of it; this role is bound, as in
/// Kubernetes, to the `kube-system/horizontal-pod-autoscaler` ServiceAccount, for a controller
/// manager run with per-controller credentials.
const HPA_CONTROLLER_RULES: &[Rule] = &[
    rule(READ, &["autoscaling"], &["horizontalpodautoscalers"]),
    rule(
        &["update"],
        &["autoscaling"],
        &["horizontalpodautoscalers/status"],
    ),
    rule(&["get", "update"], &["*"], &["*/scale"]),
    rule(&["list"], &[""], &["pods"]),
    rule(&["list"], &["metrics.k8s.io"], &["pods"]),
    rule(&["get", "list"], &["custom.metrics.k8s.io"], &["*"]),
    rule(&["get", "list"], &["external.metrics.k8s.io"], &["*"]),
    rule(EVENT_WRITE, &["", "events.k8s.io"], &["events"]),
];

/// The name of the HorizontalPodAutoscaler controller's role and binding.
const HPA_CONTROLLER_ROLE: &str = "system:controller:horizontal-pod-autoscaler";

/// The user the controller manager authenticates as.
pub(crate) const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// The user the scheduler authenticates as.
pub(crate) const SCHEDULER_USER: &str = "system:kube-scheduler";

/// A ClusterRole of the default policy.
fn cluster_role(name: &str, rules: &[Rule]) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "rules": rules.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
    })
}

/// A ClusterRoleBinding of the default policy to users (none: Kubernetes' `system:node`
/// binding, kept empty because the Node authorizer decides for nodes).
fn cluster_role_binding(name: &str, role: &str, users: &[&str]) -> Value {
    let mut binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
    });
    if !users.is_empty() {
        binding["subjects"] = users
            .iter()
            .map(|u| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u}))
            .collect();
    }
    binding
}

/// The ClusterRoles and ClusterRoleBindings of the components, reconciled at start with the
/// rest of the default policy.
pub(crate) fn component_policy() -> Vec<Value> {
    vec![
        cluster_role(CONTROLLER_MANAGER_USER, CONTROLLER_MANAGER_RULES),
        cluster_role_binding(
            CONTROLLER_MANAGER_USER,
            CONTROLLER_MANAGER_USER,
            &[CONTROLLER_MANAGER_USER],
        ),
        cluster_role(SCHEDULER_USER, SCHEDULER_RULES),
        cluster_role_binding(SCHEDULER_USER, SCHEDULER_USER, &[SCHEDULER_USER]),
        cluster_role("system:volume-scheduler", VOLUME_SCHEDULER_RULES),
        cluster_role_binding(
            "system:volume-scheduler",
            "system:volume-scheduler",
            &[SCHEDULER_USER],
        ),
        cluster_role("system:node", NODE_RULES),
        cluster_role_binding("system:node", "system:node", &[]),
        cluster_role("system:node-proxier", NODE_PROXIER_RULES),
        cluster_role_binding(
            "system:node-proxier",
            "system:node-proxier",
            &["system:kube-proxy"],
        ),
        cluster_role(HPA_CONTROLLER_ROLE, HPA_CONTROLLER_RULES),
        {
            let mut b = cluster_role_binding(HPA_CONTROLLER_ROLE, HPA_CONTROLLER_ROLE, &[]);
            b["subjects"] = json!([{"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler",
                "namespace": "kube-system"}]);
            b
        },
        cluster_role("system:kubelet-api-admin", KUBELET_API_ADMIN_RULES),
        cluster_role_binding(
            "system:kube-apiserver-kubelet-client",
            "system:kubelet-api-admin",
            &["kube-apiserver-kubelet-client"],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(rules: &[Rule], verb: &str, group: &str, res: &str, sub: Option<&str>) -> bool {
        rules.iter().any(|r| r.allows(verb, group, res, sub, None))
    }

    #[test]
    fn node_rules_are_kubernetes_node_rules_plus_the_nodes_own_needs() {
        assert!(allowed(
            NODE_RULES,
            "update",
            "apps",
            "deployments",
            Some("scale")
        ));
        assert!(!allowed(NODE_RULES, "update", "apps", "deployments", None));
        assert!(allowed(NODE_RULES, "patch", "", "pods", Some("status")));
        assert!(!allowed(NODE_RULES, "update", "", "pods", None));
        assert!(allowed(
            NODE_RULES,
            "create",
            "",
            "serviceaccounts",
            Some("token")
        ));
        assert!(!allowed(NODE_RULES, "get", "", "secrets", None));
        assert!(!allowed(NODE_RULES, "get", "", "serviceaccounts", None));
        assert!(allowed(NODE_RULES, "delete", "", "persistentvolumes", None));
        assert!(!allowed(
            NODE_RULES,
            "create",
            "rbac.authorization.k8s.io",
            "roles",
            None
        ));
    }

    #[test]
    fn the_controller_manager_creates_only_what_controllers_make() {
        let r = CONTROLLER_MANAGER_RULES;
        assert!(allowed(r, "delete", "apps", "deployments", None));
        assert!(allowed(r, "create", "", "pods", None));
        assert!(!allowed(r, "create", "", "secrets", None));
        assert!(!allowed(
            r,
            "create",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None
        ));
        assert!(!allowed(
            r,
            "bind",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None
        ));
        assert!(!allowed(r, "impersonate", "", "users", None));
    }

    #[test]
    fn the_controller_manager_may_do_what_the_hpa_controller_does() {
        for (verb, group, res, sub) in [
            ("list", "autoscaling", "horizontalpodautoscalers", None),
            ("watch", "autoscaling", "horizontalpodautoscalers", None),
            (
                "update",
                "autoscaling",
                "horizontalpodautoscalers",
                Some("status"),
            ),
            ("get", "apps", "deployments", Some("scale")),
            ("update", "apps", "statefulsets", Some("scale")),
            ("list", "metrics.k8s.io", "pods", None),
            ("list", "", "pods", None),
            ("create", "", "events", None),
            ("patch", "", "events", None),
        ] {
            assert!(
                allowed(HPA_CONTROLLER_RULES, verb, group, res, sub),
                "hpa role: {verb} {group}/{res} {sub:?}"
            );
            assert!(
                allowed(CONTROLLER_MANAGER_RULES, verb, group, res, sub),
                "controller manager: {verb} {group}/{res} {sub:?}"
            );
        }
        assert!(!allowed(
            HPA_CONTROLLER_RULES,
            "update",
            "apps",
            "deployments",
            None
        ));
        assert!(!allowed(HPA_CONTROLLER_RULES, "delete", "", "pods", None));
    }

    #[test]
    fn every_binding_names_a_role_of_the_policy() {
        let policy = component_policy();
        let roles: Vec<&str> = policy
            .iter()
            .filter(|o| o["kind"] == "ClusterRole")
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        for b in policy.iter().filter(|o| o["kind"] == "ClusterRoleBinding") {
            let role = b["roleRef"]["name"].as_str().unwrap_or_default();
            assert!(roles.contains(&role), "{role}");
        }
    }

    #[test]
    fn subresources_match_only_by_their_full_name() {
        let r = rule(&["get"], &[""], &["pods/log"]);
        assert!(r.allows("get", "", "pods", Some("log"), None));
        assert!(!r.allows("get", "", "pods", None, None));
        let named = Rule {
            names: &["a"],
            ..rule(&["get"], &[""], &["pods"])
        };
        assert!(named.allows("get", "", "pods", None, Some("a")));
        assert!(!named.allows("get", "", "pods", None, None));
    }
}
