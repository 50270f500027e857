//! Tests for `as=Table` output.

use serde_json::{Value, json};

use super::*;
use crate::find_by_kind;

fn now() -> jiff::Timestamp {
    "2026-01-01T12:00:00Z".parse().expect("timestamp")
}

fn col_names(t: &Value) -> Vec<(String, i64)> {
    t["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["priority"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

#[test]
fn durations_match_kubectl() {
    let cases = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (5, "5s"),
        (119, "119s"),
        (182, "3m2s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 30 * 60, "5h30m"),
        (30 * 3600, "30h"),
        (3 * 86400, "3d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (100 * 86400, "100d"),
        (3 * 365 * 86400, "3y"),
        (3 * 365 * 86400 + 10 * 86400, "3y10d"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(secs), want, "{secs}");
    }
    assert_eq!(short_human_duration(182), "3m");
    assert_eq!(short_human_duration(3 * 86400 + 5), "3d");
}

#[test]
fn pod_table_snapshot() {
    let k = find_by_kind("v1", "Pod").expect("pod");
    let running = json!({
        "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2026-01-01T11:55:00Z"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]},
        "status": {
            "phase": "Running", "podIP": "10.1.0.5",
            "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T11:58:00Z"}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]
        }
    });
    let pending = json!({
        "metadata": {"name": "init", "namespace": "other", "creationTimestamp": "2026-01-01T11:59:55Z"},
        "spec": {"initContainers": [{"name": "i1", "image": "i"}, {"name": "i2", "image": "i"}], "containers": [{"name": "a", "image": "i"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "ready": false, "restartCount": 0, "state": {"running": {}}}
        ]}
    });
    let deleting = json!({
        "metadata": {"name": "old", "namespace": "default", "creationTimestamp": "2025-12-29T12:00:00Z", "deletionTimestamp": "2026-01-01T11:59:00Z"},
        "spec": {"containers": [{"name": "a", "image": "i"}]},
        "status": {"phase": "Running"}
    });
    let t = table(k, &[running, pending, deleting], "Metadata", now());
    assert_eq!(
        col_names(&t),
        vec![
            ("Name".into(), 0),
            ("Ready".into(), 0),
            ("Status".into(), 0),
            ("Restarts".into(), 0),
            ("Age".into(), 0),
            ("IP".into(), 1),
            ("Node".into(), 1),
            ("Nominated Node".into(), 1),
            ("Readiness Gates".into(), 1)
        ]
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    let rows: Vec<Value> = t["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["cells"].clone())
        .collect();
    assert_eq!(
        rows,
        vec![
            json!([
                "web-1",
                "1/2",
                "CrashLoopBackOff",
                "2 (2m ago)",
                "5m",
                "10.1.0.5",
                "node-a",
                "<none>",
                "<none>"
            ]),
            json!([
                "init", "0/1", "Init:1/2", "0", "5s", "<none>", "<none>", "<none>", "<none>"
            ]),
            json!([
                "old",
                "0/1",
                "Terminating",
                "0",
                "3d",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]),
        ]
    );
    assert_eq!(
        t["rows"][1]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
               "metadata": {"name": "init", "namespace": "other", "creationTimestamp": "2026-01-01T11:59:55Z"}})
    );
    let none = table(k, &[json!({"metadata": {"name": "x"}})], "None", now());
    assert!(none["rows"][0].get("object").is_none());
}

#[test]
fn completed_pod_shows_completed_and_row_condition() {
    let k = find_by_kind("v1", "Pod").expect("pod");
    let done = json!({
        "metadata": {"name": "job-x", "creationTimestamp": "2026-01-01T11:00:00Z"},
        "spec": {"containers": [{"name": "a", "image": "i"}]},
        "status": {"phase": "Succeeded", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
        ]}
    });
    let t = table(k, &[done], "None", now());
    assert_eq!(t["rows"][0]["cells"][2], "Completed");
    assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
}

#[test]
fn deployment_table_snapshot() {
    let k = find_by_kind("apps/v1", "Deployment").expect("deployment");
    let d = json!({
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2026-01-01T07:00:00Z"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web", "tier": "fe"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
            "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "side", "image": "busybox"}]}}
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    let t = table(k, &[d], "None", now());
    assert_eq!(
        t,
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": t["columnDefinitions"].clone(),
            "rows": [{"cells": ["web", "2/3", 3, 2, "5h", "app,side", "nginx:1.27,busybox", "app=web,env in (dev,prod),tier=fe"]}]
        })
    );
    assert_eq!(
        col_names(&t),
        vec![
            ("Name".into(), 0),
            ("Ready".into(), 0),
            ("Up-to-date".into(), 0),
            ("Available".into(), 0),
            ("Age".into(), 0),
            ("Containers".into(), 1),
            ("Images".into(), 1),
            ("Selector".into(), 1)
        ]
    );
    assert_eq!(t["columnDefinitions"][2]["type"], "integer");
}

