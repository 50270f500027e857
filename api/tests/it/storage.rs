//! StorageClasses, PersistentVolumes and claims through the router: validation and defaults as
//! stored, the default class given to claims, resizing only where the class allows it, the
//! tables kubectl prints, and the `local-path` class the server creates at every start.

use std::sync::Arc;

use axum::http::Method;
use serde_json::{Value, json};

use super::Api;

const SCS: &str = "/apis/storage.k8s.io/v1/storageclasses";
const PVS: &str = "/api/v1/persistentvolumes";
const PVCS: &str = "/api/v1/namespaces/default/persistentvolumeclaims";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn class(name: &str, default: bool, extra: Value) -> Value {
    let mut sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name}, "provisioner": "example.com/disk"});
    if default {
        sc["metadata"]["annotations"] =
            json!({"storageclass.kubernetes.io/is-default-class": "true"});
    }
    if let (Some(sc), Some(extra)) = (sc.as_object_mut(), extra.as_object()) {
        sc.extend(extra.clone());
    }
    sc
}

fn claim(name: &str, spec: Value) -> Value {
    let mut c = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    if let (Some(s), Some(extra)) = (c["spec"].as_object_mut(), spec.as_object()) {
        s.extend(extra.clone());
    }
    c
}

fn causes(body: &Value) -> Vec<String> {
    body["details"]["causes"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn storage_classes_are_defaulted_validated_and_fixed() {
    let api = Api::new().await;
    let (code, body) = api
        .call(Method::POST, SCS, Some(class("fast", false, json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["reclaimPolicy"], "Delete");
    assert_eq!(body["volumeBindingMode"], "Immediate");

    for (bad, field) in [
        (json!({"provisioner": ""}), "provisioner"),
        (json!({"reclaimPolicy": "Recycle"}), "reclaimPolicy"),
        (
            json!({"volumeBindingMode": "Eventually"}),
            "volumeBindingMode",
        ),
    ] {
        let (code, body) = api
            .call(Method::POST, SCS, Some(class("bad", false, bad)))
            .await;
        assert_eq!(code, 422, "{body}");
        assert_eq!(causes(&body), vec![field], "{body}");
    }

    let mut changed = body.clone();
    changed["provisioner"] = json!("example.com/other");
    changed["parameters"] = json!({"type": "ssd"});
    let (code, body) = api
        .call(Method::PUT, &format!("{SCS}/fast"), Some(changed))
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(causes(&body), vec!["parameters", "provisioner"], "{body}");

    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{SCS}/fast"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"allowVolumeExpansion": true,
                "metadata": {"annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["allowVolumeExpansion"], true);
}

#[tokio::test]
async fn volumes_and_claims_get_kubernetes_defaults_and_refusals() {
    let api = Api::new().await;
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
        "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/srv/pv1"}}});
    let (code, body) = api.call(Method::POST, PVS, Some(pv.clone())).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(body["spec"]["volumeMode"], "Filesystem");
    assert_eq!(body["status"]["phase"], "Pending");

    let mut local = pv.clone();
    local["metadata"]["name"] = json!("pv2");
    local["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("hostPath");
    local["spec"]["local"] = json!({"path": "/mnt/disk"});
    let (code, body) = api.call(Method::POST, PVS, Some(local)).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(causes(&body), vec!["spec.nodeAffinity"], "{body}");

    let mut two = pv.clone();
    two["metadata"]["name"] = json!("pv3");
    two["spec"]["nfs"] = json!({"server": "nfs.example.com", "path": "/"});
    let (code, body) = api.call(Method::POST, PVS, Some(two)).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(causes(&body), vec!["spec"], "{body}");

    // No class exists: the claim keeps no class, is Pending and defaulted.
    let (code, body) = api
        .call(Method::POST, PVCS, Some(claim("c1", json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"].get("storageClassName").is_none(), "{body}");
    assert_eq!(body["spec"]["volumeMode"], "Filesystem");
    assert_eq!(body["status"]["phase"], "Pending");

    let (code, body) = api
        .call(
            Method::POST,
            PVCS,
            Some(claim("c2", json!({"accessModes": ["ReadWriteAlways"]}))),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(causes(&body), vec!["spec.accessModes"], "{body}");

    // A pending claim's spec is fixed, except a first class and its volume.
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{PVCS}/c1"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"spec": {"accessModes": ["ReadOnlyMany"]}})),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(causes(&body), vec!["spec"], "{body}");
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{PVCS}/c1"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"spec": {"storageClassName": "slow", "volumeName": "pv1"}})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn claims_without_a_class_get_the_newest_default() {
    let api = Api::new().await;
    for (name, default) in [("plain", false), ("older", true)] {
        let (code, body) = api
            .call(Method::POST, SCS, Some(class(name, default, json!({}))))
            .await;
        assert_eq!(code, 201, "{body}");
    }
    let (_, body) = api
        .call(Method::POST, PVCS, Some(claim("a", json!({}))))
        .await;
    assert_eq!(body["spec"]["storageClassName"], "older", "{body}");

    // A newer default wins; one made in the same second wins too, being first by name.
    let (code, body) = api
        .call(Method::POST, SCS, Some(class("another", true, json!({}))))
        .await;
    assert_eq!(code, 201, "{body}");
    let (_, body) = api
        .call(Method::POST, PVCS, Some(claim("b", json!({}))))
        .await;
    assert_eq!(body["spec"]["storageClassName"], "another", "{body}");

    // An explicit class, and an explicit empty one, are kept.
    let (_, body) = api
        .call(
            Method::POST,
            PVCS,
            Some(claim("c", json!({"storageClassName": "plain"}))),
        )
        .await;
    assert_eq!(body["spec"]["storageClassName"], "plain", "{body}");
    let (_, body) = api
        .call(
            Method::POST,
            PVCS,
            Some(claim("d", json!({"storageClassName": ""}))),
        )
        .await;
    assert_eq!(body["spec"]["storageClassName"], "", "{body}");
}

/// Marks a claim bound to `pv1` with the capacity it asked for, as the PV controller would.
async fn bind(api: &Api, name: &str) {
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{PVCS}/{name}"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"spec": {"volumeName": "pv1"}})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{PVCS}/{name}/status"),
            "application/merge-patch+json",
            "application/json",
            Some(
                json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "1Gi"}}}),
            ),
        )
        .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn bound_claims_grow_only_when_their_class_allows_expansion() {
    let api = Api::new().await;
    for (name, expand) in [("rigid", false), ("elastic", true)] {
        let (code, body) = api
            .call(
                Method::POST,
                SCS,
                Some(class(name, false, json!({"allowVolumeExpansion": expand}))),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        let (code, body) = api
            .call(
                Method::POST,
                PVCS,
                Some(claim(name, json!({"storageClassName": name}))),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        bind(&api, name).await;
    }
    let grow = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}});
    let patch = |name: &'static str, body: Value| {
        let api = &api;
        async move {
            api.call_with(
                Method::PATCH,
                &format!("{PVCS}/{name}"),
                "application/merge-patch+json",
                "application/json",
                Some(body),
            )
            .await
        }
    };
    let (code, body) = patch("rigid", grow.clone()).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("must support resize")),
        "{body}"
    );
    let (code, body) = patch("elastic", grow).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["resources"]["requests"]["storage"], "5Gi");
    let (code, body) = patch(
        "elastic",
        json!({"spec": {"resources": {"requests": {"storage": "512Mi"}}}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(causes(&body), vec!["spec.resources.requests.storage"]);
}

#[tokio::test]
async fn tables_print_kubectls_columns() {
    let api = Api::new().await;
    api.call(Method::POST, SCS, Some(class("fast", true, json!({}))))
        .await;
    let (code, table) = api.call_with(Method::GET, SCS, "", TABLE, None).await;
    assert_eq!(code, 200, "{table}");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter(|c| c["priority"] == 0)
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Provisioner",
            "ReclaimPolicy",
            "VolumeBindingMode",
            "AllowVolumeExpansion",
            "Age"
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "fast (default)");
    assert_eq!(cells[1], "example.com/disk");
    assert_eq!(cells[2], "Delete");
    assert_eq!(cells[3], "Immediate");
    assert_eq!(cells[4], false);

    api.call(Method::POST, PVCS, Some(claim("data", json!({}))))
        .await;
    let (_, table) = api.call_with(Method::GET, PVCS, "", TABLE, None).await;
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        cells.as_array().map(|c| c[..6].to_vec()),
        Some(vec![
            json!("data"),
            json!("Pending"),
            json!(""),
            json!(""),
            json!(""),
            json!("fast")
        ]),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_start_creates_the_local_path_class_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn skiff_store::Store> = Arc::new(skiff_store::MemoryStore::new());
    let get = |store: Arc<dyn skiff_store::Store>| async move {
        let kind = skiff_kinds::find("storage.k8s.io", "v1", "storageclasses").expect("kind");
        let kv = store
            .get(&format!("{}local-path", kind.storage_prefix()))
            .await
            .expect("store answers")
            .expect("the class exists");
        serde_json::from_slice::<Value>(&kv.value).expect("JSON")
    };
    let first = skiff_api::start_with_store(
        skiff_api::ServerOptions::new(dir.path(), "127.0.0.1:0".parse().unwrap()),
        store.clone(),
    )
    .await
    .unwrap();
    let sc = get(store.clone()).await;
    assert_eq!(sc["provisioner"], skiff_meta::names::LOCAL_PATH_PROVISIONER);
    assert_eq!(sc["volumeBindingMode"], "WaitForFirstConsumer");
    assert_eq!(sc["reclaimPolicy"], "Delete");
    assert_eq!(
        sc["metadata"]["annotations"][skiff_meta::names::DEFAULT_STORAGE_CLASS],
        "true"
    );
    first.shutdown().await;

    // An operator's change (no longer the default) survives the next start.
    let state = Arc::new(skiff_api::AppState::new(
        store.clone(),
        vec![(super::TOKEN.into(), skiff_api::UserInfo::admin("admin"))],
    ));
    let api = Api {
        router: skiff_api::app(state),
        store: store.clone(),
        _shutdown: tokio::sync::watch::channel(false).0,
    };
    let (code, body) = api
        .call_with(
            Method::PATCH,
            &format!("{SCS}/local-path"),
            "application/merge-patch+json",
            "application/json",
            Some(json!({"metadata": {"annotations": {"storageclass.kubernetes.io/is-default-class": "false"}}})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let second = skiff_api::start_with_store(
        skiff_api::ServerOptions::new(dir.path(), "127.0.0.1:0".parse().unwrap()),
        store.clone(),
    )
    .await
    .unwrap();
    let sc = get(store.clone()).await;
    assert_eq!(
        sc["metadata"]["annotations"][skiff_meta::names::DEFAULT_STORAGE_CLASS],
        "false"
    );
    second.shutdown().await;
}
