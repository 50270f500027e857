//! Tests of JSON patch, merge patch and strategic merge patch on realistic Kubernetes objects.

use serde_json::{Value, json};

use crate::{Error, json_patch, merge_patch, strategic_merge_patch};

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
const POD: &str = "io.k8s.api.core.v1.Pod";
const SERVICE: &str = "io.k8s.api.core.v1.Service";

fn smp(doc: &Value, patch: Value, ty: &str) -> Value {
    strategic_merge_patch(doc, &patch, ty).unwrap_or_else(|e| panic!("patch failed: {e}"))
}

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    })
}

fn with_containers(mut doc: Value, containers: Value) -> Value {
    doc["spec"]["template"]["spec"]["containers"] = containers;
    doc
}

fn two_containers() -> Value {
    json!([
        {"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
        {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]}
    ])
}

#[test]
fn kubectl_apply_second_run_changes_image_in_order() {
    let live = deployment(two_containers());
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "app", "image": "nginx:1.27"}]
        }}}
    });
    let mut expected = deployment(json!([
        {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
        {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]}
    ]));
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!("{\"new\":true}\n");
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);
}

#[test]
fn last_applied_annotation_patch_alone() {
    let live = deployment(two_containers());
    let patch = json!({"metadata": {"annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"apps/v1\"}\n"
    }}});
    let mut expected = live.clone();
    expected["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"apps/v1\"}\n"});
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);
}

#[test]
fn set_element_order_reorders_and_adds_containers() {
    let live = deployment(two_containers());
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "metrics"}, {"name": "app"}],
        "containers": [{"name": "metrics", "image": "prom/exporter:1"}]
    }}}});
    let expected = with_containers(
        live.clone(),
        json!([
            {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]},
            {"name": "metrics", "image": "prom/exporter:1"},
            {"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
        ]),
    );
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);
}

#[test]
fn env_merges_by_name() {
    let live = deployment(json!([{"name": "app", "image": "nginx", "env": [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"}
    ]}]));
    // Changing an existing variable keeps the order.
    let changed = smp(
        &live,
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "B", "value": "20"}]}
        ]}}}}),
        DEPLOYMENT,
    );
    assert_eq!(
        changed,
        with_containers(
            live.clone(),
            json!([{"name": "app", "image": "nginx", "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "value": "20"}
            ]}])
        )
    );
    // Without $setElementOrder a new item goes before the server-only items, as in Kubernetes.
    let added = smp(
        &live,
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "C", "value": "3"}]}
        ]}}}}),
        DEPLOYMENT,
    );
    assert_eq!(
        added,
        with_containers(
            live.clone(),
            json!([{"name": "app", "image": "nginx", "env": [
                {"name": "C", "value": "3"},
                {"name": "A", "value": "1"},
                {"name": "B", "value": "2"}
            ]}])
        )
    );
    // kubectl sends $setElementOrder to put it last.
    let ordered = smp(
        &live,
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{
                "name": "app",
                "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                "env": [{"name": "C", "value": "3"}]
            }]
        }}}}),
        DEPLOYMENT,
    );
    assert_eq!(
        ordered,
        with_containers(
            live,
            json!([{"name": "app", "image": "nginx", "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "value": "2"},
                {"name": "C", "value": "3"}
            ]}])
        )
    );
}

#[test]
fn container_ports_merge_by_container_port() {
    let live = deployment(json!([{"name": "app", "image": "nginx", "ports": [
        {"containerPort": 80, "name": "http", "protocol": "TCP"}
    ]}]));
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "ports": [
        {"containerPort": 80, "name": "web"},
        {"containerPort": 443, "name": "https"}
    ]}]}}}});
    let expected = with_containers(
        live.clone(),
        json!([{"name": "app", "image": "nginx", "ports": [
            {"containerPort": 80, "name": "web", "protocol": "TCP"},
            {"containerPort": 443, "name": "https"}
        ]}]),
    );
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);
}

