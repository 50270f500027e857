//! kube-rs (kube 5) against a real `skiff server`: typed CRUD, server-side apply, and a
//! runtime watcher that survives a forced 410 Gone by re-listing.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use skiff_tests::Server;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": name}})).unwrap()
}

async fn namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_crud_and_apply() {
    let server = Server::start().expect("server starts");
    let client = server.client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = api
        .create(&PostParams::default(), &cm("one"))
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some());
    let err = api
        .create(&PostParams::default(), &cm("one"))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(status) => assert_eq!(
            (status.code, status.reason.as_str()),
            (409, "AlreadyExists")
        ),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }

    let applied = api
        .patch(
            "two",
            &PatchParams::apply("skiff-test"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "two"}, "data": {"a": "1"}})),
        )
        .await
        .expect("server-side apply creates");
    assert_eq!(applied.data.unwrap()["a"], "1");
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["skiff-test"]);

    // Another manager changing an owned field conflicts unless it forces.
    let conflict = api
        .patch("two", &PatchParams::apply("other"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "two"}, "data": {"a": "2"}})))
        .await
        .unwrap_err();
    match conflict {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"))
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let forced = api
        .patch("two", &PatchParams::apply("other").force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "two"}, "data": {"a": "2"}})))
        .await
        .expect("forced apply");
    assert_eq!(forced.data.unwrap()["a"], "2");

    let listed = api
        .list(&ListParams::default().fields("metadata.name=one"))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
    api.delete("one", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(api.get_opt("one").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_watcher_survives_forced_410() {
    // A short history, compacted every second, makes a reconnecting watch fall off the end.
    let server = Server::start_with(&[
        "--history-revisions",
        "5",
        "--compaction-interval-seconds",
        "1",
    ])
    .expect("server starts");
    let client = server.client().await.expect("client");
    namespace(&client, "watched").await;
    namespace(&client, "noise").await;
    let watched: Api<ConfigMap> = Api::namespaced(client.clone(), "watched");
    let noise: Api<ConfigMap> = Api::namespaced(client.clone(), "noise");
    watched
        .create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();

    // Each watch request ends after 2 s and the watcher resumes from its last revision.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(watched.clone(), watcher::Config::default().timeout(2));
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let line = match event {
                Ok(watcher::Event::Init) => "init".to_string(),
                Ok(watcher::Event::InitApply(o)) => {
                    format!("init-apply {}", o.metadata.name.unwrap_or_default())
                }
                Ok(watcher::Event::InitDone) => "init-done".to_string(),
                Ok(watcher::Event::Apply(o)) => {
                    format!("apply {}", o.metadata.name.unwrap_or_default())
                }
                Ok(watcher::Event::Delete(o)) => {
                    format!("delete {}", o.metadata.name.unwrap_or_default())
                }
                Err(e) => format!("error {e}"),
            };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut seen: Vec<String> = Vec::new();
    let mut next_until = async |pred: &dyn Fn(&[String]) -> bool, what: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !pred(&seen) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => seen.push(line),
                _ => panic!("timed out waiting for {what}; saw {seen:?}"),
            }
        }
    };
    next_until(&|s| s.iter().any(|l| l == "init-done"), "the first list").await;
    // Writes elsewhere move the store past the watcher's revision; compaction forgets it.
    for i in 0..40 {
        noise
            .create(&PostParams::default(), &cm(&format!("n{i}")))
            .await
            .unwrap();
    }
    next_until(
        &|s| s.iter().filter(|l| *l == "init").count() >= 2,
        "a re-list after 410 Gone",
    )
    .await;
    watched
        .create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    next_until(
        &|s| s.iter().any(|l| l.ends_with(" after")),
        "the object created after the re-list",
    )
    .await;
    println!("watcher events: {seen:?}");
    assert!(
        seen.iter().any(|l| l.starts_with("error")
            && (l.contains("410") || l.contains("too old resource version"))),
        "the watcher saw the 410: {seen:?}"
    );
    task.abort();
}
