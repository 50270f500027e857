//! The repair pass and the server's own objects, on a memory store.

use std::sync::Arc;

use serde_json::{Value, json};
use skiff_store::MemoryStore;

use super::{Owner, Pool, repair};
use crate::objects;
use crate::state::AppState;

fn state() -> AppState {
    AppState::new(Arc::new(MemoryStore::new()), Vec::new())
}

async fn get(state: &AppState, plural: &str, group: &str, ns: Option<&str>, name: &str) -> Value {
    let kind = skiff_kinds::find(group, "v1", plural).unwrap();
    let kv = state
        .store
        .get(&objects::key(kind, ns, name))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{plural}/{name} exists"));
    objects::from_kv(kind, &kv).unwrap()
}

async fn holder(state: &AppState, key: &str) -> Option<Owner> {
    state
        .store
        .get(key)
        .await
        .unwrap()
        .map(|kv| serde_json::from_slice(&kv.value).unwrap())
}

#[tokio::test]
async fn the_server_writes_the_kubernetes_service_its_endpoints_and_the_ingress_class() {
    let state = state();
    let addr = "127.0.0.1:6443".parse().unwrap();
    crate::bootstrap::run(&state, addr).await.unwrap();
    let svc = get(&state, "services", "", Some("default"), "kubernetes").await;
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}])
    );
    let owner = holder(&state, &Pool::ServiceIp.key("10.96.0.1"))
        .await
        .unwrap();
    assert_eq!(owner.name, "kubernetes");
    let slice = get(
        &state,
        "endpointslices",
        "discovery.k8s.io",
        Some("default"),
        "kubernetes",
    )
    .await;
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["endpoints"][0]["addresses"], json!(["127.0.0.1"]));
    assert_eq!(slice["ports"][0]["port"], 6443);
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "kubernetes"
    );
    assert_ne!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        skiff_meta::names::ENDPOINTSLICE_MANAGED_BY
    );
    let eps = get(&state, "endpoints", "", Some("default"), "kubernetes").await;
    assert_eq!(eps["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
    let class = get(&state, "ingressclasses", "networking.k8s.io", None, "skiff").await;
    assert_eq!(class["spec"]["controller"], "skiff.dev/ingress");
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );

    // The next start, on another port, points the Service and its slice at it.
    let addr = "127.0.0.1:7443".parse().unwrap();
    crate::bootstrap::run(&state, addr).await.unwrap();
    let svc2 = get(&state, "services", "", Some("default"), "kubernetes").await;
    assert_eq!(svc2["metadata"]["uid"], svc["metadata"]["uid"]);
    assert_eq!(svc2["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(svc2["spec"]["ports"][0]["targetPort"], 7443);
    let slice = get(
        &state,
        "endpointslices",
        "discovery.k8s.io",
        Some("default"),
        "kubernetes",
    )
    .await;
    assert_eq!(slice["ports"][0]["port"], 7443);
    // The Endpoints keep the old port until its record expires (`apiservers::TTL`).
    let eps = get(&state, "endpoints", "", Some("default"), "kubernetes").await;
    let ports: Vec<&Value> = eps["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["ports"][0]["port"])
        .collect();
    assert_eq!(ports, [&json!(6443), &json!(7443)]);
}

#[tokio::test]
async fn repair_frees_orphan_records_and_records_unrecorded_values() {
    let state = state();
    crate::bootstrap::run(&state, "127.0.0.1:6443".parse().unwrap())
        .await
        .unwrap();
    // An orphan: a record whose Service never got written (a crash between the two writes).
    let orphan = Pool::ServiceIp.key("10.96.0.99");
    let ghost = Owner {
        kind: "Service".into(),
        namespace: Some("default".into()),
        name: "ghost".into(),
        uid: "gone".into(),
        since: None,
    };
    assert!(
        crate::registry::create_record(&state, &orphan, ghost.bytes())
            .await
            .unwrap()
    );
    // A Service whose record is missing (written before allocation records existed).
    let kubernetes = Pool::ServiceIp.key("10.96.0.1");
    let kv = state.store.get(&kubernetes).await.unwrap().unwrap();
    crate::registry::delete_record(&state, &kubernetes, kv.mod_revision)
        .await
        .unwrap();

    repair(&state).await.unwrap();
    assert!(
        holder(&state, &orphan).await.is_none(),
        "the orphan is freed"
    );
    let svc = get(&state, "services", "", Some("default"), "kubernetes").await;
    let owner = holder(&state, &kubernetes).await.expect("recorded again");
    assert_eq!(owner.uid, svc["metadata"]["uid"].as_str().unwrap());
}

/// Another server's write in flight: its record is taken, its Service not stored yet. A repair
/// on a server starting meanwhile keeps the record; an old one is freed.
#[tokio::test]
async fn repair_keeps_a_young_record_of_a_write_in_flight() {
    let state = state();
    crate::bootstrap::run(&state, "127.0.0.1:6443".parse().unwrap())
        .await
        .unwrap();
    let owner = |name: &str, since| Owner {
        kind: "Service".into(),
        namespace: Some("default".into()),
        name: name.into(),
        uid: format!("uid-{name}"),
        since,
    };
    let young = Pool::ServiceIp.key("10.96.0.98");
    let old = Pool::ServiceIp.key("10.96.0.97");
    let now = super::unix_now();
    for (key, o) in [
        (&young, owner("in-flight", Some(now))),
        (
            &old,
            owner("crashed", Some(now - super::repair::GRACE.as_secs() - 1)),
        ),
    ] {
        assert!(
            crate::registry::create_record(&state, key, o.bytes())
                .await
                .unwrap()
        );
    }
    repair(&state).await.unwrap();
    assert_eq!(
        holder(&state, &young).await.map(|o| o.uid),
        Some("uid-in-flight".into())
    );
    assert!(
        holder(&state, &old).await.is_none(),
        "the old orphan is freed"
    );
}