#[test]
fn volume_mounts_merge_by_mount_path_and_delete_directive() {
    let live = deployment(json!([{"name": "app", "image": "nginx", "volumeMounts": [
        {"name": "data", "mountPath": "/data"},
        {"name": "config", "mountPath": "/etc/config"}
    ]}]));
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "volumeMounts": [
        {"mountPath": "/data", "$patch": "delete"},
        {"mountPath": "/etc/config", "readOnly": true}
    ]}]}}}});
    let expected = with_containers(
        live.clone(),
        json!([{"name": "app", "image": "nginx", "volumeMounts": [
            {"name": "config", "mountPath": "/etc/config", "readOnly": true}
        ]}]),
    );
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);
}

#[test]
fn null_deletes_fields_and_unmatched_nulls_are_dropped() {
    let live = deployment(two_containers());
    let patch = json!({
        "metadata": {"labels": {"tier": null, "missing": null}},
        "spec": {"replicas": null, "paused": null}
    });
    let mut expected = live.clone();
    expected["metadata"]["labels"] = json!({"app": "web"});
    expected["spec"]
        .as_object_mut()
        .unwrap()
        .shift_remove("replicas");
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);
}

#[test]
fn patch_replace_directive_in_list_and_map() {
    let live = deployment(two_containers());
    let patch = json!({
        "metadata": {"labels": {"$patch": "replace", "app": "new"}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "only", "image": "alpine"},
            {"$patch": "replace"}
        ]}}}
    });
    let mut expected = with_containers(live.clone(), json!([{"name": "only", "image": "alpine"}]));
    expected["metadata"]["labels"] = json!({"app": "new"});
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);
}

#[test]
fn patch_delete_directive_on_map() {
    let live = deployment(two_containers());
    // As in Kubernetes, the map is emptied; a deleted map that did not exist is not created.
    let patch = json!({
        "metadata": {"annotations": {"$patch": "delete"}, "labels": null},
        "spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}, "template": {"spec": {"securityContext": {"$patch": "delete"}}}}
    });
    let mut expected = live.clone();
    expected["metadata"]["annotations"] = json!({});
    expected["metadata"]
        .as_object_mut()
        .unwrap()
        .shift_remove("labels");
    expected["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {}});
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);
}

#[test]
fn patch_merge_directive_is_the_default() {
    let live = deployment(two_containers());
    let patch = json!({"metadata": {"labels": {"$patch": "merge", "extra": "1"}}});
    let mut expected = live.clone();
    expected["metadata"]["labels"] = json!({"app": "web", "tier": "frontend", "extra": "1"});
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);
}

#[test]
fn retain_keys_clears_other_union_members() {
    let live = deployment(two_containers());
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let mut expected = live.clone();
    expected["spec"]["strategy"] = json!({"type": "Recreate"});
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);

    let mut live = live;
    live["spec"]["template"]["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    let patch = json!({"spec": {"template": {"spec": {"volumes": [
        {"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "settings"}}
    ]}}}});
    let mut expected = live.clone();
    expected["spec"]["template"]["spec"]["volumes"] =
        json!([{"name": "data", "configMap": {"name": "settings"}}]);
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);

    let bad =
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
    assert!(matches!(
        strategic_merge_patch(&live, &bad, DEPLOYMENT),
        Err(Error::InvalidPatch(_))
    ));
}

