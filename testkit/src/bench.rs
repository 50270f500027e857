//! Benchmarks against a running API server (started with `--no-controllers --no-scheduler`):
//! scheduling throughput onto simulated nodes and the time for a Deployment to become Available.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event as WEvent};

use crate::fake::{FakeNodeSpec, FakeNodes};
use skiff_controllers::{Error, Options};

/// Result of a scheduling run.
#[derive(Clone, Debug)]
pub struct SchedulerBenchResult {
    /// Simulated nodes.
    pub nodes: usize,
    /// Pods scheduled.
    pub pods: usize,
    /// Time to create the pending pods (not scheduled yet).
    pub create_time: Duration,
    /// Time from starting the scheduler until every pod was bound.
    pub schedule_time: Duration,
}

impl SchedulerBenchResult {
    /// Pods bound per second.
    pub fn pods_per_second(&self) -> f64 {
        self.pods as f64 / self.schedule_time.as_secs_f64().max(1e-9)
    }
}

/// Starts simulated nodes `{prefix}0`, `{prefix}1`, … spread over three zones.
async fn start_nodes(client: &Client, prefix: &str, nodes: usize) -> Result<FakeNodes, Error> {
    let fake = FakeNodes::start(client.clone()).await;
    let specs: Vec<FakeNodeSpec> = (0..nodes)
        .map(|i| FakeNodeSpec::new(&format!("{prefix}{i}"), &format!("zone-{}", i % 3)))
        .collect();
    fake.add(&specs).await?;
    Ok(fake)
}

async fn ensure_namespace(client: &Client, ns: &str) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
    }))
    .map_err(|e| Error::NotSupported(e.to_string()))?;
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates `nodes` simulated nodes (prefix `bench-node-`) and `pods` pending pods in namespace
/// `bench-sched`, then runs the scheduler until every pod is bound.
pub async fn scheduler_throughput(
    client: Client,
    nodes: usize,
    pods: usize,
) -> Result<SchedulerBenchResult, Error> {
    let fake = start_nodes(&client, "bench-node-", nodes).await?;
    // Only the scheduler writes during the measurement: no lease renewals, no pod status.
    fake.shutdown().await;
    let ns = "bench-sched";
    ensure_namespace(&client, ns).await?;
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    let results = futures::stream::iter(0..pods)
        .map(|i| {
            let api = api.clone();
            async move {
                let pod: Pod = serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("p-{i}"), "labels": {"app": "bench"}},
                    "spec": {"containers": [{"name": "c", "image": "bench",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
                }))
                .map_err(|e| Error::NotSupported(e.to_string()))?;
                api.create(&PostParams::default(), &pod).await?;
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        r?;
    }
    let create_time = started.elapsed();
    // Start the scheduler, and count bound pods from a watch.
    let sched_started = Instant::now();
    let running = skiff_controllers::start(
        client.clone(),
        Options {
            scheduler: true,
            controllers: Default::default(),
            ..Default::default()
        },
    );
    let mut bound = std::collections::HashSet::new();
    let mut stream =
        watcher::watcher(api.clone(), watcher::Config::default().page_size(5000)).boxed();
    while bound.len() < pods {
        match stream.try_next().await {
            Ok(Some(WEvent::Apply(p) | WEvent::InitApply(p))) => {
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    bound.insert(p.metadata.name.unwrap_or_default());
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => tracing::debug!(error = %e, "bench watch"),
        }
    }
    let schedule_time = sched_started.elapsed();
    running.shutdown().await;
    Ok(SchedulerBenchResult {
        nodes,
        pods,
        create_time,
        schedule_time,
    })
}

/// Runs the controllers and scheduler with `nodes` simulated nodes and measures how long an
/// R-replica Deployment takes from creation to `availableReplicas == R`.
pub async fn deployment_available(
    client: Client,
    nodes: usize,
    replicas: i32,
) -> Result<Duration, Error> {
    let fake = start_nodes(&client, "bench-dnode-", nodes).await?;
    let running = skiff_controllers::start(client.clone(), Options::default());
    let ns = "bench-deploy";
    ensure_namespace(&client, ns).await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
            "template": {"metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "bench"}]}}},
    }))
    .map_err(|e| Error::NotSupported(e.to_string()))?;
    let started = Instant::now();
    api.create(&PostParams::default(), &d).await?;
    let mut stream = watcher::watcher(
        api.clone(),
        watcher::Config::default().fields("metadata.name=bench"),
    )
    .boxed();
    loop {
        match stream.try_next().await {
            Ok(Some(WEvent::Apply(d) | WEvent::InitApply(d))) => {
                if d.status.and_then(|s| s.available_replicas).unwrap_or(0) >= replicas {
                    break;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => tracing::debug!(error = %e, "bench watch"),
        }
    }
    let took = started.elapsed();
    running.shutdown().await;
    fake.shutdown().await;
    Ok(took)
}
