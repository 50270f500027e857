//! Differential check of strategic merge patch and merge patch against Kubernetes' own code:
//! `smp_kubectl.json` holds what `kubectl patch --local` (the apimachinery `strategicpatch` and
//! `jsonpatch` packages, kubectl 1.37) answered for each case below; this test compares ours
//! with it on every run, without needing kubectl. Re-record with
//! `SKIFF_RECORD_KUBECTL=1 cargo test -p skiff-fuzz --test it recorded` after adding cases.

use std::path::PathBuf;

use serde_json::{Value, json};
use skiff_patch::{merge_patch, strategic_merge_patch};

use crate::input::Bytes;

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

fn recorded_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/smp_kubectl.json")
}

fn live() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"},
            "annotations": {"a": "1"}, "finalizers": ["f/a", "f/b", "f/c"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u1"}]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "containers": [
                    {"name": "a", "image": "nginx", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                    {"name": "b", "image": "busybox"},
                    {"name": "c", "image": "alpine"}
                ],
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
                "tolerations": [{"key": "k", "operator": "Exists"}]
            }}
        },
        "status": {"conditions": [{"type": "Available", "status": "True"}]}
    })
}

/// Hand-written cases (each directive, merge keys, primitive lists, retainKeys, wrong shapes),
/// then patches generated from fixed seeds without directives (where Kubernetes keeps a
/// directive inside a value new to the object verbatim, this crate resolves it: not compared).
fn cases() -> Vec<(String, &'static str, Value)> {
    let spec = |v: Value| json!({"spec": {"template": {"spec": v}}});
    let mut cases: Vec<(String, &'static str, Value)> = [
        json!({"metadata": {"labels": {"tier": null, "new": "x"}, "annotations": null}}),
        spec(json!({"containers": [{"name": "a", "image": "nginx:2"}, {"name": "e", "image": "new"}]})),
        spec(json!({"$setElementOrder/containers": [{"name": "c"}, {"name": "x"}, {"name": "a"}],
            "containers": [{"name": "x", "image": "x"}]})),
        spec(json!({"containers": [{"name": "b", "$patch": "delete"}]})),
        spec(json!({"containers": [{"name": "z", "image": "z"}, {"$patch": "replace"}]})),
        spec(json!({"containers": [{"name": "a", "env": [{"name": "A", "value": null, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "ports": [{"containerPort": 443, "name": "https"}, {"containerPort": 8080}]}]})),
        spec(json!({"volumes": [{"name": "data", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}}]})),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        json!({"spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}}}),
        json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"x": "y"}}}}),
        json!({"metadata": {"finalizers": ["f/d", "f/b"]}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["f/b", "f/zz"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["f/c", "f/new", "f/a"], "finalizers": ["f/new"]}}),
        json!({"metadata": {"ownerReferences": [{"uid": "u2", "apiVersion": "v1", "kind": "Y", "name": "y"}]}}),
        json!({"status": {"conditions": [{"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}}),
        json!({"spec": {"replicas": "three", "template": {"metadata": {"labels": ["odd"]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
        json!({"spec": {"template": {"spec": {"containers": {"name": "not-a-list"}}}}}),
        json!({"spec": null}),
        json!({"$patch": "replace", "kind": "Deployment"}),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, p)| (format!("smp-{i}"), "strategic", p))
    .collect();
    for i in 0..6 {
        let p = json!({"metadata": {"labels": {"app": null, "x": i}}, "spec": {"replicas": i, "template": null}});
        cases.push((format!("merge-{i}"), "merge", p));
    }
    for seed in 0u32..40 {
        let bytes: Vec<u8> = (0..64u32)
            .map(|i| {
                (seed.wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)).to_le_bytes()
                    [(i % 4) as usize]
            })
            .collect();
        let patch = Bytes::new(&bytes).object(3);
        // kubectl --local also needs the patched object to keep its kind and apiVersion.
        if patch.to_string().contains('$')
            || patch.get("kind").is_some()
            || patch.get("apiVersion").is_some()
        {
            continue;
        }
        cases.push((format!("generated-{seed}"), "strategic", patch));
    }
    cases
}

fn ours(kind: &str, doc: &Value, patch: &Value) -> Result<Value, String> {
    match kind {
        "strategic" => strategic_merge_patch(doc, patch, DEPLOYMENT),
        _ => merge_patch(doc, patch),
    }
    .map_err(|e| e.to_string())
}

fn kubectl(kind: &str, doc: &Value, patch: &Value) -> Result<Value, String> {
    skiff_tools::kubectl_patch_local(kind, &doc.to_string(), &patch.to_string())
        .expect("kubectl 1.37 to record with")
        .and_then(|json| serde_json::from_str(&json).map_err(|e| e.to_string()))
}

#[test]
fn patches_match_recorded_kubectl_results() {
    let doc = live();
    if std::env::var_os("SKIFF_RECORD_KUBECTL").is_some() {
        let recorded: Vec<Value> = cases()
            .into_iter()
            .map(|(name, kind, patch)| {
                let (result, error) = match kubectl(kind, &doc, &patch) {
                    Ok(v) => (v, Value::Null),
                    Err(e) => (Value::Null, Value::String(e)),
                };
                json!({"name": name, "type": kind, "patch": patch, "result": result, "error": error})
            })
            .collect();
        let text = serde_json::to_string_pretty(&json!({"doc": doc, "cases": recorded})).unwrap();
        std::fs::write(recorded_path(), text + "\n").unwrap();
    }
    let text = std::fs::read_to_string(recorded_path()).expect("recorded kubectl results");
    let recorded: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        recorded["doc"], doc,
        "the recorded live object is the one here: re-record"
    );
    let mut mismatches = Vec::new();
    let cases = recorded["cases"].as_array().unwrap();
    assert_eq!(
        cases.len(),
        self::cases().len(),
        "every case is recorded: re-record"
    );
    for case in cases {
        let kind = case["type"].as_str().unwrap();
        let ours = ours(kind, &doc, &case["patch"]);
        let matches = match (&ours, case["error"].is_null()) {
            (Ok(v), true) => *v == case["result"],
            (Err(_), false) => true,
            _ => false,
        };
        if !matches {
            mismatches.push(format!(
                "{}: patch {}\n  kubectl: {}\n  ours:    {:?}",
                case["name"],
                case["patch"],
                if case["error"].is_null() {
                    &case["result"]
                } else {
                    &case["error"]
                },
                ours
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} differ from Kubernetes:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}
