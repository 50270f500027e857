//! The clusterrole-aggregation controller on the in-process API: an aggregated ClusterRole gets
//! the rules of the roles its selector matches, follows a new matching role and a removed
//! label, and reaches through one aggregated role into another (`view` into `edit`).

use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_controllers::{Clock, Options};
use skiff_testkit::inproc::{InProcess, wait_object};

fn role(name: &str, labels: serde_json::Value, resources: &[&str]) -> ClusterRole {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "rules": resources.iter().map(|r| json!({"apiGroups": [""], "resources": [r], "verbs": ["get"]})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

fn aggregated(name: &str, labels: serde_json::Value, selector: &str) -> ClusterRole {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {selector: "true"}}]},
    }))
    .unwrap()
}

fn resources(role: &ClusterRole) -> Vec<String> {
    role.rules
        .iter()
        .flatten()
        .flat_map(|r| r.resources.clone().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_cluster_roles_follow_the_roles_they_select() {
    let api = InProcess::start().await.unwrap();
    let mut opts = Options {
        scheduler: false,
        clock: Clock::real(),
        ..Options::default()
    };
    opts.select("clusterrole-aggregation").unwrap();
    let _c = skiff_controllers::start(api.client.clone(), opts);
    let roles: Api<ClusterRole> = Api::all(api.client.clone());
    let pp = PostParams::default();
    let deadline = Duration::from_secs(30);

    roles
        .create(&pp, &aggregated("t-edit", json!({}), "example.com/to-edit"))
        .await
        .unwrap();
    roles
        .create(
            &pp,
            &aggregated(
                "t-view",
                json!({"example.com/to-edit": "true"}),
                "example.com/to-view",
            ),
        )
        .await
        .unwrap();
    roles
        .create(
            &pp,
            &role("pods", json!({"example.com/to-view": "true"}), &["pods"]),
        )
        .await
        .unwrap();
    roles
        .create(
            &pp,
            &role(
                "secrets",
                json!({"example.com/to-edit": "true"}),
                &["secrets"],
            ),
        )
        .await
        .unwrap();
    roles
        .create(&pp, &role("nodes", json!({}), &["nodes"]))
        .await
        .unwrap();

    wait_object(&roles, "t-view", deadline, |r| resources(r) == ["pods"])
        .await
        .unwrap();
    // t-edit selects secrets and t-view (whose rules came from pods), by name.
    wait_object(&roles, "t-edit", deadline, |r| {
        resources(r) == ["secrets", "pods"]
    })
    .await
    .unwrap();

    // A role that stops matching leaves.
    roles
        .patch(
            "secrets",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"example.com/to-edit": null}}})),
        )
        .await
        .unwrap();
    wait_object(&roles, "t-edit", deadline, |r| resources(r) == ["pods"])
        .await
        .unwrap();
}
