//! Tests for the kind registry.

use super::*;

#[test]
fn finds_kinds_by_resource_and_by_kind() {
    let pod = find("", "v1", "pods").expect("pods");
    assert_eq!(pod.kind, "Pod");
    assert_eq!(pod.api_version(), "v1");
    assert_eq!(pod.list_kind(), "PodList");
    assert!(pod.has_status());
    assert_eq!(pod.storage_prefix(), "/core/pods/");
    let deploy = find_by_kind("apps/v1", "Deployment").expect("deployment");
    assert_eq!(deploy.plural, "deployments");
    assert_eq!(deploy.api_version(), "apps/v1");
    assert_eq!(deploy.storage_prefix(), "/apps/deployments/");
    assert_eq!(deploy.qualified_kind(), "Deployment.apps");
    assert!(find("apps", "v1", "pods").is_none());
    assert!(find_by_kind("v1", "Deployment").is_none());
}

#[test]
fn versions_of_one_resource_share_storage() {
    let v1 = find("autoscaling", "v1", "horizontalpodautoscalers").expect("hpa v1");
    let v2 = find("autoscaling", "v2", "horizontalpodautoscalers").expect("hpa v2");
    assert_eq!(v1.storage_prefix(), v2.storage_prefix());
    assert_eq!(v1.storage_kind().version, "v2");
    let core = find("", "v1", "events").expect("events");
    let ev = find("events.k8s.io", "v1", "events").expect("events.k8s.io");
    assert_eq!(core.storage_prefix(), "/core/events/");
    assert_eq!(ev.storage_prefix(), "/core/events/");
    assert_eq!(ev.storage_kind().group, "");
}

#[test]
fn every_requested_kind_is_served_with_its_short_names() {
    let expect: &[(&str, &str, &[&str])] = &[
        ("", "pods", &["po"]),
        ("", "services", &["svc"]),
        ("", "namespaces", &["ns"]),
        ("", "nodes", &["no"]),
        ("", "configmaps", &["cm"]),
        ("", "events", &["ev"]),
        ("", "serviceaccounts", &["sa"]),
        ("", "persistentvolumes", &["pv"]),
        ("", "persistentvolumeclaims", &["pvc"]),
        ("", "resourcequotas", &["quota"]),
        ("", "replicationcontrollers", &["rc"]),
        ("", "limitranges", &["limits"]),
        ("", "endpoints", &["ep"]),
        ("", "secrets", &[]),
        ("apps", "deployments", &["deploy"]),
        ("apps", "replicasets", &["rs"]),
        ("apps", "daemonsets", &["ds"]),
        ("apps", "statefulsets", &["sts"]),
        ("apps", "controllerrevisions", &[]),
        ("batch", "cronjobs", &["cj"]),
        ("batch", "jobs", &[]),
        ("autoscaling", "horizontalpodautoscalers", &["hpa"]),
        ("networking.k8s.io", "ingresses", &["ing"]),
        ("networking.k8s.io", "networkpolicies", &["netpol"]),
        ("networking.k8s.io", "ingressclasses", &[]),
        ("policy", "poddisruptionbudgets", &["pdb"]),
        ("node.k8s.io", "runtimeclasses", &[]),
        ("scheduling.k8s.io", "priorityclasses", &["pc"]),
        ("coordination.k8s.io", "leases", &[]),
        ("discovery.k8s.io", "endpointslices", &[]),
        ("rbac.authorization.k8s.io", "roles", &[]),
        ("rbac.authorization.k8s.io", "clusterroles", &[]),
        ("rbac.authorization.k8s.io", "rolebindings", &[]),
        ("rbac.authorization.k8s.io", "clusterrolebindings", &[]),
        ("events.k8s.io", "events", &["ev"]),
        ("storage.k8s.io", "storageclasses", &["sc"]),
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            &["crd", "crds"],
        ),
    ];
    for (group, plural, short) in expect {
        let k = find_by_plural(group, plural).unwrap_or_else(|| panic!("{group}/{plural}"));
        assert_eq!(k.short_names, *short, "{group}/{plural}");
    }
    assert_eq!(kinds().len(), 46);
    assert_eq!(
        find_by_plural("apps", "deploy").map(|k| k.kind),
        Some("Deployment")
    );
    assert_eq!(
        find_by_plural("autoscaling", "hpa").map(|k| k.version),
        Some("v2")
    );
}

#[test]
fn subresources_report_their_kinds() {
    let deploy = find("apps", "v1", "deployments").expect("deployments");
    let scale = deploy.subresource("scale").expect("scale");
    assert_eq!(
        (scale.group, scale.version, scale.kind),
        ("autoscaling", "v1", "Scale")
    );
    let pod = find("", "v1", "pods").expect("pods");
    let eviction = pod.subresource("eviction").expect("eviction");
    assert_eq!((eviction.group, eviction.kind), ("policy", "Eviction"));
    assert_eq!(pod.subresource("log").map(|s| s.verbs), Some(&["get"][..]));
    assert!(pod.subresource("scale").is_none());
}

#[test]
fn every_kind_has_a_typed_decoder() {
    for k in kinds() {
        let obj = serde_json::json!({"apiVersion": k.api_version(), "kind": k.kind, "metadata": {"name": "x"}});
        assert!(
            crate::typed::round_trip(k.openapi_type, &obj).is_some(),
            "{}",
            k.openapi_type
        );
    }
}
