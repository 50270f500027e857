//! Skiff scheduler and workload controllers, clients of the public Kubernetes API: they watch
//! the API server like any other client and act through ordinary requests.

pub mod bench;
pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod fake;
pub mod gc;
pub mod informer;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod nodelifecycle;
pub mod replicaset;
pub mod scheduler;
pub mod statefulset;
pub mod util;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::Api;
use tokio::task::JoinHandle;

use crate::informer::Informer;

/// Errors of the controllers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("api request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig could not be read.
    #[error("reading kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// Something the controllers do not support.
    #[error("{0}")]
    NotSupported(String),
}

/// Every controller `start` can run, by name.
pub const CONTROLLERS: &[&str] = &[
    "replicaset",
    "deployment",
    "garbagecollector",
    "namespace",
    "nodelifecycle",
    "disruption",
    "job",
    "daemonset",
    "statefulset",
    "cronjob",
];

/// What to run and with which timings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Run the scheduler.
    pub scheduler: bool,
    /// Controllers to run (names from `CONTROLLERS`).
    pub controllers: BTreeSet<String>,
    /// How long a node may go without renewing its Lease before it is Unknown.
    pub node_monitor_grace_period: Duration,
    /// Default toleration of unreachable/not-ready nodes before pods are evicted.
    pub pod_eviction_timeout: Duration,
    /// Scheduler tuning.
    pub scheduler_options: scheduler::SchedulerOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scheduler: true,
            controllers: CONTROLLERS.iter().map(|s| s.to_string()).collect(),
            node_monitor_grace_period: Duration::from_secs(40),
            pod_eviction_timeout: Duration::from_secs(300),
            scheduler_options: scheduler::SchedulerOptions::default(),
        }
    }
}

