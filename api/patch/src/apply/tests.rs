//! Tests of server-side apply and managed fields bookkeeping.

use serde_json::{Value, json};

use super::{FieldConflict, apply, apply_subresource, record_update, record_update_subresource};
use crate::Error;

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-01T00:01:00Z";
const T2: &str = "2026-01-01T00:02:00Z";

fn applied(replicas: u32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

/// The FieldsV1 of `applied(..)`.
fn applied_fields() -> Value {
    json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                    ".": {},
                    "f:image": {},
                    "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}
            }
        }
    })
}

fn entry(manager: &str, operation: &str, time: &str, fields: Value) -> Value {
    json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": "apps/v1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields
    })
}

fn with_managed_fields(mut obj: Value, entries: Value) -> Value {
    obj["metadata"]["managedFields"] = entries;
    obj
}

fn ssa(live: Option<&Value>, config: &Value, manager: &str, force: bool, now: &str) -> Value {
    apply(live, config, manager, force, DEPLOYMENT, now)
        .unwrap_or_else(|e| panic!("apply failed: {e}"))
}

#[test]
fn apply_creates_with_managed_fields() {
    let created = ssa(None, &applied(2, "nginx:1.25"), "kubectl", false, T0);
    let expected = with_managed_fields(
        applied(2, "nginx:1.25"),
        json!([entry("kubectl", "Apply", T0, applied_fields())]),
    );
    assert_eq!(created, expected);
}

#[test]
fn apply_twice_is_a_no_op() {
    let created = ssa(None, &applied(2, "nginx:1.25"), "kubectl", false, T0);
    let again = ssa(
        Some(&created),
        &applied(2, "nginx:1.25"),
        "kubectl",
        false,
        T1,
    );
    assert_eq!(again, created);
}

#[test]
fn apply_changed_image_updates_object_and_time() {
    let created = ssa(None, &applied(2, "nginx:1.25"), "kubectl", false, T0);
    let updated = ssa(
        Some(&created),
        &applied(2, "nginx:1.27"),
        "kubectl",
        false,
        T1,
    );
    let expected = with_managed_fields(
        applied(2, "nginx:1.27"),
        json!([entry("kubectl", "Apply", T1, applied_fields())]),
    );
    assert_eq!(updated, expected);
}

/// What the API server stores after `kubectl apply` (client side) created the deployment.
fn created_client_side() -> Value {
    let mut obj = applied(2, "nginx:1.25");
    obj["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}\n"});
    obj["metadata"]["uid"] = json!("0b5f-uid");
    obj["metadata"]["resourceVersion"] = json!("1");
    obj["metadata"]["generation"] = json!(1);
    obj["metadata"]["creationTimestamp"] = json!(T0);
    record_update(None, &mut obj, "kubectl-client-side-apply", DEPLOYMENT, T0);
    obj
}

fn client_side_fields() -> Value {
    json!({
        "f:metadata": {
            "f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
            "f:labels": {".": {}, "f:app": {}}
        },
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {
                    "k:{\"name\":\"app\"}": {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {
                            ".": {},
                            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}
                        }
                    }
                }}
            }
        }
    })
}

#[test]
fn record_update_on_create_owns_every_field() {
    let obj = created_client_side();
    assert_eq!(
        obj["metadata"]["managedFields"],
        json!([entry(
            "kubectl-client-side-apply",
            "Update",
            T0,
            client_side_fields()
        )])
    );
}

