//! The Pod Security checks' wording, level by level, against Kubernetes' messages.

use serde_json::{Value, json};

use super::{Level, violations};

fn pod(spec: Value) -> Value {
    json!({"metadata": {"name": "p"}, "spec": spec})
}

#[test]
fn levels_from_the_enforce_label() {
    assert_eq!(Level::from_label(None), Level::Baseline);
    assert_eq!(Level::from_label(Some("baseline")), Level::Baseline);
    assert_eq!(Level::from_label(Some("privileged")), Level::Privileged);
    assert_eq!(Level::from_label(Some("restricted")), Level::Restricted);
    assert_eq!(Level::from_label(Some("Privileged")), Level::Restricted);
}

#[test]
fn baseline_aggregates_in_kubernetes_check_order() {
    let p = pod(json!({
        "hostNetwork": true, "hostIPC": true, "hostPID": true,
        "initContainers": [{"name": "init", "image": "i",
            "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}}}],
        "containers": [
            {"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 80}],
             "securityContext": {"privileged": true, "procMount": "Unmasked",
                "capabilities": {"add": ["NET_ADMIN", "CHOWN", "NET_RAW"]}}},
            {"name": "b", "image": "i", "ports": [{"containerPort": 9, "hostPort": 9}],
             "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
        ],
        "securityContext": {"seccompProfile": {"type": "Unconfined"}},
        "volumes": [{"name": "v", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}}, {"name": "w", "hostPath": {"path": "/etc"}}],
    }));
    assert_eq!(
        violations(Level::Baseline, &p).unwrap(),
        "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true), \
         hostPort (containers \"a\", \"b\" use hostPorts 80, 8080, 9), \
         privileged (containers \"init\", \"a\" must not set securityContext.privileged=true), \
         procMount (container \"a\" must not set securityContext.procMount to \"Unmasked\"), \
         non-default capabilities (containers \"init\", \"a\" must not include \"NET_ADMIN\", \"NET_RAW\", \"SYS_ADMIN\" in securityContext.capabilities.add), \
         hostPath volumes (volumes \"v\", \"w\"), \
         seccompProfile (pod and container \"b\" must not set securityContext.seccompProfile.type to \"Unconfined\")"
    );
    assert_eq!(violations(Level::Privileged, &p), None);
}

#[test]
fn baseline_allows_the_default_set_and_a_user_namespace_proc_mount() {
    let p = pod(json!({
        "hostUsers": false,
        "containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 80}],
            "securityContext": {"privileged": false, "procMount": "Unmasked",
                "capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE"], "drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"}}}],
        "volumes": [{"name": "e", "emptyDir": {}}],
    }));
    assert_eq!(violations(Level::Baseline, &p), None);
}

#[test]
fn restricted_asks_for_non_root_no_escalation_drop_all_and_seccomp() {
    let p = pod(json!({
        "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i",
            "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": false, "runAsUser": 0,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CHOWN"]}}}],
        "volumes": [{"name": "v", "hostPath": {"path": "/"}}, {"name": "n", "nfs": {"server": "s", "path": "/"}}, {"name": "c", "configMap": {"name": "c"}}],
    }));
    assert_eq!(
        violations(Level::Restricted, &p).unwrap(),
        "allowPrivilegeEscalation != false (container \"a\" must set securityContext.allowPrivilegeEscalation=false), \
         unrestricted capabilities (container \"a\" must set securityContext.capabilities.drop=[\"ALL\"]; container \"b\" must not include \"CHOWN\" in securityContext.capabilities.add), \
         restricted volume types (volumes [\"n\" \"v\"] have restricted types), \
         runAsNonRoot != true (container \"b\" must not set securityContext.runAsNonRoot=false), \
         runAsUser=0 (container \"b\" must not set runAsUser=0), \
         seccompProfile (pod or containers \"a\", \"b\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
    );
    let ok = pod(json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "a", "image": "i", "securityContext": {"allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}],
        "volumes": [{"name": "c", "configMap": {"name": "c"}}],
    }));
    assert_eq!(violations(Level::Restricted, &ok), None);
    // Restricted includes baseline's own checks.
    let mut privileged = ok.clone();
    privileged["spec"]["hostPID"] = json!(true);
    assert_eq!(
        violations(Level::Restricted, &privileged).unwrap(),
        "host namespaces (hostPID=true)"
    );
}
