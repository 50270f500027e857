//! Tests for defaulting.

use serde_json::{Value, json};

use super::*;
use crate::find_by_kind;

fn kind(api_version: &str, k: &str) -> &'static Kind {
    find_by_kind(api_version, k).expect("known kind")
}

#[test]
fn pod_defaults_match_the_api_server() {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80}]}]}
    });
    apply(kind("v1", "Pod"), &mut pod);
    assert_eq!(
        pod,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{
                    "name": "app", "image": "nginx",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "Always",
                    "resources": {}
                }],
                "restartPolicy": "Always",
                "dnsPolicy": "ClusterFirst",
                "terminationGracePeriodSeconds": 30,
                "securityContext": {},
                "schedulerName": "default-scheduler",
                "enableServiceLinks": true,
                "serviceAccountName": "default",
                "serviceAccount": "default",
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                ]
            },
            "status": {"phase": "Pending", "qosClass": "BestEffort"}
        })
    );
}

#[test]
fn pull_policy_and_qos_follow_kubernetes() {
    assert_eq!(pull_policy("nginx"), "Always");
    assert_eq!(pull_policy("nginx:latest"), "Always");
    assert_eq!(pull_policy("nginx:1.27"), "IfNotPresent");
    assert_eq!(pull_policy("localhost:5000/app"), "Always");
    assert_eq!(pull_policy("localhost:5000/app:v1"), "IfNotPresent");
    assert_eq!(pull_policy("app@sha256:abcd"), "IfNotPresent");

    let mut guaranteed = json!({"spec": {"containers": [{"name": "a", "image": "i", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
    apply(kind("v1", "Pod"), &mut guaranteed);
    assert_eq!(guaranteed["status"]["qosClass"], "Guaranteed");
    assert_eq!(
        guaranteed["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "1", "memory": "1Gi"})
    );
    let mut equal = json!({"spec": {"containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}}}]}});
    apply(kind("v1", "Pod"), &mut equal);
    assert_eq!(equal["status"]["qosClass"], "Guaranteed");
    assert_eq!(
        equal["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "1"
    );
    let mut burstable = json!({"spec": {"containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "100m"}}}]}});
    apply(kind("v1", "Pod"), &mut burstable);
    assert_eq!(burstable["status"]["qosClass"], "Burstable");
}

#[test]
fn deployment_defaults_strategy_and_template() {
    let mut d = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
    apply(kind("apps/v1", "Deployment"), &mut d);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert!(d.get("status").is_none());
    let mut keep = json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}});
    apply(kind("apps/v1", "Deployment"), &mut keep);
    assert_eq!(keep["spec"]["replicas"], 0);
    assert_eq!(keep["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn workload_defaults() {
    let mut sts = json!({"spec": {}});
    apply(kind("apps/v1", "StatefulSet"), &mut sts);
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    let mut ds = json!({"spec": {}});
    apply(kind("apps/v1", "DaemonSet"), &mut ds);
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    let mut job = json!({"metadata": {"name": "j", "uid": "123"}, "spec": {"template": {"spec": {"containers": []}}}});
    apply(kind("batch/v1", "Job"), &mut job);
    assert_eq!(job["spec"]["completions"], 1);
    assert_eq!(job["spec"]["parallelism"], 1);
    assert_eq!(job["spec"]["backoffLimit"], 6);
    assert_eq!(job["spec"]["completionMode"], "NonIndexed");
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "123"}})
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["job-name"],
        "j"
    );
    assert_eq!(
        job["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "j"
    );
    let mut cj = json!({"spec": {"schedule": "* * * * *"}});
    apply(kind("batch/v1", "CronJob"), &mut cj);
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["suspend"], false);
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
}

#[test]
fn service_namespace_and_secret_defaults() {
    let mut svc = json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "TCP"}]}});
    apply(kind("v1", "Service"), &mut svc);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
    assert_eq!(
        svc["spec"]["ports"],
        json!([
            {"port": 80, "protocol": "TCP", "targetPort": 80},
            {"port": 443, "targetPort": "https", "protocol": "TCP"}
        ])
    );
    let mut ns = json!({"metadata": {"name": "team"}});
    apply(kind("v1", "Namespace"), &mut ns);
    assert_eq!(
        ns,
        json!({
            "metadata": {"name": "team", "labels": {"kubernetes.io/metadata.name": "team"}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        })
    );
    let mut secret = json!({"metadata": {"name": "s"}});
    apply(kind("v1", "Secret"), &mut secret);
    assert_eq!(secret["type"], "Opaque");
}

#[test]
fn secret_string_data_is_merged_into_data() {
    let mut secret = json!({"metadata": {"name": "s"}, "data": {"a": "MQ=="}, "stringData": {"b": "two", "a": "one"}});
    apply(kind("v1", "Secret"), &mut secret);
    assert_eq!(
        secret,
        json!({"metadata": {"name": "s"}, "data": {"a": "b25l", "b": "dHdv"}, "type": "Opaque"})
    );
}

#[test]
fn updates_keep_allocated_values() {
    let svc = kind("v1", "Service");
    let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"],
                              "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080, "targetPort": 80}]}});
    let mut new = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    apply_update(svc, &mut new, &old);
    assert_eq!(new["spec"]["clusterIP"], "10.96.0.7");
    assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.7"]));
    assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(
        crate::validate::validate(
            svc,
            &json!({"metadata": {"name": "web", "namespace": "d"}, "spec": new["spec"].clone()}),
            None
        ),
        Ok(())
    );

    let job = kind("batch/v1", "Job");
    let mut created = json!({"metadata": {"name": "j", "uid": "u1"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}});
    apply(job, &mut created);
    let mut replaced = json!({"metadata": {"name": "j", "uid": "u1"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}});
    replaced["spec"]["selector"] = Value::Null;
    apply_update(job, &mut replaced, &created);
    assert_eq!(replaced["spec"]["selector"], created["spec"]["selector"]);
    assert_eq!(
        replaced["spec"]["template"]["metadata"],
        created["spec"]["template"]["metadata"]
    );
}

#[test]
fn service_type_changes_drop_dependent_fields() {
    let svc = kind("v1", "Service");
    let mut old = json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.7",
                        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080, "targetPort": 80}]}});
    apply(svc, &mut old);
    let mut new = old.clone();
    new["spec"]["type"] = json!("ClusterIP");
    apply_update(svc, &mut new, &old);
    assert!(new["spec"]["ports"][0].get("nodePort").is_none());
    assert!(new["spec"].get("externalTrafficPolicy").is_none());
    assert_eq!(crate::validate::validate(svc, &new, Some(&old)), Ok(()));

    let mut ext = old.clone();
    ext["spec"]["type"] = json!("ExternalName");
    ext["spec"]["externalName"] = json!("example.com");
    apply_update(svc, &mut ext, &old);
    assert!(ext["spec"].get("clusterIP").is_none());
    assert_eq!(crate::validate::validate(svc, &ext, Some(&old)), Ok(()));
}