fn pod(metadata: Value, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

#[test]
fn finalizers_are_a_merged_set_with_deletion_list() {
    let live = pod(
        json!({"name": "p", "finalizers": ["example.com/a", "example.com/b"]}),
        json!({"containers": [{"name": "app", "image": "nginx"}]}),
    );
    let deleted = smp(
        &live,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}}),
        POD,
    );
    assert_eq!(
        deleted["metadata"],
        json!({"name": "p", "finalizers": ["example.com/b"]})
    );

    // New values come before the server-only ones, duplicates are merged.
    let merged = smp(
        &live,
        json!({"metadata": {"finalizers": ["example.com/c", "example.com/b"]}}),
        POD,
    );
    assert_eq!(
        merged["metadata"],
        json!({"name": "p", "finalizers": ["example.com/c", "example.com/a", "example.com/b"]})
    );

    let ordered = smp(
        &live,
        json!({"metadata": {
            "$setElementOrder/finalizers": ["example.com/a", "example.com/b", "example.com/c"],
            "finalizers": ["example.com/c"]
        }}),
        POD,
    );
    assert_eq!(
        ordered["metadata"],
        json!({"name": "p", "finalizers": ["example.com/a", "example.com/b", "example.com/c"]})
    );
}

#[test]
fn tolerations_are_replaced_whole() {
    let live = pod(
        json!({"name": "p"}),
        json!({
            "containers": [{"name": "app", "image": "nginx"}],
            "tolerations": [
                {"key": "a", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "b", "operator": "Exists"}
            ]
        }),
    );
    let patch = json!({"spec": {"tolerations": [{"key": "c", "operator": "Equal", "value": "x"}]}});
    let expected = pod(
        json!({"name": "p"}),
        json!({
            "containers": [{"name": "app", "image": "nginx"}],
            "tolerations": [{"key": "c", "operator": "Equal", "value": "x"}]
        }),
    );
    assert_eq!(smp(&live, patch, POD), expected);
}

#[test]
fn host_aliases_pull_secrets_and_owner_references() {
    let live = pod(
        json!({"name": "p", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u-1"}
        ]}),
        json!({
            "containers": [{"name": "app", "image": "nginx"}],
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a.local"]}],
            "imagePullSecrets": [{"name": "registry-1"}]
        }),
    );
    let patch = json!({
        "metadata": {"ownerReferences": [{"uid": "u-1", "controller": true}]},
        "spec": {
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b.local"]}, {"ip": "10.0.0.2", "hostnames": ["c.local"]}],
            "imagePullSecrets": [{"name": "registry-2"}]
        }
    });
    let expected = pod(
        json!({"name": "p", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u-1", "controller": true}
        ]}),
        json!({
            "containers": [{"name": "app", "image": "nginx"}],
            "hostAliases": [
                {"ip": "10.0.0.1", "hostnames": ["b.local"]},
                {"ip": "10.0.0.2", "hostnames": ["c.local"]}
            ],
            "imagePullSecrets": [{"name": "registry-2"}, {"name": "registry-1"}]
        }),
    );
    assert_eq!(smp(&live, patch, POD), expected);
}

#[test]
fn pod_conditions_merge_by_type() {
    let mut live = pod(
        json!({"name": "p"}),
        json!({"containers": [{"name": "app", "image": "nginx"}]}),
    );
    live["status"] = json!({"phase": "Pending", "conditions": [
        {"type": "Ready", "status": "False"},
        {"type": "PodScheduled", "status": "True"}
    ]});
    let patch = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    let mut expected = live.clone();
    expected["status"] = json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"},
        {"type": "PodScheduled", "status": "True"}
    ]});
    assert_eq!(smp(&live, patch, POD), expected);
}

#[test]
fn service_ports_merge_by_port() {
    let live = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
        ]}
    });
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
    let mut expected = live.clone();
    expected["spec"]["ports"] =
        json!([{"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"}]);
    assert_eq!(smp(&live, patch, SERVICE), expected);
}