#[test]
fn apply_conflicts_with_client_side_apply_on_replicas() {
    let live = created_client_side();
    let err = apply(
        Some(&live),
        &applied(3, "nginx:1.25"),
        "kubectl",
        false,
        DEPLOYMENT,
        T1,
    )
    .unwrap_err();
    let Error::Conflict(conflicts) = &err else {
        panic!("expected a conflict, got {err}");
    };
    assert_eq!(
        conflicts,
        &vec![FieldConflict {
            manager: "kubectl-client-side-apply".into(),
            operation: "Update".into(),
            api_version: "apps/v1".into(),
            subresource: None,
            field: ".spec.replicas".into(),
            message: "conflict with \"kubectl-client-side-apply\" using apps/v1".into(),
        }]
    );
    assert_eq!(
        conflicts[0].message,
        "conflict with \"kubectl-client-side-apply\" using apps/v1"
    );
    assert_eq!(
        conflicts[0].to_string(),
        "conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    assert_eq!(err.http_status(), 409);
    assert_eq!(err.reason(), "Conflict");
}

#[test]
fn apply_with_same_values_shares_ownership_without_conflict() {
    let live = created_client_side();
    let out = ssa(Some(&live), &applied(2, "nginx:1.25"), "kubectl", false, T1);
    let mut expected = live.clone();
    expected["metadata"]["managedFields"] = json!([
        entry("kubectl", "Apply", T1, applied_fields()),
        entry(
            "kubectl-client-side-apply",
            "Update",
            T0,
            client_side_fields()
        )
    ]);
    assert_eq!(out, expected);
}

#[test]
fn apply_force_takes_ownership() {
    let live = created_client_side();
    let out = ssa(Some(&live), &applied(3, "nginx:1.26"), "kubectl", true, T1);
    let mut expected = live.clone();
    expected["spec"]["replicas"] = json!(3);
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    let mut csa = client_side_fields();
    csa["f:spec"]
        .as_object_mut()
        .unwrap()
        .shift_remove("f:replicas");
    csa["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]
        .as_object_mut()
        .unwrap()
        .shift_remove("f:image");
    expected["metadata"]["managedFields"] = json!([
        entry("kubectl", "Apply", T1, applied_fields()),
        entry("kubectl-client-side-apply", "Update", T0, csa)
    ]);
    assert_eq!(out, expected);
}

#[test]
fn multiple_conflicts_are_grouped_by_manager() {
    let live = created_client_side();
    let err = apply(
        Some(&live),
        &applied(3, "nginx:1.26"),
        "kubectl",
        false,
        DEPLOYMENT,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n\
         - .spec.replicas\n\
         - .spec.template.spec.containers[name=\"app\"].image"
    );
}

#[test]
fn apply_removes_fields_the_manager_dropped() {
    let mut first = applied(2, "nginx:1.25");
    first["metadata"]["labels"]["tier"] = json!("frontend");
    first["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "busybox:1.36"}));
    let created = ssa(None, &first, "kubectl", false, T0);
    // Another manager adds a label of its own.
    let mut labelled = created.clone();
    labelled["metadata"]["labels"]["team"] = json!("a");
    record_update(
        Some(&created),
        &mut labelled,
        "kubectl-label",
        DEPLOYMENT,
        T1,
    );

    let out = ssa(
        Some(&labelled),
        &applied(2, "nginx:1.25"),
        "kubectl",
        false,
        T2,
    );
    let mut expected = applied(2, "nginx:1.25");
    expected["metadata"]["labels"] = json!({"app": "web", "team": "a"});
    expected["metadata"]["managedFields"] = json!([
        entry("kubectl", "Apply", T2, applied_fields()),
        entry(
            "kubectl-label",
            "Update",
            T1,
            json!({"f:metadata": {"f:labels": {"f:team": {}}}})
        )
    ]);
    assert_eq!(out, expected);
}

#[test]
fn dropped_field_owned_by_another_manager_is_kept() {
    let mut first = applied(2, "nginx:1.25");
    first["metadata"]["labels"]["tier"] = json!("frontend");
    let created = ssa(None, &first, "kubectl", false, T0);
    // A second applier sets the same label to the same value: both own it.
    let shared = ssa(
        Some(&created),
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"tier": "frontend"}}}),
        "ci",
        false,
        T1,
    );
    let out = ssa(
        Some(&shared),
        &applied(2, "nginx:1.25"),
        "kubectl",
        false,
        T2,
    );
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "tier": "frontend"})
    );
    // The object did not change, so the time of kubectl's entry stays.
    assert_eq!(
        out["metadata"]["managedFields"],
        json!([
            entry("kubectl", "Apply", T0, applied_fields()),
            entry(
                "ci",
                "Apply",
                T1,
                json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
            )
        ])
    );
}