/// Regression: a node whose Ready condition is `Unknown` printed `Unknown`; Kubernetes prints
/// `NotReady` for any status but True, and `Unknown` only when there is no Ready condition.
#[test]
fn node_with_unknown_ready_condition_prints_not_ready() {
    let k = find_by_kind("v1", "Node").expect("node");
    let status = |conditions: Value| {
        let n = json!({"metadata": {"name": "n", "creationTimestamp": "2025-12-01T12:00:00Z"},
                       "status": {"conditions": conditions}});
        table(k, &[n], "None", now())["rows"][0]["cells"][1].clone()
    };
    assert_eq!(
        status(json!([{"type": "Ready", "status": "True"}])),
        "Ready"
    );
    assert_eq!(
        status(json!([{"type": "Ready", "status": "False"}])),
        "NotReady"
    );
    assert_eq!(
        status(json!([{"type": "Ready", "status": "Unknown"}])),
        "NotReady"
    );
    assert_eq!(
        status(json!([{"type": "MemoryPressure", "status": "False"}])),
        "Unknown"
    );
    assert_eq!(status(json!([])), "Unknown");
}

#[test]
fn node_table_snapshot() {
    let k = find_by_kind("v1", "Node").expect("node");
    let n = json!({
        "metadata": {"name": "node-a", "creationTimestamp": "2025-12-01T12:00:00Z",
                     "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "node-a"}},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}, {"type": "Hostname", "address": "node-a"}],
            "nodeInfo": {"kubeletVersion": "v1.34.0-skiff", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0", "containerRuntimeVersion": "skiff://0.1.0"}
        }
    });
    let t = table(k, &[n], "None", now());
    assert_eq!(
        col_names(&t),
        vec![
            ("Name".into(), 0),
            ("Status".into(), 0),
            ("Roles".into(), 0),
            ("Age".into(), 0),
            ("Version".into(), 0),
            ("Internal-IP".into(), 1),
            ("External-IP".into(), 1),
            ("OS-Image".into(), 1),
            ("Kernel-Version".into(), 1),
            ("Container-Runtime".into(), 1)
        ]
    );
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "node-a",
            "Ready,SchedulingDisabled",
            "control-plane",
            "31d",
            "v1.34.0-skiff",
            "192.0.2.10",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0",
            "skiff://0.1.0"
        ])
    );
}

