//! Kubernetes' `NodeRestriction` admission plugin: a node's credential (`system:node:NAME`) may
//! change only its own Node (not its taints, nor labels outside the kubelet's set), its own
//! Lease in `kube-node-lease`, the status of pods bound to it (and delete them), and, as
//! Skiff's local-path provisioner, only volumes pinned to itself; on a Deployment, as the
//! scale-from-zero hold, only the last-request annotation and a scale from zero to one. Token requests of a node must
//! be bound to one of its pods (`admit_token_request`, called by the TokenRequest handler).
//! Everyone else passes untouched. Messages are Kubernetes'.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::forbidden;
use crate::error::ApiError;
use crate::nodeauthz::{NODE_ENDPOINT_SERVICE_ACCOUNT, NODE_LEASE_NAMESPACE, node_identity};
use crate::objects;
use crate::registry::{Admission, Admitted, Operation, Write};
use crate::state::{AppState, UserInfo};

/// The annotation of a mirror pod (the API copy of a node's static pod).
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The label namespace only administrators may set on Nodes.
const RESTRICTION_LABEL_NAMESPACE: &str = "node-restriction.kubernetes.io";

/// The plugin.
pub(crate) struct NodeRestriction;

impl Admission for NodeRestriction {
    fn admit<'a>(
        &'a self,
        _state: &'a AppState,
        op: Operation,
        write: &'a Write<'a>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
    ) -> Admitted<'a> {
        Box::pin(async move {
            let Some(node) = node_identity(write.user) else {
                return Ok(());
            };
            match (write.kind.group, write.kind.plural) {
                ("", "pods") => admit_pod(node, op, write, obj, old),
                ("", "nodes") => admit_node(node, op, write, obj, old),
                ("coordination.k8s.io", "leases") => admit_lease(node, write),
                ("", "persistentvolumes") => admit_volume(node, op, write, obj),
                ("apps", "deployments") => admit_deployment(node, write, obj, old),
                _ => Ok(()),
            }
        })
    }
}

fn node_name_of(pod: &Value) -> &str {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn labels(obj: &Value) -> Map<String, Value> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Kubernetes' `admitPod`, `admitPodStatus` and `admitPodEviction`.
fn admit_pod(
    node: &str,
    op: Operation,
    write: &Write<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    match write.subresource {
        None => match op {
            Operation::Create => {
                let mirror = obj
                    .pointer("/metadata/annotations")
                    .and_then(Value::as_object)
                    .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
                if !mirror {
                    return Err(forbidden(
                        write,
                        format_args!(
                            "pod does not have \"{MIRROR_ANNOTATION}\" annotation, node \"{node}\" can only create mirror pods"
                        ),
                    ));
                }
                if node_name_of(obj) != node {
                    return Err(forbidden(
                        write,
                        format_args!(
                            "node \"{node}\" can only create pods with spec.nodeName set to itself"
                        ),
                    ));
                }
                Ok(())
            }
            Operation::Delete => {
                if node_name_of(obj) != node {
                    return Err(forbidden(
                        write,
                        format_args!(
                            "node \"{node}\" can only delete pods with spec.nodeName set to itself"
                        ),
                    ));
                }
                Ok(())
            }
            // A delete that only marks the pod (grace period, finalizers) is stored as an
            // update: the node's deletion of its own pod, and nothing else, passes.
            Operation::Update
                if old.is_some_and(|old| {
                    node_name_of(old) == node && only_deletion_marked(old, obj)
                }) =>
            {
                Ok(())
            }
            Operation::Update => Err(forbidden(
                write,
                format_args!(
                    "unexpected operation \"UPDATE\", node \"{node}\" can only create and delete mirror pods"
                ),
            )),
        },
        Some("status") => {
            let Some(old) = old.filter(|_| op == Operation::Update) else {
                return Err(forbidden(
                    write,
                    format_args!("unexpected operation \"{}\"", op_name(op)),
                ));
            };
            if node_name_of(old) != node {
                return Err(forbidden(
                    write,
                    format_args!(
                        "node \"{node}\" can only update pod status for pods with spec.nodeName set to itself"
                    ),
                ));
            }
            if labels(old) != labels(obj) {
                return Err(forbidden(
                    write,
                    format_args!("node \"{node}\" cannot update labels through pod status"),
                ));
            }
            Ok(())
        }
        Some("eviction") => {
            let pod = old.unwrap_or(obj);
            if node_name_of(pod) != node {
                return Err(forbidden(
                    write,
                    format_args!(
                        "node \"{node}\" can only evict pods with spec.nodeName set to itself"
                    ),
                ));
            }
            Ok(())
        }
        Some(other) => Err(forbidden(
            write,
            format_args!(
                "unexpected pod subresource \"{other}\", only 'status' and 'eviction' are allowed"
            ),
        )),
    }
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    }
}

