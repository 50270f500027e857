//! Killing the server with SIGKILL while 32 clients create objects loses no acknowledged create.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use skiff_tests::{Server, lost_config_maps, wait_for};

/// Creates acknowledged before the server is killed: enough that the kill lands while every
/// writer is mid-stream.
const ACKED_BEFORE_KILL: usize = 320;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_sigkill_loses_no_acknowledged_create() {
    let mut server = Server::start().expect("server starts");
    let stop = Arc::new(AtomicBool::new(false));
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client_id in 0..32 {
        // A client of its own per writer: 32 connections, as 32 programs would have.
        let client = server.client().await.expect("client");
        let (stop, acked_so_far) = (stop.clone(), acked_so_far.clone());
        tasks.push(tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(client, "default");
            let mut acked = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("c{client_id}-{i}");
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": name}, "data": {"i": i.to_string()}}),
                )
                .unwrap();
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => {
                        acked.push(name);
                        acked_so_far.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    // Once the writers are going (320 creates acknowledged), pull the plug mid-stream.
    wait_for(
        "the writers' first acknowledged creates",
        Duration::from_secs(60),
        || async { (acked_so_far.load(Ordering::Relaxed) >= ACKED_BEFORE_KILL).then_some(()) },
    )
    .await
    .unwrap();
    server.kill();
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.expect("writer task"));
    }
    assert!(
        !acknowledged.is_empty(),
        "some creates were acknowledged before the kill"
    );

    server
        .restart()
        .expect("server restarts on the same data directory");
    let client = server.client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let (lost, found) = lost_config_maps(&api, &ListParams::default(), &acknowledged)
        .await
        .expect("list after restart");
    println!(
        "acknowledged creates: {}, found after SIGKILL and restart: {} (objects stored: {}), lost: {}",
        acknowledged.len(),
        acknowledged.len() - lost.len(),
        found,
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged creates lost: {lost:?}");
}
