//! Tests of the quota evaluators against Kubernetes' rules.

use serde_json::json;

use super::*;

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap()
}

#[test]
fn pod_usage_sums_containers_and_takes_the_largest_init_container() {
    let pod = json!({"spec": {
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
            {"name": "b", "resources": {"limits": {"cpu": "300m", "memory": "64Mi"}}}
        ],
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]
    }});
    let u = usage("", "pods", &pod);
    assert_eq!(u["pods"], q("1"));
    assert_eq!(u["count/pods"], q("1"));
    assert_eq!(u["requests.cpu"], q("1"));
    assert_eq!(u["cpu"], q("1"));
    assert_eq!(u["requests.memory"], q("128Mi"));
    assert_eq!(u["limits.cpu"], q("500m"));
    assert_eq!(u["limits.memory"], q("64Mi"));
    let done = json!({"spec": {"containers": []}, "status": {"phase": "Succeeded"}});
    let u = usage("", "pods", &done);
    assert_eq!(u.keys().collect::<Vec<_>>(), vec!["count/pods"]);
}

#[test]
fn object_counts_services_and_claims() {
    assert_eq!(
        pretty(&usage("", "configmaps", &json!({}))),
        "configmaps=1,count/configmaps=1"
    );
    assert_eq!(
        pretty(&usage("apps", "deployments", &json!({}))),
        "count/deployments.apps=1"
    );
    let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}});
    assert_eq!(
        pretty(&usage("", "services", &svc)),
        "count/services=1,services=1,services.loadbalancers=0,services.nodeports=2"
    );
    let pvc = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
    let u = usage("", "persistentvolumeclaims", &pvc);
    assert_eq!(u["requests.storage"], q("1Gi"));
    assert_eq!(
        u["fast.storageclass.storage.k8s.io/requests.storage"],
        q("1Gi")
    );
    assert!(tracks("", "pods", "limits.cpu"));
    assert!(tracks("", "secrets", "secrets"));
    assert!(!tracks("", "secrets", "pods"));
    assert!(tracks("apps", "deployments", "count/deployments.apps"));
}

#[test]
fn scopes_select_pods_only() {
    let best_effort = json!({"spec": {"containers": [{"name": "a"}], "priorityClassName": "high"}});
    let terminating = json!({"spec": {"activeDeadlineSeconds": 10, "containers": [
        {"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
    let quota = |spec: serde_json::Value| json!({"spec": spec});
    let be = quota(json!({"scopes": ["BestEffort"]}));
    assert!(scopes_match(&be, "", "pods", &best_effort));
    assert!(!scopes_match(&be, "", "pods", &terminating));
    assert!(!scopes_match(&be, "", "configmaps", &json!({})));
    let term = quota(json!({"scopes": ["Terminating", "NotBestEffort"]}));
    assert!(scopes_match(&term, "", "pods", &terminating));
    assert!(!scopes_match(&term, "", "pods", &best_effort));
    let pc = |op: &str, values: serde_json::Value| {
        quota(json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": op, "values": values}]}}))
    };
    assert!(scopes_match(
        &pc("In", json!(["high"])),
        "",
        "pods",
        &best_effort
    ));
    assert!(!scopes_match(
        &pc("NotIn", json!(["high"])),
        "",
        "pods",
        &best_effort
    ));
    assert!(scopes_match(
        &pc("Exists", json!([])),
        "",
        "pods",
        &best_effort
    ));
    assert!(!scopes_match(
        &pc("Exists", json!([])),
        "",
        "pods",
        &terminating
    ));
    assert!(!scopes_match(
        &pc("DoesNotExist", json!([])),
        "",
        "pods",
        &terminating
    ));
    assert!(scopes_match(
        &quota(json!({})),
        "",
        "configmaps",
        &json!({})
    ));
}

#[test]
fn pods_must_state_what_a_quota_limits() {
    let pod = json!({"spec": {"containers": [
        {"name": "c2", "resources": {"limits": {"memory": "1Gi"}}},
        {"name": "c1", "resources": {}}
    ]}});
    assert_eq!(
        pod_constraints(["limits.cpu", "pods"], &pod),
        Err("must specify limits.cpu for: c1,c2".to_string())
    );
    assert_eq!(
        pod_constraints(["limits.memory", "requests.memory"], &pod),
        Err("must specify limits.memory for: c1; requests.memory for: c1".to_string())
    );
    assert_eq!(pod_constraints(["pods", "count/pods"], &pod), Ok(()));
}

#[test]
fn quota_resources_name_the_kind_they_count() {
    let k = |n: &str| kind_of(n).map(|(g, p)| format!("{g}/{p}"));
    assert_eq!(k("limits.cpu").as_deref(), Some("/pods"));
    assert_eq!(k("pods").as_deref(), Some("/pods"));
    assert_eq!(k("services.nodeports").as_deref(), Some("/services"));
    assert_eq!(
        k("requests.storage").as_deref(),
        Some("/persistentvolumeclaims")
    );
    assert_eq!(k("secrets").as_deref(), Some("/secrets"));
    assert_eq!(
        k("count/deployments.apps").as_deref(),
        Some("apps/deployments")
    );
    assert_eq!(
        k("count/widgets.example.com").as_deref(),
        Some("example.com/widgets")
    );
    assert_eq!(k("count/pods").as_deref(), Some("/pods"));
    assert_eq!(k("bananas"), None);
}

#[test]
fn the_cross_namespace_affinity_scope_selects_pods_with_such_terms() {
    let quota = json!({"spec": {"scopes": ["CrossNamespacePodAffinity"]}});
    let term = |extra: serde_json::Value| {
        let mut t = json!({"topologyKey": "zone", "labelSelector": {}});
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        t
    };
    let required = json!({"spec": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term(json!({"namespaces": ["other"]}))]}}}});
    let preferred = json!({"spec": {"affinity": {"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": term(json!({"namespaceSelector": {}}))}]}}}});
    let local = json!({"spec": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term(json!({}))]}}}});
    assert!(scopes_match(&quota, "", "pods", &required));
    assert!(scopes_match(&quota, "", "pods", &preferred));
    assert!(!scopes_match(&quota, "", "pods", &local));
    assert!(!scopes_match(&quota, "", "pods", &json!({"spec": {}})));
}