/// Whether `new` is `old` with only its deletion marked (and server-managed metadata changed).
fn only_deletion_marked(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
                "managedFields",
                "generation",
            ] {
                meta.remove(f);
            }
        }
        v
    };
    objects::is_deleting(new) && strip(old) == strip(new)
}

/// Kubernetes' `admitNode`: only its own Node; on create no restricted labels; on update no
/// taint changes and no restricted label changes.
fn admit_node(
    node: &str,
    op: Operation,
    write: &Write<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if write.name != node {
        return Err(forbidden(
            write,
            format_args!(
                "node \"{node}\" is not allowed to modify node \"{}\"",
                write.name
            ),
        ));
    }
    match (op, old) {
        (Operation::Create, _) => {
            let refused = forbidden_labels(&modified_labels(&labels(obj), &Map::new()));
            if !refused.is_empty() {
                return Err(forbidden(
                    write,
                    format_args!(
                        "node \"{node}\" is not allowed to set the following labels: {}",
                        refused.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        (Operation::Update, Some(old)) => {
            let taints = |v: &Value| v.pointer("/spec/taints").cloned().unwrap_or(Value::Null);
            let normalize = |t: Value| match t {
                Value::Array(a) if a.is_empty() => Value::Null,
                other => other,
            };
            if normalize(taints(old)) != normalize(taints(obj)) {
                return Err(forbidden(
                    write,
                    format_args!("node \"{node}\" is not allowed to modify taints"),
                ));
            }
            let refused = forbidden_labels(&modified_labels(&labels(obj), &labels(old)));
            if !refused.is_empty() {
                return Err(forbidden(
                    write,
                    format_args!(
                        "is not allowed to modify labels: {}",
                        refused.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Labels added, removed or changed between `old` and `new`.
fn modified_labels(new: &Map<String, Value>, old: &Map<String, Value>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            out.insert(k.clone());
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            out.insert(k.clone());
        }
    }
    out
}

/// The labels of `modified` a node may not set: `node-restriction.kubernetes.io/` ones, and
/// `kubernetes.io`/`k8s.io` ones outside the kubelet's own set.
fn forbidden_labels(modified: &BTreeSet<String>) -> BTreeSet<String> {
    modified
        .iter()
        .filter(|label| {
            let namespace = label.split_once('/').map(|(ns, _)| ns).unwrap_or_default();
            let restricted = namespace == RESTRICTION_LABEL_NAMESPACE
                || namespace.ends_with(&format!(".{RESTRICTION_LABEL_NAMESPACE}"));
            restricted || (is_kubernetes_label(namespace) && !is_kubelet_label(label, namespace))
        })
        .cloned()
        .collect()
}

fn is_kubernetes_label(namespace: &str) -> bool {
    namespace == "kubernetes.io"
        || namespace.ends_with(".kubernetes.io")
        || namespace == "k8s.io"
        || namespace.ends_with(".k8s.io")
}

/// Kubernetes' `kubeletapis.IsKubeletLabel`.
fn is_kubelet_label(label: &str, namespace: &str) -> bool {
    const LABELS: &[&str] = &[
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "node.kubernetes.io/instance-type",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/windows-build",
    ];
    const NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];
    LABELS.contains(&label)
        || NAMESPACES
            .iter()
            .any(|ns| namespace == *ns || namespace.ends_with(&format!(".{ns}")))
}

/// Kubernetes' `admitLease`: only its own Lease in `kube-node-lease`.
fn admit_lease(node: &str, write: &Write<'_>) -> Result<(), ApiError> {
    if write.namespace != Some(NODE_LEASE_NAMESPACE) {
        return Err(forbidden(
            write,
            format_args!(
                "can only access leases in the \"{NODE_LEASE_NAMESPACE}\" system namespace"
            ),
        ));
    }
    if write.name != node {
        return Err(forbidden(
            write,
            "can only access node lease with the same name as the requesting node",
        ));
    }
    Ok(())
}

/// The node a volume's required node affinity pins it to through `kubernetes.io/hostname`.
fn pinned_node(pv: &Value) -> Option<&str> {
    pv.pointer("/spec/nodeAffinity/required/nodeSelectorTerms")?
        .as_array()?
        .iter()
        .flat_map(|t| {
            t.get("matchExpressions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|e| e["key"] == "kubernetes.io/hostname" && e["operator"] == "In")?
        .pointer("/values/0")?
        .as_str()
}

/// Skiff's rule for the local-path provisioner every node runs: a node creates and deletes only
/// volumes pinned to itself.
fn admit_volume(node: &str, op: Operation, write: &Write<'_>, obj: &Value) -> Result<(), ApiError> {
    if !matches!(op, Operation::Create | Operation::Delete) || pinned_node(obj) == Some(node) {
        return Ok(());
    }
    Err(forbidden(
        write,
        format_args!(
            "node \"{node}\" can only create and delete persistent volumes pinned to itself through kubernetes.io/hostname node affinity"
        ),
    ))
}

/// Skiff's rule for the node's scale-from-zero hold (`host/src/net/hold.rs`): on a Deployment
/// a node only records the last request time (annotation) and scales it from zero to one.
fn admit_deployment(
    node: &str,
    write: &Write<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(old) = old else {
        return Err(forbidden(
            write,
            format_args!("node \"{node}\" cannot create or delete Deployments"),
        ));
    };
    let replicas = |v: &Value| v.pointer("/spec/replicas").and_then(Value::as_i64);
    if write.subresource == Some("scale") {
        if replicas(old) == Some(0) && replicas(obj) == Some(1) {
            return Ok(());
        }
        return Err(forbidden(
            write,
            format_args!("node \"{node}\" can only scale a Deployment from zero to one replica"),
        ));
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in ["resourceVersion", "managedFields"] {
                meta.remove(f);
            }
            if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                a.remove(skiff_meta::names::LAST_REQUEST);
                if a.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
        v
    };
    if write.subresource.is_none() && strip(old) == strip(obj) {
        return Ok(());
    }
    Err(forbidden(
        write,
        format_args!(
            "node \"{node}\" can only set the \"{}\" annotation of a Deployment",
            skiff_meta::names::LAST_REQUEST
        ),
    ))
}

/// Kubernetes' `admitServiceAccount` for a TokenRequest (`spec` is its spec) of
/// `namespace/name` by `user`: a node's token must be bound to a pod (apiVersion v1, with a
/// uid) that exists with that uid and is bound to the node. Skiff's one exception: the
/// node-endpoint ServiceAccount's token bound to the requesting Node itself.
pub(crate) async fn admit_token_request(
    state: &AppState,
    user: &UserInfo,
    namespace: &str,
    name: &str,
    spec: &Value,
) -> Result<(), ApiError> {
    let Some(node) = node_identity(user) else {
        return Ok(());
    };
    let sa_kind = skiff_kinds::find("", "v1", "serviceaccounts")
        .expect("serviceaccounts are a built-in kind");
    let write = Write {
        kind: sa_kind,
        namespace: Some(namespace),
        name,
        user,
        dry_run: false,
        subresource: Some("token"),
    };
    let refuse = |reason: String| Err(forbidden(&write, reason));
    let bound = spec.get("boundObjectRef").filter(|b| !b.is_null());
    let field = |f: &str| {
        bound
            .and_then(|b| b.get(f))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    if (namespace, name) == NODE_ENDPOINT_SERVICE_ACCOUNT
        && field("kind") == "Node"
        && field("name") == node
    {
        return Ok(());
    }
    if bound.is_none()
        || field("apiVersion") != "v1"
        || field("kind") != "Pod"
        || field("name").is_empty()
    {
        return refuse("node requested token not bound to a pod".into());
    }
    let uid = field("uid");
    if uid.is_empty() {
        return refuse("node requested token with a pod binding without a uid".into());
    }
    let pods = skiff_kinds::find("", "v1", "pods").expect("pods are a built-in kind");
    let pod_name = field("name");
    let kv = state
        .store
        .get(&objects::key(pods, Some(namespace), pod_name))
        .await?
        .ok_or_else(|| ApiError::not_found("", "pods", pod_name))?;
    let pod = objects::from_kv(pods, &kv)?;
    if objects::meta_str(&pod, "uid") != Some(uid) {
        return refuse(format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
        ));
    }
    if node_name_of(&pod) != node {
        return refuse("node requested token bound to a pod scheduled on a different node".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_may_set_only_kubelet_labels() {
        let set = |labels: &[&str]| labels.iter().map(|s| s.to_string()).collect();
        assert!(
            forbidden_labels(&set(&[
                "kubernetes.io/hostname",
                "node.kubernetes.io/exclude-from-external-load-balancers",
                "skiff.dev/runtime",
                "example.com/x",
            ]))
            .is_empty()
        );
        assert_eq!(
            forbidden_labels(&set(&[
                "node-restriction.kubernetes.io/pci",
                "a.node-restriction.kubernetes.io/x",
                "node-role.kubernetes.io/control-plane",
                "k8s.io/x",
            ])),
            set(&[
                "a.node-restriction.kubernetes.io/x",
                "k8s.io/x",
                "node-restriction.kubernetes.io/pci",
                "node-role.kubernetes.io/control-plane",
            ])
        );
    }

    #[test]
    fn a_deletion_mark_is_only_a_deletion_mark() {
        let old = serde_json::json!({"metadata": {"name": "p", "resourceVersion": "1"}, "spec": {"nodeName": "n1"}});
        let mut new = old.clone();
        new["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        new["metadata"]["resourceVersion"] = "2".into();
        assert!(only_deletion_marked(&old, &new));
        new["spec"]["nodeName"] = "n2".into();
        assert!(!only_deletion_marked(&old, &new));
        assert!(!only_deletion_marked(&old, &old));
    }
}
