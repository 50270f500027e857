//! Pods on one node of a [`Cluster`]: create one from YAML, wait for its status, read its
//! container statuses and logs through the node endpoint (the node tests' common steps).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::PostParams;

use crate::{Cluster, wait_object_map};

/// How long a pod may take to reach what a test waits for.
pub const POD_WAIT: Duration = Duration::from_secs(90);

/// Creates a pod in `default` from YAML in which `NODE` stands for `node`.
pub async fn create_pod(c: &Cluster, node: &str, yaml: &str) {
    let text = yaml.replace("NODE", node);
    let pod: Pod = serde_yaml::from_str(&text).expect("a pod");
    c.pods("default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
}

/// Watches pod `name` in `default` until `check` returns `Some`; fails with `node`'s log.
pub async fn wait_pod<T>(
    c: &Cluster,
    node: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Pod) -> Option<T>,
) -> T {
    wait_object_map(&c.pods("default"), name, what, POD_WAIT, check)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nnode log:\n{}", c.node(node).log()))
}

/// The status of container `name` of `p`.
pub fn container(p: &Pod, name: &str) -> Option<ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
        .cloned()
}

/// The log of `pod/container` (in `default`) read through `node`'s endpoint with `query`
/// (for example `?previous=true`).
pub fn container_log(c: &Cluster, node: &str, pod: &str, container: &str, query: &str) -> String {
    let (status, body) = c
        .node(node)
        .get(&format!("/containerLogs/default/{pod}/{container}{query}"))
        .expect("the node endpoint answers");
    assert_eq!(status, 200, "log of {pod}/{container}: {body}");
    body
}
