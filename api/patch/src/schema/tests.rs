//! Tests of the generated schema table: merge keys, list types and the type graph.

use super::*;

const POD_SPEC: &str = "io.k8s.api.core.v1.PodSpec";
const CONTAINER: &str = "io.k8s.api.core.v1.Container";

#[test]
fn merge_keys_of_pod_fields() {
    let cases = [
        (
            POD_SPEC,
            "containers",
            Some(ListStrategy::Merge { key: "name" }),
        ),
        (
            POD_SPEC,
            "initContainers",
            Some(ListStrategy::Merge { key: "name" }),
        ),
        (
            POD_SPEC,
            "ephemeralContainers",
            Some(ListStrategy::Merge { key: "name" }),
        ),
        (
            POD_SPEC,
            "volumes",
            Some(ListStrategy::Merge { key: "name" }),
        ),
        (
            POD_SPEC,
            "imagePullSecrets",
            Some(ListStrategy::Merge { key: "name" }),
        ),
        (
            POD_SPEC,
            "hostAliases",
            Some(ListStrategy::Merge { key: "ip" }),
        ),
        (POD_SPEC, "tolerations", Some(ListStrategy::Atomic)),
        (CONTAINER, "env", Some(ListStrategy::Merge { key: "name" })),
        (
            CONTAINER,
            "ports",
            Some(ListStrategy::Merge {
                key: "containerPort",
            }),
        ),
        (
            CONTAINER,
            "volumeMounts",
            Some(ListStrategy::Merge { key: "mountPath" }),
        ),
        (CONTAINER, "args", Some(ListStrategy::Atomic)),
        (
            "io.k8s.api.core.v1.ServiceSpec",
            "ports",
            Some(ListStrategy::Merge { key: "port" }),
        ),
        (
            "io.k8s.api.core.v1.PodStatus",
            "conditions",
            Some(ListStrategy::Merge { key: "type" }),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "ownerReferences",
            Some(ListStrategy::Merge { key: "uid" }),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
            Some(ListStrategy::Set),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "labels",
            None,
        ),
    ];
    for (ty, name, expected) in cases {
        let info = field(ty, name).unwrap_or_else(|| panic!("{ty}.{name} is in the table"));
        assert_eq!(info.list, expected, "{ty}.{name}");
    }
}

#[test]
fn retain_keys_and_replace_strategies() {
    assert!(field(POD_SPEC, "volumes").unwrap().retain_keys);
    assert!(
        field("io.k8s.api.apps.v1.DeploymentSpec", "strategy")
            .unwrap()
            .retain_keys
    );
    assert!(!field(POD_SPEC, "containers").unwrap().retain_keys);
    assert!(
        field("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector")
            .unwrap()
            .replace
    );
}

#[test]
fn apply_list_semantics() {
    let ports = field(CONTAINER, "ports").unwrap();
    assert_eq!(ports.map_keys, &["containerPort", "protocol"]);
    assert_eq!(ports.list_type, Some("map"));
    assert_eq!(
        ports.apply_list(),
        Some(ApplyList::Map(&["containerPort", "protocol"]))
    );
    let finalizers = field(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
    )
    .unwrap();
    assert_eq!(finalizers.apply_list(), Some(ApplyList::Set));
    assert_eq!(
        field(POD_SPEC, "tolerations").unwrap().apply_list(),
        Some(ApplyList::Atomic)
    );
    // Job conditions merge by type in patches but are atomic for apply.
    let job_conditions = field("io.k8s.api.batch.v1.JobStatus", "conditions").unwrap();
    assert_eq!(
        job_conditions.list,
        Some(ListStrategy::Merge { key: "type" })
    );
    assert_eq!(job_conditions.apply_list(), Some(ApplyList::Atomic));
    assert_eq!(field(CONTAINER, "image").unwrap().apply_list(), None);
}

#[test]
fn type_graph_walks_from_kinds_to_nested_fields() {
    let deployment = type_for_kind("apps/v1", "Deployment").unwrap();
    assert_eq!(deployment, "io.k8s.api.apps.v1.Deployment");
    let env = lookup_path(
        deployment,
        &["spec", "template", "spec", "containers", "env"],
    )
    .unwrap();
    assert_eq!(env.type_name, Some("io.k8s.api.core.v1.EnvVar"));
    assert_eq!(env.kind, FieldKind::List);
    let limits = lookup_path(
        deployment,
        &[
            "spec",
            "template",
            "spec",
            "containers",
            "resources",
            "limits",
        ],
    )
    .unwrap();
    assert_eq!(limits.kind, FieldKind::Map);
    assert_eq!(limits.type_name, None);
    let selector = lookup_path(deployment, &["spec", "selector"]).unwrap();
    assert_eq!(selector.map_type, Some("atomic"));
    assert!(is_atomic_type(
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
    ));
    assert_eq!(lookup_path(deployment, &["spec", "nope"]), None);
}

#[test]
fn every_requested_kind_is_known() {
    let kinds = [
        ("v1", "Namespace"),
        ("v1", "Pod"),
        ("v1", "Service"),
        ("v1", "Endpoints"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Node"),
        ("v1", "Event"),
        ("v1", "ServiceAccount"),
        ("v1", "PersistentVolume"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "ResourceQuota"),
        ("v1", "LimitRange"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "ControllerRevision"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("autoscaling/v1", "HorizontalPodAutoscaler"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("networking.k8s.io/v1", "Ingress"),
        ("networking.k8s.io/v1", "IngressClass"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("storage.k8s.io/v1", "StorageClass"),
        ("node.k8s.io/v1", "RuntimeClass"),
        ("coordination.k8s.io/v1", "Lease"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("policy/v1", "PodDisruptionBudget"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("events.k8s.io/v1", "Event"),
    ];
    for (api_version, kind) in kinds {
        let ty = type_for_kind(api_version, kind).unwrap_or_else(|| panic!("{api_version} {kind}"));
        assert!(is_known(ty), "{ty}");
        assert_eq!(
            field(ty, "metadata").and_then(|m| m.type_name),
            Some("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "{ty}"
        );
    }
    assert!(is_known("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
    assert!(!is_known("example.com.v1.Widget"));
    assert_eq!(field("example.com.v1.Widget", "spec"), None);
}

#[test]
fn table_is_sorted_for_binary_search() {
    for pair in table::TYPES.windows(2) {
        assert!(
            pair[0].name < pair[1].name,
            "{} before {}",
            pair[0].name,
            pair[1].name
        );
    }
    for t in table::TYPES {
        for pair in t.fields.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{}: {} before {}",
                t.name,
                pair[0].0,
                pair[1].0
            );
        }
        for (_, info) in t.fields {
            if let Some(child) = info.type_name {
                assert!(
                    is_known(child),
                    "{}: child type {child} is in the table",
                    t.name
                );
            }
        }
    }
}

#[test]
fn required_fields() {
    assert!(field(POD_SPEC, "containers").unwrap().required);
    assert!(field(CONTAINER, "name").unwrap().required);
    assert!(!field(CONTAINER, "image").unwrap().required);
    assert!(
        field("io.k8s.api.apps.v1.DeploymentSpec", "selector")
            .unwrap()
            .required
    );
}