#[test]
fn status_is_not_applied_and_bad_configs_are_rejected() {
    let mut config = applied(2, "nginx:1.25");
    config["status"] = json!({"replicas": 9});
    let created = ssa(None, &config, "kubectl", false, T0);
    let expected = with_managed_fields(
        applied(2, "nginx:1.25"),
        json!([entry("kubectl", "Apply", T0, applied_fields())]),
    );
    assert_eq!(created, expected);

    let mut bad = applied(2, "nginx:1.25");
    bad["metadata"]["managedFields"] = json!([{"manager": "x"}]);
    assert!(matches!(
        apply(None, &bad, "kubectl", false, DEPLOYMENT, T0),
        Err(Error::InvalidPatch(_))
    ));
    assert!(matches!(
        apply(None, &json!("text"), "kubectl", false, DEPLOYMENT, T0),
        Err(Error::InvalidPatch(_))
    ));
}

#[test]
fn record_update_moves_changed_fields_to_the_updater() {
    let created = ssa(None, &applied(2, "nginx:1.25"), "kubectl", false, T0);
    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    record_update(
        Some(&created),
        &mut scaled,
        "kube-controller-manager",
        DEPLOYMENT,
        T1,
    );
    let mut kubectl = applied_fields();
    kubectl["f:spec"]
        .as_object_mut()
        .unwrap()
        .shift_remove("f:replicas");
    let mut expected = applied(5, "nginx:1.25");
    expected["metadata"]["managedFields"] = json!([
        entry("kubectl", "Apply", T0, kubectl),
        entry(
            "kube-controller-manager",
            "Update",
            T1,
            json!({"f:spec": {"f:replicas": {}}})
        )
    ]);
    assert_eq!(scaled, expected);

    // The next apply with the old replicas conflicts with the updater.
    let err = apply(
        Some(&scaled),
        &applied(2, "nginx:1.25"),
        "kubectl",
        false,
        DEPLOYMENT,
        T2,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kube-controller-manager\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn record_update_without_changes_keeps_entries() {
    let created = ssa(None, &applied(2, "nginx:1.25"), "kubectl", false, T0);
    let mut same = created.clone();
    same["metadata"]["resourceVersion"] = json!("2");
    record_update(Some(&created), &mut same, "kubectl-edit", DEPLOYMENT, T1);
    let mut expected = created.clone();
    expected["metadata"]["resourceVersion"] = json!("2");
    assert_eq!(same, expected);
}

#[test]
fn record_update_removal_and_cleared_managed_fields() {
    let created = ssa(None, &applied(2, "nginx:1.25"), "kubectl", false, T0);
    let mut unlabelled = created.clone();
    unlabelled["metadata"]
        .as_object_mut()
        .unwrap()
        .shift_remove("labels");
    record_update(
        Some(&created),
        &mut unlabelled,
        "kubectl-label",
        DEPLOYMENT,
        T1,
    );
    let mut kubectl = applied_fields();
    kubectl.as_object_mut().unwrap().shift_remove("f:metadata");
    assert_eq!(
        unlabelled["metadata"]["managedFields"],
        json!([entry("kubectl", "Apply", T0, kubectl)])
    );

    // Sending `[{}]` clears managed fields.
    let mut cleared = created.clone();
    cleared["metadata"]["managedFields"] = json!([{}]);
    record_update(Some(&created), &mut cleared, "kubectl-edit", DEPLOYMENT, T1);
    assert_eq!(cleared, applied(2, "nginx:1.25"));
}

#[test]
fn set_lists_are_owned_per_value() {
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "finalizers": ["example.com/protect"]}
    });
    let created = ssa(None, &config, "kubectl", false, T0);
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:metadata": {"f:finalizers": {"v:\"example.com/protect\"": {}}}})
    );
    let mut more = created.clone();
    more["metadata"]["finalizers"] = json!(["example.com/protect", "example.com/other"]);
    record_update(Some(&created), &mut more, "controller", DEPLOYMENT, T1);
    let out = ssa(
        Some(&more),
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
        "kubectl",
        false,
        T2,
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["example.com/other"]));
}