#[test]
fn directives_in_new_values_are_never_stored() {
    let mut live = deployment(two_containers());
    live["metadata"]
        .as_object_mut()
        .unwrap()
        .shift_remove("annotations");
    let patch = json!({
        "metadata": {"annotations": {"owner": "team-a", "gone": null}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}, {"name": "metrics"}],
            "containers": [{
                "name": "metrics",
                "image": "prom/exporter:1",
                "$setElementOrder/env": [{"name": "PORT"}],
                "env": [{"name": "PORT", "value": "9100"}],
                "securityContext": {"$patch": "replace", "runAsNonRoot": true, "runAsUser": null}
            }],
            "volumes": [{"name": "scratch", "emptyDir": {}, "$retainKeys": ["emptyDir", "name"]}]
        }}}
    });
    let mut expected = with_containers(
        live.clone(),
        json!([
            {"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]},
            {
                "name": "metrics",
                "image": "prom/exporter:1",
                "env": [{"name": "PORT", "value": "9100"}],
                "securityContext": {"runAsNonRoot": true}
            }
        ]),
    );
    expected["metadata"]["annotations"] = json!({"owner": "team-a"});
    expected["spec"]["template"]["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);
}

#[test]
fn unknown_type_falls_back_to_merge_patch() {
    let live = json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"items": [{"name": "a"}, {"name": "b"}], "config": {"a": 1, "b": 2}}
    });
    let patch = json!({"spec": {"items": [{"name": "c"}], "config": {"b": null, "c": 3}}});
    let expected = json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"items": [{"name": "c"}], "config": {"a": 1, "c": 3}}
    });
    assert_eq!(smp(&live, patch.clone(), "com.example.v1.Widget"), expected);
    assert_eq!(merge_patch(&live, &patch).unwrap(), expected);
}

#[test]
fn type_changes_replace_the_value() {
    let live = deployment(two_containers());
    let out = smp(
        &live,
        json!({"spec": {"replicas": "3", "selector": "odd"}}),
        DEPLOYMENT,
    );
    assert_eq!(out["spec"]["replicas"], json!("3"));
    assert_eq!(out["spec"]["selector"], json!("odd"));
}

#[test]
fn malformed_strategic_patches_are_rejected() {
    let live = deployment(two_containers());
    let cases = [
        json!([{"op": "add"}]),
        json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
        json!({"metadata": {"labels": {"$patch": "explode"}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "$patch": "bogus"}]}}}}),
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "a"}, {"name": "sidecar", "image": "b"}]
        }}}}),
        json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "x"}}),
        json!({"metadata": {"finalizers": [["nested"]]}}),
    ];
    for patch in cases {
        let err = strategic_merge_patch(&live, &patch, DEPLOYMENT).expect_err(&patch.to_string());
        assert!(matches!(err, Error::InvalidPatch(_)), "{patch}: {err}");
        assert_eq!(err.http_status(), 400);
    }
}

fn config_map() -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "labels": {"app": "web", "stale": "yes"}},
        "data": {"a": "1"}
    })
}

#[test]
fn json_patch_operations() {
    let patch = json!([
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "2"},
        {"op": "add", "path": "/data/b", "value": "3"},
        {"op": "remove", "path": "/metadata/labels/stale"},
        {"op": "copy", "from": "/data/b", "path": "/data/c"},
        {"op": "move", "from": "/data/c", "path": "/data/d"}
    ]);
    let expected = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "labels": {"app": "web"}},
        "data": {"a": "2", "b": "3", "d": "3"}
    });
    assert_eq!(json_patch(&config_map(), &patch).unwrap(), expected);

    let live = deployment(two_containers());
    let add_env = json!([{"op": "add", "path": "/spec/template/spec/containers/0/env", "value": []},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "X", "value": "1"}}]);
    let out = json_patch(&live, &add_env).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "X", "value": "1"}])
    );
}