#[test]
fn other_kinds_have_kubectl_columns() {
    let cases: &[(&str, &str, Value, Value)] = &[
        (
            "v1",
            "Service",
            json!({"metadata": {"name": "web", "creationTimestamp": "2026-01-01T11:59:00Z"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"], "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}}),
            json!([
                "web",
                "NodePort",
                "10.96.0.5",
                "<none>",
                "80:30080/TCP,53/UDP",
                "60s",
                "app=web"
            ]),
        ),
        (
            "v1",
            "Namespace",
            json!({"metadata": {"name": "default", "creationTimestamp": "2026-01-01T10:00:00Z"}, "status": {"phase": "Active"}}),
            json!(["default", "Active", "120m"]),
        ),
        (
            "v1",
            "ConfigMap",
            json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}}),
            json!(["cfg", 2, "<unknown>"]),
        ),
        (
            "v1",
            "Secret",
            json!({"metadata": {"name": "s", "creationTimestamp": "2026-01-01T11:59:58Z"}, "type": "Opaque", "data": {"a": "MQ=="}}),
            json!(["s", "Opaque", 1, "2s"]),
        ),
        (
            "batch/v1",
            "Job",
            json!({"metadata": {"name": "j", "creationTimestamp": "2026-01-01T11:00:00Z"}, "spec": {"completions": 3, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}, "selector": {"matchLabels": {"x": "y"}}},
                "status": {"succeeded": 3, "startTime": "2026-01-01T11:00:00Z", "completionTime": "2026-01-01T11:00:42Z", "conditions": [{"type": "Complete", "status": "True"}]}}),
            json!(["j", "Complete", "3/3", "42s", "60m", "c", "i", "x=y"]),
        ),
        (
            "v1",
            "Event",
            json!({"metadata": {"name": "p.1"}, "type": "Normal", "reason": "Pulled", "message": "pulled ", "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
                "source": {"component": "kubelet", "host": "node-a"}, "firstTimestamp": "2026-01-01T11:50:00Z", "lastTimestamp": "2026-01-01T11:59:00Z", "count": 3}),
            json!([
                "60s",
                "Normal",
                "Pulled",
                "pod/p",
                "spec.containers{a}",
                "kubelet, node-a",
                "pulled",
                "10m",
                3,
                "p.1"
            ]),
        ),
        (
            "apps/v1",
            "StatefulSet",
            json!({"metadata": {"name": "db"}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "pg", "image": "postgres"}]}}}, "status": {"readyReplicas": 1}}),
            json!(["db", "1/2", "<unknown>", "pg", "postgres"]),
        ),
        (
            "coordination.k8s.io/v1",
            "Lease",
            json!({"metadata": {"name": "node-a"}, "spec": {"holderIdentity": "node-a"}}),
            json!(["node-a", "node-a", "<unknown>"]),
        ),
        (
            "batch/v1",
            "CronJob",
            json!({"metadata": {"name": "cj", "creationTimestamp": "2026-01-01T11:00:00Z"}, "spec": {"schedule": "*/5 * * * *", "suspend": false,
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
                "status": {"active": [{"name": "cj-1"}], "lastScheduleTime": "2026-01-01T11:55:00Z"}}),
            json!([
                "cj",
                "*/5 * * * *",
                "<none>",
                false,
                1,
                "5m",
                "60m",
                "c",
                "busybox",
                "<none>"
            ]),
        ),
        (
            "apps/v1",
            "ReplicaSet",
            json!({"metadata": {"name": "web-1"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
                "status": {"replicas": 2, "readyReplicas": 1}}),
            json!(["web-1", 2, 2, 1, "<unknown>", "c", "i", "app=web"]),
        ),
        (
            "v1",
            "ReplicationController",
            json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"tier": "fe", "app": "web"}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
                "status": {"replicas": 2, "readyReplicas": 1}}),
            json!(["web", 3, 2, 1, "<unknown>", "c", "i", "app=web,tier=fe"]),
        ),
        (
            "apps/v1",
            "DaemonSet",
            json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "c", "image": "i"}]}}},
                "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}}),
            json!([
                "agent",
                3,
                3,
                2,
                3,
                2,
                "kubernetes.io/os=linux",
                "<unknown>",
                "c",
                "i",
                "app=a"
            ]),
        ),
        (
            "v1",
            "PersistentVolumeClaim",
            json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv-1", "storageClassName": "local", "volumeMode": "Filesystem"},
                "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}}),
            json!([
                "data",
                "Bound",
                "pv-1",
                "1Gi",
                "RWO",
                "local",
                "<unset>",
                "<unknown>",
                "Filesystem"
            ]),
        ),
        (
            "storage.k8s.io/v1",
            "StorageClass",
            json!({"metadata": {"name": "fast"}, "provisioner": "example.com/disk", "allowVolumeExpansion": true}),
            json!([
                "fast",
                "example.com/disk",
                "Delete",
                "Immediate",
                true,
                "<unknown>"
            ]),
        ),
        (
            "storage.k8s.io/v1",
            "StorageClass",
            json!({"metadata": {"name": "old", "annotations": {"storageclass.beta.kubernetes.io/is-default-class": "true"}},
                "provisioner": "example.com/disk", "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"}),
            json!([
                "old (default)",
                "example.com/disk",
                "Retain",
                "WaitForFirstConsumer",
                false,
                "<unknown>"
            ]),
        ),
        (
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]},
                "status": {"currentReplicas": 2}}),
            json!([
                "h",
                "Deployment/web",
                "cpu: <unknown>/80%",
                "1",
                5,
                2,
                "<unknown>"
            ]),
        ),
        (
            "policy/v1",
            "PodDisruptionBudget",
            json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}}),
            json!(["p", "50%", "N/A", 1, "<unknown>"]),
        ),
        (
            "networking.k8s.io/v1",
            "Ingress",
            json!({"metadata": {"name": "i"}, "spec": {"ingressClassName": "skiff", "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}], "tls": [{"hosts": ["a.example.com"]}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}),
            json!([
                "i",
                "skiff",
                "a.example.com,b.example.com",
                "192.0.2.1",
                "80, 443",
                "<unknown>"
            ]),
        ),
        (
            "node.k8s.io/v1",
            "RuntimeClass",
            json!({"metadata": {"name": "oci"}, "handler": "oci"}),
            json!(["oci", "oci", "<unknown>"]),
        ),
        (
            "scheduling.k8s.io/v1",
            "PriorityClass",
            json!({"metadata": {"name": "high"}, "value": 1000, "globalDefault": true, "preemptionPolicy": "Never"}),
            json!(["high", 1000, true, "<unknown>", "Never"]),
        ),
    ];
    for (api_version, kind, obj, cells) in cases {
        let k = find_by_kind(api_version, kind).expect("kind");
        let t = table(k, std::slice::from_ref(obj), "None", now());
        assert_eq!(t["rows"][0]["cells"], *cells, "{kind}");
        assert_eq!(
            t["columnDefinitions"].as_array().map(Vec::len),
            cells.as_array().map(Vec::len),
            "{kind}"
        );
    }
}