#[test]
fn status_subresource_apply_and_update() {
    let created = ssa(None, &applied(2, "nginx:1.25"), "kubectl", false, T0);
    let status_config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"ignored": "yes"}},
        "spec": {"replicas": 100},
        "status": {"replicas": 2, "readyReplicas": 2}
    });
    let with_status = apply_subresource(
        Some(&created),
        &status_config,
        "rollout",
        false,
        DEPLOYMENT,
        T1,
        Some("status"),
    )
    .unwrap();
    let mut status_entry = entry(
        "rollout",
        "Apply",
        T1,
        json!({"f:status": {"f:readyReplicas": {}, "f:replicas": {}}}),
    );
    status_entry["subresource"] = json!("status");
    let mut expected = applied(2, "nginx:1.25");
    expected["status"] = json!({"replicas": 2, "readyReplicas": 2});
    expected["metadata"]["managedFields"] = json!([
        entry("kubectl", "Apply", T0, applied_fields()),
        status_entry.clone()
    ]);
    assert_eq!(with_status, expected);

    // A controller writes the status with an update: it takes .status.replicas over.
    let mut updated = with_status.clone();
    updated["status"]["replicas"] = json!(3);
    record_update_subresource(
        Some(&with_status),
        &mut updated,
        "deployment-controller",
        DEPLOYMENT,
        T2,
        Some("status"),
    );
    let mut controller_entry = entry(
        "deployment-controller",
        "Update",
        T2,
        json!({"f:status": {"f:replicas": {}}}),
    );
    controller_entry["subresource"] = json!("status");
    status_entry["fieldsV1"] = json!({"f:status": {"f:readyReplicas": {}}});
    assert_eq!(
        updated["metadata"]["managedFields"],
        json!([
            entry("kubectl", "Apply", T0, applied_fields()),
            status_entry,
            controller_entry
        ])
    );

    let err = apply_subresource(
        Some(&updated),
        &status_config,
        "rollout",
        false,
        DEPLOYMENT,
        T2,
        Some("status"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"deployment-controller\" with subresource \"status\" using apps/v1: .status.replicas"
    );
}

#[test]
fn first_apply_to_an_object_without_managed_fields() {
    let mut live = applied(2, "nginx:1.25");
    live["metadata"]["uid"] = json!("0b5f-uid");
    let err = apply(
        Some(&live),
        &applied(3, "nginx:1.25"),
        "kubectl",
        false,
        DEPLOYMENT,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );

    let out = ssa(Some(&live), &applied(2, "nginx:1.25"), "kubectl", false, T1);
    let mut before = client_side_fields();
    before["f:metadata"]
        .as_object_mut()
        .unwrap()
        .shift_remove("f:annotations");
    let mut expected = live.clone();
    expected["metadata"]["managedFields"] = json!([
        entry("kubectl", "Apply", T1, applied_fields()),
        entry("before-first-apply", "Update", T1, before)
    ]);
    assert_eq!(out, expected);
}

#[test]
fn apply_to_an_unknown_kind() {
    const WIDGET: &str = "com.example.v1.Widget";
    let config = json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "labels": {"app": "w"}},
        "spec": {"size": 3, "ports": [80, 443], "nested": {"a": 1, "b": 2}}
    });
    let created = apply(None, &config, "kubectl", false, WIDGET, T0).unwrap();
    assert_eq!(
        created["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl", "operation": "Apply", "apiVersion": "example.com/v1", "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {".": {}, "f:nested": {".": {}, "f:a": {}, "f:b": {}}, "f:ports": {}, "f:size": {}}
            }
        }])
    );
    let smaller = json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 3, "ports": [8080], "nested": {"a": 1}}
    });
    let out = apply(Some(&created), &smaller, "kubectl", false, WIDGET, T1).unwrap();
    let mut expected = smaller.clone();
    expected["metadata"]["managedFields"] = json!([{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "example.com/v1", "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {".": {}, "f:nested": {".": {}, "f:a": {}}, "f:ports": {}, "f:size": {}}}
    }]);
    assert_eq!(out, expected);
}