#[test]
fn json_patch_failures() {
    let failed_test = json!([
        {"op": "replace", "path": "/data/a", "value": "changed"},
        {"op": "test", "path": "/data/a", "value": "other"}
    ]);
    let err = json_patch(&config_map(), &failed_test).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert_eq!(err.http_status(), 422);
    assert_eq!(err.reason(), "Invalid");

    let no_value = json!([{"op": "test", "path": "/data/a"}]);
    assert!(matches!(
        json_patch(&config_map(), &no_value),
        Err(Error::Invalid(_))
    ));

    let missing = json!([{"op": "remove", "path": "/data/nope"}]);
    assert!(matches!(
        json_patch(&config_map(), &missing),
        Err(Error::Invalid(_))
    ));

    for bad in [
        json!({"op": "add"}),
        json!([{"op": "explode", "path": "/a"}]),
        json!([{"path": "/a"}]),
    ] {
        let err = json_patch(&config_map(), &bad).unwrap_err();
        assert!(matches!(err, Error::InvalidPatch(_)), "{bad}: {err}");
    }
}

#[test]
fn merge_patch_rfc7386() {
    let live = deployment(two_containers());
    let patch = json!({
        "metadata": {"labels": {"tier": null, "release": "stable"}},
        "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}
    });
    let mut expected = with_containers(
        live.clone(),
        json!([{"name": "app", "image": "nginx:1.27"}]),
    );
    expected["metadata"]["labels"] = json!({"app": "web", "release": "stable"});
    expected["spec"]["replicas"] = json!(5);
    assert_eq!(merge_patch(&live, &patch).unwrap(), expected);

    let err = merge_patch(&live, &json!(["not", "an", "object"])).unwrap_err();
    assert!(matches!(err, Error::InvalidPatch(_)));
}

#[test]
fn scale_style_merge_patch() {
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
    let out = merge_patch(&scale, &json!({"spec": {"replicas": 5}})).unwrap();
    assert_eq!(
        out,
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 5}})
    );
}

#[test]
fn kubectl_apply_removes_container_and_finalizer() {
    let mut live = deployment(two_containers());
    live["metadata"]["finalizers"] = json!(["example.com/a", "example.com/b"]);
    let patch = json!({
        "metadata": {
            "$setElementOrder/finalizers": ["example.com/a"],
            "$deleteFromPrimitiveList/finalizers": ["example.com/b"]
        },
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"$patch": "delete", "name": "sidecar"}]
        }}}
    });
    let mut expected = with_containers(
        live.clone(),
        json!([{"name": "app", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]),
    );
    expected["metadata"]["finalizers"] = json!(["example.com/a"]);
    assert_eq!(smp(&live, patch, DEPLOYMENT), expected);
}

/// Runs `kubectl patch --local` (Kubernetes' own strategic merge patch) on `doc`, if kubectl is
/// installed.
fn kubectl_smp(doc: &Value, patch: &Value) -> Option<Result<Value, String>> {
    kubectl_patch("strategic", doc, patch)
}