#[test]
fn rbac_and_limit_range_defaults() {
    let rb = kind("rbac.authorization.k8s.io/v1", "RoleBinding");
    let mut b = json!({"metadata": {"name": "b", "namespace": "d"}, "roleRef": {"kind": "Role", "name": "r"},
                       "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "default"}]});
    apply(rb, &mut b);
    assert_eq!(b["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(b["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert!(b["subjects"][1].get("apiGroup").is_none());
    assert_eq!(crate::validate::validate(rb, &b, None), Ok(()));

    let lr = kind("v1", "LimitRange");
    let mut l = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "default": {"memory": "1Gi"}}]}});
    apply(lr, &mut l);
    assert_eq!(
        l["spec"]["limits"][0]["default"],
        json!({"memory": "1Gi", "cpu": "2"})
    );
    assert_eq!(
        l["spec"]["limits"][0]["defaultRequest"],
        json!({"memory": "1Gi", "cpu": "2"})
    );
}

#[test]
fn a_replication_controller_defaults_selector_and_labels_from_its_template() {
    let mut rc = json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}
    });
    apply(kind("v1", "ReplicationController"), &mut rc);
    assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(rc["spec"]["replicas"], 1);
    assert_eq!(rc["spec"]["template"]["spec"]["restartPolicy"], "Always");
    // Given selector and labels are kept.
    let mut rc = json!({
        "metadata": {"name": "web", "labels": {"tier": "x"}},
        "spec": {"replicas": 0, "selector": {"app": "web"},
            "template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}
    });
    apply(kind("v1", "ReplicationController"), &mut rc);
    assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(rc["metadata"]["labels"], json!({"tier": "x"}));
    assert_eq!(rc["spec"]["replicas"], 0);
}