#[test]
fn applied_null_owns_and_removes_the_field() {
    let live = created_client_side();
    let mut config = applied(2, "nginx:1.25");
    config["spec"]["replicas"] = Value::Null;
    config["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = Value::Null;
    // Replicas is owned by the client-side applier: setting it to null conflicts.
    let err = apply(Some(&live), &config, "kubectl", false, DEPLOYMENT, T1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let out = ssa(Some(&live), &config, "kubectl", true, T1);
    let mut expected = live.clone();
    expected["spec"]
        .as_object_mut()
        .unwrap()
        .shift_remove("replicas");
    let mut fields = applied_fields();
    fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]
        ["f:name"] = json!({});
    let mut csa = client_side_fields();
    csa["f:spec"]
        .as_object_mut()
        .unwrap()
        .shift_remove("f:replicas");
    expected["metadata"]["managedFields"] = json!([
        entry("kubectl", "Apply", T1, fields),
        entry("kubectl-client-side-apply", "Update", T0, csa)
    ]);
    assert_eq!(out, expected);
}

#[test]
fn apply_list_order_follows_structured_merge_diff() {
    let with_containers = |names: &[&str]| {
        let mut obj = applied(2, "nginx");
        obj["spec"]["template"]["spec"]["containers"] = Value::Array(
            names
                .iter()
                .map(|n| json!({"name": n, "image": n}))
                .collect(),
        );
        obj
    };
    let cases: [(&[&str], &[&str], &[&str]); 5] = [
        (&["a", "x", "b"], &["b", "a"], &["x", "b", "a"]),
        (&["a", "b"], &["b", "c", "a"], &["b", "c", "a"]),
        (&["a", "s"], &["a", "n"], &["a", "s", "n"]),
        (&["a", "b", "c"], &["c", "b", "a"], &["c", "b", "a"]),
        (&["x", "a", "y"], &["n", "a"], &["x", "n", "a", "y"]),
    ];
    for (live, config, expected) in cases {
        // The live object's foreign items are owned by another manager so they are kept.
        let mut live_obj = with_containers(live);
        record_update(None, &mut live_obj, "other", DEPLOYMENT, T0);
        let out = ssa(
            Some(&live_obj),
            &with_containers(config),
            "kubectl",
            true,
            T1,
        );
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, expected, "live {live:?}, applied {config:?}");
    }
}

#[test]
fn update_entries_are_capped_at_ten() {
    let mut obj = applied(2, "nginx:1.25");
    record_update(
        None,
        &mut obj,
        "creator",
        DEPLOYMENT,
        "2026-01-01T00:00:00Z",
    );
    for i in 0..11 {
        let old = obj.clone();
        obj["metadata"]["labels"][format!("l{i}")] = json!("x");
        record_update(
            Some(&old),
            &mut obj,
            &format!("m{i:02}"),
            DEPLOYMENT,
            &format!("2026-01-01T00:{:02}:00Z", i + 1),
        );
    }
    let entries = obj["metadata"]["managedFields"].as_array().unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ancient-changes",
            "m02",
            "m03",
            "m04",
            "m05",
            "m06",
            "m07",
            "m08",
            "m09",
            "m10"
        ]
    );
    // The two oldest entries were merged, keeping the newer time.
    let mut expected = client_side_fields();
    expected["f:metadata"]
        .as_object_mut()
        .unwrap()
        .shift_remove("f:annotations");
    expected["f:metadata"]["f:labels"]["f:l0"] = json!({});
    expected["f:metadata"]["f:labels"]["f:l1"] = json!({});
    assert_eq!(
        entries[0],
        entry(
            "ancient-changes",
            "Update",
            "2026-01-01T00:02:00Z",
            expected
        )
    );
}