/// Differential test against kubectl's implementation (the apimachinery `strategicpatch` package).
/// Patches here avoid directives inside values that are new to the object: Kubernetes stores
/// those verbatim, while this crate resolves them.
#[test]
fn strategic_merge_patch_matches_kubectl() {
    if skiff_tools::kubectl().is_none() {
        return;
    }
    let mut live = deployment(json!([
        {"name": "a", "image": "nginx", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
         "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
         "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        {"name": "b", "image": "busybox"},
        {"name": "c", "image": "alpine"},
        {"name": "d", "image": "debian"}
    ]));
    live["metadata"]["finalizers"] = json!(["f/a", "f/b", "f/c"]);
    live["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u1"}]);
    live["spec"]["template"]["spec"]["volumes"] =
        json!([{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}]);
    live["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
    live["spec"]["template"]["spec"]["imagePullSecrets"] = json!([{"name": "r1"}, {"name": "r2"}]);
    live["status"] = json!({"conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]});

    let containers = |v: Value| json!({"spec": {"template": {"spec": v}}});
    let cases = [
        json!({"metadata": {"labels": {"tier": null, "new": "x"}, "annotations": null}}),
        containers(
            json!({"containers": [{"name": "a", "image": "nginx:2"}, {"name": "e", "image": "new"}]}),
        ),
        containers(json!({
            "$setElementOrder/containers": [{"name": "d"}, {"name": "x"}, {"name": "b"}],
            "containers": [{"name": "x", "image": "x"}]
        })),
        containers(json!({
            "$setElementOrder/containers": [{"name": "a"}, {"name": "c"}],
            "containers": [{"name": "b", "$patch": "delete"}, {"name": "d", "$patch": "delete"}, {"name": "c", "image": "alpine:3"}]
        })),
        containers(json!({"containers": [{"name": "z", "image": "z"}, {"$patch": "replace"}]})),
        containers(json!({"containers": [{"name": "a",
            "env": [{"name": "C", "value": "3"}, {"name": "A", "value": null, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "ports": [{"containerPort": 443, "name": "https"}, {"containerPort": 8080}],
            "volumeMounts": [{"mountPath": "/data", "$patch": "delete"}, {"mountPath": "/cfg", "name": "cfg"}]
        }]})),
        containers(json!({"containers": [{"name": "a",
            "$setElementOrder/env": [{"name": "B"}, {"name": "C"}, {"name": "A"}],
            "env": [{"name": "C", "value": "3"}],
            "$setElementOrder/ports": [{"containerPort": 443}, {"containerPort": 80}]
        }]})),
        containers(json!({
            "volumes": [{"name": "data", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}}],
            "tolerations": [{"key": "other", "operator": "Exists"}],
            "imagePullSecrets": [{"name": "r3"}, {"name": "r1"}]
        })),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}, "replicas": 7}}),
        json!({"spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}, "selector": {"$patch": "replace", "matchLabels": {"x": "y"}}}}),
        json!({"metadata": {"finalizers": ["f/d", "f/b"]}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["f/b", "f/zz"], "$setElementOrder/finalizers": ["f/c", "f/a"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["f/c", "f/new", "f/a"], "finalizers": ["f/new"]}}),
        json!({"metadata": {"ownerReferences": [{"uid": "u2", "apiVersion": "v1", "kind": "Y", "name": "y"}, {"uid": "u1", "controller": true}]}}),
        json!({"status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "Stuck"}, {"type": "ReplicaFailure", "status": "True"}]}}),
        json!({"spec": {"replicas": "three", "template": {"metadata": {"labels": ["odd"]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "args": ["a", "b"], "unknownField": [1, 2]}]}}}}),
    ];
    for patch in cases {
        let expected = match kubectl_smp(&live, &patch) {
            Some(Ok(v)) => v,
            other => panic!("kubectl failed on {patch}: {other:?}"),
        };
        let ours = strategic_merge_patch(&live, &patch, DEPLOYMENT)
            .unwrap_or_else(|e| panic!("{patch}: {e}"));
        assert_eq!(ours, expected, "patch {patch}");
    }

    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "p"}},
        "spec": {
            "containers": [{"name": "app", "image": "nginx", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            "initContainers": [{"name": "init", "image": "busybox"}],
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}],
            "nodeSelector": {"disk": "ssd"}
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "hostIPs": [{"ip": "10.1.1.1"}]}
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"selector": {"app": "p"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    });
    let other_cases = [
        (
            &pod,
            POD,
            json!({"spec": {"containers": [{"name": "app", "resources": {"limits": {"cpu": null, "nvidia.com/gpu": "1"}}}]}}),
        ),
        (
            &pod,
            POD,
            json!({"spec": {"initContainers": [{"name": "init2", "image": "x"}], "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}]}}),
        ),
        (
            &pod,
            POD,
            json!({"spec": {"nodeSelector": {"zone": "a"}, "ephemeralContainers": [{"name": "debug", "image": "busybox"}]}}),
        ),
        (
            &pod,
            POD,
            json!({"status": {"conditions": [{"type": "PodScheduled", "status": "True"}], "hostIPs": [{"ip": "10.2.2.2"}]}}),
        ),
        (
            &service,
            SERVICE,
            json!({"spec": {"ports": [{"port": 443, "name": "https"}, {"port": 80, "targetPort": 9090}]}}),
        ),
        (
            &service,
            SERVICE,
            json!({"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}], "ports": [{"port": 443, "name": "https"}]}}),
        ),
    ];
    for (doc, ty, patch) in other_cases {
        let expected = match kubectl_smp(doc, &patch) {
            Some(Ok(v)) => v,
            other => panic!("kubectl failed on {patch}: {other:?}"),
        };
        let ours =
            strategic_merge_patch(doc, &patch, ty).unwrap_or_else(|e| panic!("{patch}: {e}"));
        assert_eq!(ours, expected, "patch {patch}");
    }

    // Both reject malformed patches.
    let bad = [
        containers(json!({"containers": [{"image": "no-name"}]})),
        json!({"metadata": {"labels": {"$patch": "explode"}}}),
        containers(json!({
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]
        })),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}),
    ];
    for patch in bad {
        assert!(
            matches!(kubectl_smp(&live, &patch), Some(Err(_))),
            "kubectl accepted {patch}"
        );
        assert!(
            strategic_merge_patch(&live, &patch, DEPLOYMENT).is_err(),
            "accepted {patch}"
        );
    }
}

#[test]
fn json_patch_test_for_null_matches_an_absent_member() {
    // kube-rs adds a finalizer with this patch when the object has none.
    let patch = json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/cleanup"]}
    ]);
    let mut expected = config_map();
    expected["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    assert_eq!(json_patch(&config_map(), &patch).unwrap(), expected);

    // The second time the member exists, so the test fails and the client retries.
    let err = json_patch(&expected, &patch).unwrap_err();
    assert_eq!(err.http_status(), 422);
    assert_eq!(
        err.to_string(),
        "patch cannot be applied: operation 0 (test /metadata/finalizers): value did not match"
    );
    // A missing parent is still an error.
    let missing_parent = json!([{"op": "test", "path": "/spec/nothing/here", "value": null}]);
    assert!(matches!(
        json_patch(&config_map(), &missing_parent),
        Err(Error::Invalid(_))
    ));
}

