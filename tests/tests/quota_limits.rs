//! ResourceQuota and LimitRange acceptance on a real server: 20 concurrent creates against a
//! quota of 5 pods leave exactly 5 (the others refused with Kubernetes' `exceeded quota` text),
//! `kubectl describe quota` shows Used/Hard as the quota controller counts them, and the
//! LimitRange's defaults (with their annotation) appear in every created pod, so a compute quota
//! admits pods that state no resources.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::PostParams;
use serde_json::json;
use skiff_tests::{Cluster, wait_object};

const DEADLINE: Duration = Duration::from_secs(60);
const NS: &str = "tenant";

const LIMITS_AND_QUOTA: &str = r#"
apiVersion: v1
kind: LimitRange
metadata:
  name: defaults
  namespace: tenant
spec:
  limits:
  - type: Container
    default: {cpu: 200m, memory: 128Mi}
    defaultRequest: {cpu: 100m, memory: 64Mi}
    max: {cpu: "1"}
---
apiVersion: v1
kind: ResourceQuota
metadata:
  name: q
  namespace: tenant
spec:
  hard:
    pods: "5"
    requests.cpu: "4"
    limits.memory: 4Gi
"#;

/// The whitespace-separated cells of each line of kubectl's output.
fn rows(out: &str) -> Vec<Vec<&str>> {
    out.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

fn used(q: Option<&ResourceQuota>, resource: &str) -> Option<String> {
    q?.status
        .as_ref()?
        .used
        .as_ref()?
        .get(resource)
        .map(|v| v.0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_exceed_a_quota_and_limit_range_defaults_apply() {
    let Some(c) = Cluster::builder().kubectl().start().await else {
        return;
    };
    c.k(&["create", "namespace", NS]);
    // NamespaceLifecycle as kubectl shows it.
    let out = c.try_k(&["delete", "namespace", "default"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("namespaces \"default\" is forbidden: this namespace may not be deleted"),
        "{stderr}"
    );
    let out = c.try_k(&["create", "configmap", "x", "-n", "nope"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("namespaces \"nope\" not found"), "{stderr}");
    c.apply(LIMITS_AND_QUOTA);
    let quotas = c.api::<ResourceQuota>(NS);
    wait_object(
        &quotas,
        "q",
        "the quota controller's first count",
        DEADLINE,
        |q| used(q, "pods").as_deref() == Some("0"),
    )
    .await
    .unwrap();

    // 20 creates at once, none stating resources.
    let pods = c.api::<Pod>(NS);
    let creates = (0..20).map(|i| {
        let pods = pods.clone();
        async move {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("p{i}")},
                "spec": {"containers": [{"name": "app", "image": "example.com/hello:v1"}]}
            }))
            .unwrap();
            pods.create(&PostParams::default(), &pod).await
        }
    });
    let results = futures::future::join_all(creates).await;
    let created: Vec<&Pod> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(created.len(), 5, "{results:?}");
    for r in &results {
        if let Err(kube::Error::Api(status)) = r {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains(
                    "exceeded quota: q, requested: pods=1, used: pods=5, limited: pods=5"
                ),
                "{status:?}"
            );
        } else if let Err(e) = r {
            panic!("unexpected failure: {e}");
        }
    }
    let listed = pods.list(&Default::default()).await.unwrap();
    assert_eq!(listed.items.len(), 5);

    // The LimitRange's defaults are in every created pod, with their annotation.
    for pod in &listed.items {
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let resources = serde_json::to_value(container.resources.as_ref().unwrap()).unwrap();
        assert_eq!(
            resources,
            json!({"limits": {"cpu": "200m", "memory": "128Mi"},
                "requests": {"cpu": "100m", "memory": "64Mi"}})
        );
        assert_eq!(
            pod.metadata.annotations.as_ref().unwrap()["kubernetes.io/limit-ranger"],
            "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"
        );
    }
    let first = listed.items[0].metadata.name.as_deref().unwrap();
    let shown = c.k(&[
        "get",
        "pod",
        first,
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.containers[0].resources.requests.cpu}",
    ]);
    assert_eq!(shown.trim(), "100m");

    // kubectl shows the refusal as Kubernetes words it, and the quota's Used/Hard.
    let refused = c.try_k(&["run", "extra", "-n", NS, "--image=example.com/hello:v1"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("pods \"extra\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=5, limited: pods=5"),
        "{stderr}"
    );
    let over_max = c.try_k_stdin(
        &["apply", "-n", NS, "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers:\n  - name: app\n    image: example.com/hello:v1\n    resources: {limits: {cpu: \"2\"}}\n",
    );
    let stderr = String::from_utf8_lossy(&over_max.stderr);
    assert!(
        stderr.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{stderr}"
    );
    wait_object(
        &quotas,
        "q",
        "the quota controller's count of 5 pods",
        DEADLINE,
        |q| used(q, "pods").as_deref() == Some("5"),
    )
    .await
    .unwrap();
    let out = c.k(&["describe", "quota", "q", "-n", NS]);
    let described = rows(&out);
    assert!(
        described.contains(&vec!["Resource", "Used", "Hard"]),
        "{out}"
    );
    assert!(described.contains(&vec!["pods", "5", "5"]), "{out}");
    assert!(
        described.contains(&vec!["requests.cpu", "500m", "4"]),
        "{out}"
    );
    assert!(
        described.contains(&vec!["limits.memory", "640Mi", "4Gi"]),
        "{out}"
    );
}