impl Options {
    /// Parses a `--controllers=a,b,-c` list: `*` means all, `-x` removes one.
    pub fn select(&mut self, list: &str) -> Result<(), Error> {
        let mut set = BTreeSet::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                set.extend(CONTROLLERS.iter().map(|s| s.to_string()));
            } else if let Some(name) = item.strip_prefix('-') {
                set.remove(name);
            } else if CONTROLLERS.contains(&item) {
                set.insert(item.to_string());
            } else {
                return Err(Error::NotSupported(format!(
                    "unknown controller {item:?} (known: {})",
                    CONTROLLERS.join(", ")
                )));
            }
        }
        self.controllers = set;
        Ok(())
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, Error> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Running controllers; `shutdown` stops them and waits, dropping aborts them.
pub struct Running {
    handles: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops every controller task.
    pub async fn shutdown(mut self) {
        let handles = std::mem::take(&mut self.handles);
        for h in &handles {
            h.abort();
        }
        for h in handles {
            let _ = h.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// Runs the scheduler and controllers only while this process holds the election Lease.
pub fn start_elected(client: Client, opts: Options, election: leader::ElectionOptions) -> Running {
    Running {
        handles: vec![tokio::spawn(leader::run_elected(client, opts, election))],
    }
}

/// Starts the scheduler and the selected controllers against `client`.
pub fn start(client: Client, opts: Options) -> Running {
    let mut handles = Vec::new();
    if opts.scheduler {
        let client = client.clone();
        let sopts = opts.scheduler_options.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let s = scheduler::Scheduler::new(client.clone(), sopts.clone());
                if let Err(e) = s.run().await {
                    tracing::warn!(error = %e, "scheduler stopped; restarting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    let on = |n: &str| opts.controllers.contains(n);
    let mut pods = Informer::<Pod>::new(Api::all(client.clone()));
    let mut rss = Informer::<ReplicaSet>::new(Api::all(client.clone()));
    let mut deps = Informer::<Deployment>::new(Api::all(client.clone()));
    if on("replicaset") {
        let ctx = Arc::new(replicaset::Ctx {
            client: client.clone(),
            pods: pods.store(),
            expectations: Default::default(),
        });
        let main = (rss.subscribe(), rss.store());
        let owned = pods.subscribe();
        handles.push(tokio::spawn(replicaset::run(ctx, main, owned)));
    }
    if on("deployment") {
        let ctx = Arc::new(deployment::Ctx {
            client: client.clone(),
            replicasets: rss.store(),
            pods: pods.store(),
        });
        let main = (deps.subscribe(), deps.store());
        let owned = rss.subscribe();
        handles.push(tokio::spawn(deployment::run(ctx, main, owned)));
    }
    let mut jobs = Informer::<Job>::new(Api::all(client.clone()));
    if on("job") {
        let ctx = Arc::new(job::Ctx {
            client: client.clone(),
            pods: pods.store(),
            expectations: Default::default(),
        });
        let main = (jobs.subscribe(), jobs.store());
        let owned = pods.subscribe();
        handles.push(tokio::spawn(job::run(ctx, main, owned)));
    }
    let mut daemonsets = Informer::<DaemonSet>::new(Api::all(client.clone()));
    if on("daemonset") {
        let mut nodes = Informer::<Node>::new(Api::all(client.clone()));
        let ctx = Arc::new(daemonset::Ctx {
            client: client.clone(),
            pods: pods.store(),
            nodes: nodes.store(),
            expectations: Default::default(),
        });
        let main = (daemonsets.subscribe(), daemonsets.store());
        let owned = pods.subscribe();
        let node_events = nodes.subscribe();
        handles.push(nodes.start());
        handles.push(tokio::spawn(daemonset::run(ctx, main, owned, node_events)));
    }
    let mut statefulsets = Informer::<StatefulSet>::new(Api::all(client.clone()));
    if on("statefulset") {
        let ctx = Arc::new(statefulset::Ctx {
            client: client.clone(),
            pods: pods.store(),
        });
        let main = (statefulsets.subscribe(), statefulsets.store());
        let owned = pods.subscribe();
        handles.push(tokio::spawn(statefulset::run(ctx, main, owned)));
    }
    let mut cronjobs = Informer::<CronJob>::new(Api::all(client.clone()));
    if on("cronjob") {
        let ctx = Arc::new(cronjob::Ctx {
            client: client.clone(),
            jobs: jobs.store(),
        });
        let main = (cronjobs.subscribe(), cronjobs.store());
        let owned = jobs.subscribe();
        handles.push(tokio::spawn(cronjob::run(ctx, main, owned)));
    }
    if on("garbagecollector") {
        let kinds = vec![
            gc::Kind::new(client.clone(), pods.store(), pods.synced()),
            gc::Kind::new(client.clone(), rss.store(), rss.synced()),
            gc::Kind::new(client.clone(), deps.store(), deps.synced()),
            gc::Kind::new(client.clone(), jobs.store(), jobs.synced()),
            gc::Kind::new(client.clone(), daemonsets.store(), daemonsets.synced()),
            gc::Kind::new(client.clone(), statefulsets.store(), statefulsets.synced()),
            gc::Kind::new(client.clone(), cronjobs.store(), cronjobs.synced()),
        ];
        let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        handles.push(tokio::spawn(async move {
            let _keep = _tx;
            gc::run(kinds, rx, Duration::from_secs(1)).await
        }));
    }
    if on("namespace") {
        let ctx = Arc::new(namespace::Ctx {
            client: client.clone(),
        });
        handles.push(tokio::spawn(namespace::run(ctx)));
    }
    if on("nodelifecycle") {
        let nodes = Informer::<Node>::new(Api::all(client.clone()));
        let leases = Informer::<Lease>::new(Api::namespaced(client.clone(), "kube-node-lease"));
        let ctx = Arc::new(nodelifecycle::Ctx {
            client: client.clone(),
            nodes: nodes.store(),
            leases: leases.store(),
            pods: pods.store(),
            grace: opts.node_monitor_grace_period,
            eviction_timeout: opts.pod_eviction_timeout,
        });
        let synced = vec![nodes.synced(), leases.synced(), pods.synced()];
        handles.push(nodes.start());
        handles.push(leases.start());
        handles.push(tokio::spawn(nodelifecycle::run(ctx, synced)));
    }
    if on("disruption") {
        let pdbs = Informer::<PodDisruptionBudget>::new(Api::all(client.clone()));
        let ctx = Arc::new(disruption::Ctx {
            client: client.clone(),
            pdbs: pdbs.store(),
            pods: pods.store(),
            replicasets: rss.store(),
        });
        let synced = vec![pdbs.synced(), pods.synced()];
        handles.push(pdbs.start());
        handles.push(tokio::spawn(disruption::run(ctx, synced)));
    }
    if !opts.controllers.is_empty() {
        handles.push(pods.start());
        handles.push(rss.start());
        handles.push(deps.start());
        handles.push(jobs.start());
        handles.push(daemonsets.start());
        handles.push(statefulsets.start());
        handles.push(cronjobs.start());
    }
    Running { handles }
}