/// Runs `kubectl patch --local --type <kind>` (the API server's JSON and merge patch libraries).
fn kubectl_patch(kind: &str, doc: &Value, patch: &Value) -> Option<Result<Value, String>> {
    let out = skiff_tools::kubectl_patch_local(kind, &doc.to_string(), &patch.to_string())?;
    Some(out.and_then(|json| serde_json::from_str(&json).map_err(|e| e.to_string())))
}

#[test]
fn json_and_merge_patch_match_kubectl() {
    if skiff_tools::kubectl().is_none() {
        return;
    }
    let doc = config_map();
    let json_cases = [
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null}, {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]),
        json!([{"op": "test", "path": "/nope/finalizers", "value": null}]),
        json!([{"op": "replace", "path": "/data/missing", "value": "v"}]),
        json!([{"op": "remove", "path": "/data/missing"}]),
        json!([{"op": "add", "path": "/metadata/finalizers/-", "value": "v"}]),
        json!([{"op": "test", "path": "/data/a"}]),
        json!([{"op": "add", "path": "/data", "value": null}]),
        json!([{"op": "copy", "from": "/data/a", "path": "/data/y"}, {"op": "test", "path": "/data/y", "value": "1"}]),
        json!([{"op": "move", "from": "/metadata/labels", "path": "/metadata/annotations"}]),
        json!([{"op": "add", "path": "/metadata/labels/new~1key", "value": "x"}, {"op": "remove", "path": "/metadata/labels/app"}]),
        json!([{"op": "replace", "path": "", "value": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}}]),
    ];
    for patch in json_cases {
        let ours = json_patch(&doc, &patch);
        match kubectl_patch("json", &doc, &patch) {
            Some(Ok(expected)) => assert_eq!(
                ours.unwrap_or_else(|e| panic!("{patch}: {e}")),
                expected,
                "{patch}"
            ),
            Some(Err(msg)) => assert!(
                ours.is_err(),
                "kubectl rejected {patch} ({msg}), we accepted it"
            ),
            None => panic!("kubectl did not run"),
        }
    }
    let merge_cases = [
        json!({"metadata": {"labels": {"stale": null, "new": "1"}}, "data": {"b": "2"}}),
        json!({"metadata": {"finalizers": ["a"]}, "data": null}),
        json!({"data": {"nested": {"x": null, "y": 1}}}),
    ];
    for patch in merge_cases {
        let expected = kubectl_patch("merge", &doc, &patch)
            .expect("kubectl ran")
            .expect("kubectl accepted");
        assert_eq!(merge_patch(&doc, &patch).unwrap(), expected, "{patch}");
    }
}

/// A small deterministic generator of Kubernetes-shaped JSON for property tests.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() as usize) % items.len()]
    }

    fn value(&mut self, depth: u32, directives: bool) -> Value {
        const KEYS: &[&str] = &[
            "name",
            "image",
            "containers",
            "env",
            "ports",
            "containerPort",
            "value",
            "volumes",
            "volumeMounts",
            "mountPath",
            "labels",
            "finalizers",
            "spec",
            "template",
            "metadata",
            "strategy",
            "rollingUpdate",
            "type",
            "tolerations",
            "key",
            "args",
            "selector",
        ];
        const DIRECTIVES: &[&str] = &[
            "$patch",
            "$retainKeys",
            "$setElementOrder/containers",
            "$setElementOrder/env",
            "$deleteFromPrimitiveList/finalizers",
            "$setElementOrder/finalizers",
        ];
        let choice = if depth == 0 {
            self.next() % 4
        } else {
            self.next() % 7
        };
        match choice {
            0 => Value::Null,
            1 => json!(self.pick(&[
                "a", "b", "c", "app", "sidecar", "replace", "delete", "merge"
            ])),
            2 => json!(self.next() % 3 + 79),
            3 => json!(self.next().is_multiple_of(2)),
            4 | 5 => {
                let mut m = serde_json::Map::new();
                for _ in 0..self.next() % 4 {
                    let key = if directives && self.next().is_multiple_of(4) {
                        self.pick(DIRECTIVES)
                    } else {
                        self.pick(KEYS)
                    };
                    m.insert(key.to_string(), self.value(depth - 1, directives));
                }
                Value::Object(m)
            }
            _ => Value::Array(
                (0..self.next() % 3)
                    .map(|_| self.value(depth - 1, directives))
                    .collect(),
            ),
        }
    }
}

fn has_directive_key(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| k.starts_with('$') || has_directive_key(v)),
        Value::Array(a) => a.iter().any(has_directive_key),
        _ => false,
    }
}

#[test]
fn random_patches_never_panic_or_store_directives() {
    let mut g = Gen(0x5eed);
    let mut applied_ok = 0;
    for _ in 0..2000 {
        let mut doc = deployment(two_containers());
        doc["spec"]["template"]["spec"]["extra"] = g.value(4, false);
        let patch =
            json!({"spec": {"template": {"spec": g.value(5, true)}}, "metadata": g.value(3, true)});
        for ty in [DEPLOYMENT, "com.example.v1.Widget"] {
            if let Ok(out) = strategic_merge_patch(&doc, &patch, ty) {
                applied_ok += 1;
                assert!(
                    !has_directive_key(&out),
                    "directive stored by {patch}: {out}"
                );
            }
        }
        let _ = merge_patch(&doc, &patch);
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": g.value(4, false)});
        if let Ok(mut out) = crate::apply::apply(Some(&doc), &config, "m", true, DEPLOYMENT, "t") {
            let old = out.clone();
            out["spec"] = g.value(3, false);
            crate::apply::record_update(Some(&old), &mut out, "u", DEPLOYMENT, "t");
        }
    }
    assert!(applied_ok > 700, "only {applied_ok} patches applied");
}
