//! Skiff scheduler and workload controllers, clients of the public Kubernetes API: they watch
//! the API server like any other client and act through ordinary requests.

pub mod clusterroleaggregation;
pub mod cron;
pub mod cronjob;
pub mod csrapproving;
pub mod csrsigning;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod gc;
pub mod hpa;
pub mod informer;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod replicaset;
pub mod replicationcontroller;
pub mod resourcequota;
pub mod rootcacert;
pub mod runner;
pub mod scaletozero;
pub mod scheduler;
pub mod serviceaccount;
pub mod servicepods;
pub mod statefulset;
pub mod util;
pub mod written;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Node, Pod, ReplicationController, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use tokio::task::JoinHandle;

pub use crate::informer::Informers;
pub use crate::runner::Clock;

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

/// One controller `start` can run: its `--controllers` name and how it starts, given the shared
/// informers (it subscribes to the kinds it needs; they start once every controller has) and
/// the manager's settings.
pub struct ControllerEntry {
    /// The name `--controllers` selects it by.
    pub name: &'static str,
    /// Builds its context from the informers and spawns it.
    pub start: fn(&mut Informers, &Manager) -> JoinHandle<()>,
}

/// What every controller gets besides the informers.
pub struct Manager {
    /// API client.
    pub client: Client,
    /// Timings and the clock.
    pub opts: Options,
}

/// Every controller `start` can run, in start order.
pub static CONTROLLERS: &[ControllerEntry] = &[
    ControllerEntry {
        name: "replicaset",
        start: start_replicaset,
    },
    ControllerEntry {
        name: "replicationcontroller",
        start: start_replicationcontroller,
    },
    ControllerEntry {
        name: "deployment",
        start: start_deployment,
    },
    ControllerEntry {
        name: "garbagecollector",
        start: start_garbagecollector,
    },
    ControllerEntry {
        name: "namespace",
        start: start_namespace,
    },
    ControllerEntry {
        name: "serviceaccount",
        start: start_serviceaccount,
    },
    ControllerEntry {
        name: "root-ca-cert-publisher",
        start: start_root_ca_cert_publisher,
    },
    ControllerEntry {
        name: "nodelifecycle",
        start: start_nodelifecycle,
    },
    ControllerEntry {
        name: "disruption",
        start: start_disruption,
    },
    ControllerEntry {
        name: "resourcequota",
        start: start_resourcequota,
    },
    ControllerEntry {
        name: "job",
        start: start_job,
    },
    ControllerEntry {
        name: "daemonset",
        start: start_daemonset,
    },
    ControllerEntry {
        name: "statefulset",
        start: start_statefulset,
    },
    ControllerEntry {
        name: "cronjob",
        start: start_cronjob,
    },
    ControllerEntry {
        name: "endpointslice",
        start: start_endpointslice,
    },
    ControllerEntry {
        name: "endpoint",
        start: start_endpoints,
    },
    ControllerEntry {
        name: "scaletozero",
        start: start_scaletozero,
    },
    ControllerEntry {
        name: "horizontalpodautoscaling",
        start: start_hpa,
    },
    ControllerEntry {
        name: "csrapproving",
        start: start_csrapproving,
    },
    ControllerEntry {
        name: "csrsigning",
        start: start_csrsigning,
    },
    ControllerEntry {
        name: "clusterrole-aggregation",
        start: start_clusterrole_aggregation,
    },
    ControllerEntry {
        name: "persistentvolume-binder",
        start: start_persistentvolume_binder,
    },
    ControllerEntry {
        name: "pvc-protection",
        start: start_pvc_protection,
    },
    ControllerEntry {
        name: "pv-protection",
        start: start_pv_protection,
    },
];

/// The names of every controller, in start order.
pub fn controller_names() -> impl Iterator<Item = &'static str> {
    CONTROLLERS.iter().map(|c| c.name)
}

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
    /// The time controllers read (real unless a test sets a fake one).
    pub clock: Clock,
    /// The CA `csrsigning` issues certificates from; without one it signs nothing.
    pub cluster_signing: Option<csrsigning::SigningCa>,
    /// The cluster CA (PEM) `root-ca-cert-publisher` puts in every namespace's
    /// `kube-root-ca.crt`; without it that controller publishes nothing.
    pub root_ca: Option<String>,
    /// The client the scheduler binds and writes with, under its own identity
    /// (`system:kube-scheduler`); `None`: the controllers' client. Its reads come from the
    /// shared informers, which watch with the controllers' client.
    pub scheduler_client: Option<OwnClient>,
    /// The HorizontalPodAutoscaler controller's timings and tolerance
    /// (`--horizontal-pod-autoscaler-*`).
    pub hpa: hpa::HpaOptions,
}

/// A component's own kube client, carried in `Options` (printed without its credentials).
#[derive(Clone)]
pub struct OwnClient(pub Client);

impl std::fmt::Debug for OwnClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnClient")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scheduler: true,
            controllers: controller_names().map(str::to_string).collect(),
            node_monitor_grace_period: Duration::from_secs(40),
            pod_eviction_timeout: Duration::from_secs(300),
            scheduler_options: scheduler::SchedulerOptions::default(),
            clock: Clock::real(),
            cluster_signing: None,
            root_ca: None,
            scheduler_client: None,
            hpa: hpa::HpaOptions::default(),
        }
    }
}

impl Options {
    /// Parses a `--controllers=a,b,-c` list: `*` means all, `-x` removes one.
    pub fn select(&mut self, list: &str) -> Result<(), Error> {
        let mut set = BTreeSet::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                set.extend(controller_names().map(str::to_string));
            } else if let Some(name) = item.strip_prefix('-') {
                set.remove(name);
            } else if controller_names().any(|n| n == item) {
                set.insert(item.to_string());
            } else {
                return Err(Error::NotSupported(format!(
                    "unknown controller {item:?} (known: {})",
                    controller_names().collect::<Vec<_>>().join(", ")
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
    /// Asks an elected run to stop its controllers and release the lease.
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

/// How long an elected run gets at shutdown to stop its controllers and release the lease.
const RELEASE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl Running {
    /// Stops every controller task; an elected run first releases its lease (up to 5 s).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
            let handles = std::mem::take(&mut self.handles);
            let aborts: Vec<_> = handles.iter().map(JoinHandle::abort_handle).collect();
            let all = futures::future::join_all(handles);
            if tokio::time::timeout(RELEASE_GRACE, all).await.is_err() {
                tracing::warn!("the leader election did not stop within {RELEASE_GRACE:?}");
                aborts.iter().for_each(tokio::task::AbortHandle::abort);
            }
            return;
        }
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
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Running {
        handles: vec![tokio::spawn(leader::run_elected(
            client, opts, election, stopped,
        ))],
        stop: Some(stop),
    }
}

/// Aborts its tasks when dropped.
pub(crate) struct AbortOnDrop(pub(crate) Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Starts the scheduler and the selected controllers against `client`: each subscribes to the
/// informers it needs, then every informer created starts (one watch per kind).
pub fn start(client: Client, opts: Options) -> Running {
    let mut informers = Informers::new(client.clone());
    let mut handles = spawn_controllers(&mut informers, client, opts);
    handles.extend(informers.start());
    Running {
        handles,
        stop: None,
    }
}

/// Spawns the scheduler and the selected controllers, each subscribing to the informers it
/// needs; they wait for events until the caller starts `informers`.
pub fn spawn_controllers(
    informers: &mut Informers,
    client: Client,
    opts: Options,
) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    if opts.scheduler {
        let nodes = informers.all::<Node>().events();
        let pods = informers.all::<Pod>().events();
        let classes = informers.all::<RuntimeClass>().events();
        let volumes = scheduler::VolumeEvents::from_informers(informers);
        let own = opts.scheduler_client.as_ref().map(|c| c.0.clone());
        let s = scheduler::Scheduler::new(
            own.unwrap_or_else(|| client.clone()),
            opts.scheduler_options.clone(),
        );
        handles.push(tokio::spawn(async move {
            if let Err(e) = s.run_with(nodes, pods, classes, volumes).await {
                tracing::error!(error = %e, "scheduler stopped");
            }
        }));
    }
    let manager = Manager { client, opts };
    for c in CONTROLLERS {
        if manager.opts.controllers.contains(c.name) {
            handles.push((c.start)(informers, &manager));
        }
    }
    handles
}

fn start_replicas<K: replicaset::ReplicaKind>(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(replicaset::Ctx::new(
        m.client.clone(),
        inf.all::<Pod>().store(),
        inf.all::<Pod>().synced(),
        K::COMPONENT,
    ));
    let main = inf.all::<K>();
    let main = (main.subscribe(), main.store());
    let pods = inf.all::<Pod>().subscribe();
    tokio::spawn(replicaset::run::<K>(ctx, main, pods))
}

fn start_replicaset(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    start_replicas::<ReplicaSet>(inf, m)
}

fn start_replicationcontroller(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    start_replicas::<ReplicationController>(inf, m)
}

fn start_deployment(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(deployment::Ctx {
        client: m.client.clone(),
        replicasets: inf.all::<ReplicaSet>().store(),
        pods: inf.all::<Pod>().store(),
    });
    let deps = inf.all::<Deployment>();
    let main = (deps.subscribe(), deps.store());
    let owned = inf.all::<ReplicaSet>().subscribe();
    tokio::spawn(deployment::run(ctx, main, owned))
}

fn start_job(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(job::Ctx {
        client: m.client.clone(),
        pods: inf.all::<Pod>().store(),
        expectations: Default::default(),
        clock: m.opts.clock.clone(),
    });
    let jobs = inf.all::<Job>();
    let main = (jobs.subscribe(), jobs.store());
    let owned = inf.all::<Pod>().subscribe();
    tokio::spawn(job::run(ctx, main, owned))
}

fn start_daemonset(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(daemonset::Ctx {
        client: m.client.clone(),
        pods: inf.all::<Pod>().store(),
        nodes: inf.all::<Node>().store(),
        expectations: Default::default(),
    });
    let dss = inf.all::<DaemonSet>();
    let main = (dss.subscribe(), dss.store());
    let owned = inf.all::<Pod>().subscribe();
    let node_events = inf.all::<Node>().subscribe();
    tokio::spawn(daemonset::run(ctx, main, owned, node_events))
}

fn start_statefulset(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(statefulset::Ctx {
        client: m.client.clone(),
        pods: inf.all::<Pod>().store(),
    });
    let sts = inf.all::<StatefulSet>();
    let main = (sts.subscribe(), sts.store());
    let owned = inf.all::<Pod>().subscribe();
    tokio::spawn(statefulset::run(ctx, main, owned))
}

fn start_cronjob(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(cronjob::Ctx {
        client: m.client.clone(),
        jobs: inf.all::<Job>().store(),
        clock: m.opts.clock.clone(),
    });
    let cjs = inf.all::<CronJob>();
    let main = (cjs.subscribe(), cjs.store());
    let owned = inf.all::<Job>().subscribe();
    tokio::spawn(cronjob::run(ctx, main, owned))
}

fn start_endpointslice(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(endpointslice::Ctx {
        client: m.client.clone(),
        pods: inf.all::<Pod>().store(),
        nodes: inf.all::<Node>().store(),
        slices: inf.all::<EndpointSlice>().store(),
        synced: vec![
            inf.all::<Pod>().synced(),
            inf.all::<Node>().synced(),
            inf.all::<EndpointSlice>().synced(),
        ],
        written: Default::default(),
        members: Default::default(),
    });
    let svcs = inf.all::<Service>();
    let main = (svcs.subscribe(), svcs.store());
    let service_events = svcs.events();
    let pods = inf.all::<Pod>().subscribe();
    let slices = inf.all::<EndpointSlice>().subscribe();
    let nodes = inf.all::<Node>().subscribe();
    tokio::spawn(endpointslice::run(
        ctx,
        main,
        service_events,
        pods,
        slices,
        nodes,
    ))
}

fn start_endpoints(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(endpoints::Ctx {
        client: m.client.clone(),
        pods: inf.all::<Pod>().store(),
        endpoints: inf.all::<Endpoints>().store(),
        synced: vec![inf.all::<Pod>().synced(), inf.all::<Endpoints>().synced()],
        written: Default::default(),
        members: Default::default(),
    });
    let svcs = inf.all::<Service>();
    let main = (svcs.subscribe(), svcs.store());
    let service_events = svcs.events();
    let pods = inf.all::<Pod>().subscribe();
    let endpoints = inf.all::<Endpoints>().subscribe();
    tokio::spawn(endpoints::run(ctx, main, service_events, pods, endpoints))
}

fn start_scaletozero(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(scaletozero::Ctx {
        client: m.client.clone(),
        clock: m.opts.clock.clone(),
        seen: Default::default(),
        reported: Default::default(),
        deployments: inf.all::<Deployment>().store(),
    });
    let deps = inf.all::<Deployment>();
    let main = (deps.subscribe(), deps.store());
    tokio::spawn(scaletozero::run(ctx, main))
}

fn start_hpa(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let hpas = inf.all::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>();
    let ctx = Arc::new(hpa::Ctx::new(
        m.client.clone(),
        m.opts.clock.clone(),
        m.opts.hpa.clone(),
        hpas.store(),
        inf.all::<Pod>().store(),
        Arc::new(hpa::ApiMetrics::new(m.client.clone())),
    ));
    let synced = vec![
        inf.all::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>()
            .synced(),
        inf.all::<Pod>().synced(),
    ];
    tokio::spawn(hpa::run(ctx, synced))
}

fn start_csrapproving(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(csrapproving::Ctx {
        client: m.client.clone(),
        clock: m.opts.clock.clone(),
    });
    let csrs = inf.all::<CertificateSigningRequest>();
    let main = (csrs.subscribe(), csrs.store());
    tokio::spawn(csrapproving::run(ctx, main))
}

fn start_clusterrole_aggregation(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let roles = inf.all::<ClusterRole>();
    let main = (roles.subscribe(), roles.store());
    let changes = roles.subscribe();
    let ctx = Arc::new(clusterroleaggregation::Ctx {
        client: m.client.clone(),
        roles: main.1.clone(),
    });
    tokio::spawn(clusterroleaggregation::run(ctx, main, changes))
}

fn start_csrsigning(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let Some(ca) = m.opts.cluster_signing.clone() else {
        return tokio::spawn(async {
            tracing::info!(
                "csrsigning: no cluster signing CA (--cluster-signing-cert-file, --cluster-signing-key-file): certificate requests stay unsigned"
            );
        });
    };
    let ctx = Arc::new(csrsigning::Ctx {
        client: m.client.clone(),
        clock: m.opts.clock.clone(),
        ca,
    });
    let csrs = inf.all::<CertificateSigningRequest>();
    let main = (csrs.subscribe(), csrs.store());
    tokio::spawn(csrsigning::run(ctx, main))
}

fn start_garbagecollector(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    fn owned<K>(inf: &mut Informers, client: &Client) -> gc::OwnedKind
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
        K::Scope: 'static,
    {
        let i = inf.all::<K>();
        gc::OwnedKind::new(client.clone(), i.store(), i.synced())
    }
    let c = &m.client;
    let kinds = vec![
        owned::<Pod>(inf, c),
        owned::<ReplicaSet>(inf, c),
        owned::<ReplicationController>(inf, c),
        owned::<Deployment>(inf, c),
        owned::<Job>(inf, c),
        owned::<DaemonSet>(inf, c),
        owned::<StatefulSet>(inf, c),
        owned::<CronJob>(inf, c),
        owned::<ConfigMap>(inf, c),
        owned::<Secret>(inf, c),
        owned::<Service>(inf, c),
    ];
    let crds = inf.all::<CustomResourceDefinition>();
    let custom = gc::CustomKinds::new(c.clone(), crds.store(), crds.synced(), crds.events());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _keep = tx;
        gc::run(kinds, Some(custom), rx, Duration::from_secs(1)).await
    })
}

fn start_namespace(_inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(namespace::Ctx {
        client: m.client.clone(),
    });
    tokio::spawn(namespace::run(ctx))
}

fn start_serviceaccount(_inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(serviceaccount::Ctx {
        client: m.client.clone(),
    });
    tokio::spawn(serviceaccount::run(ctx))
}

fn start_root_ca_cert_publisher(_inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let Some(ca_pem) = m.opts.root_ca.clone() else {
        return tokio::spawn(async {
            tracing::warn!(
                "root-ca-cert-publisher: no cluster CA given; kube-root-ca.crt is not published"
            );
        });
    };
    let ctx = Arc::new(rootcacert::Ctx {
        client: m.client.clone(),
        ca_pem,
    });
    tokio::spawn(rootcacert::run(ctx))
}

fn start_nodelifecycle(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(nodelifecycle::Ctx {
        client: m.client.clone(),
        nodes: inf.all::<Node>().store(),
        leases: inf.namespaced::<Lease>("kube-node-lease").store(),
        pods: inf.all::<Pod>().store(),
        grace: m.opts.node_monitor_grace_period,
        eviction_timeout: m.opts.pod_eviction_timeout,
    });
    let synced = vec![
        inf.all::<Node>().synced(),
        inf.namespaced::<Lease>("kube-node-lease").synced(),
        inf.all::<Pod>().synced(),
    ];
    tokio::spawn(nodelifecycle::run(ctx, synced))
}

fn start_resourcequota(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, ResourceQuota};
    let ctx = Arc::new(resourcequota::Ctx {
        client: m.client.clone(),
    });
    let quotas = inf.all::<ResourceQuota>();
    let main = (quotas.subscribe(), quotas.store());
    let watched = resourcequota::Watched {
        pods: inf.all::<Pod>().subscribe(),
        services: inf.all::<Service>().subscribe(),
        configmaps: inf.all::<ConfigMap>().subscribe(),
        secrets: inf.all::<Secret>().subscribe(),
        claims: inf.all::<PersistentVolumeClaim>().subscribe(),
        rcs: inf.all::<ReplicationController>().subscribe(),
    };
    tokio::spawn(resourcequota::run(ctx, main, watched))
}

fn start_disruption(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    let ctx = Arc::new(disruption::Ctx {
        client: m.client.clone(),
        pdbs: inf.all::<PodDisruptionBudget>().store(),
        pods: inf.all::<Pod>().store(),
        replicasets: inf.all::<ReplicaSet>().store(),
    });
    let synced = vec![
        inf.all::<PodDisruptionBudget>().synced(),
        inf.all::<Pod>().synced(),
    ];
    tokio::spawn(disruption::run(ctx, synced))
}

fn start_persistentvolume_binder(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use k8s_openapi::api::storage::v1::StorageClass;
    let ctx = Arc::new(persistentvolume::Ctx::new(
        m.client.clone(),
        inf.all::<PersistentVolumeClaim>().store(),
        inf.all::<PersistentVolume>().store(),
        inf.all::<StorageClass>().store(),
        inf.all::<Node>().store(),
    ));
    let claims = inf.all::<PersistentVolumeClaim>();
    let streams = persistentvolume::Streams {
        claims: (Box::pin(claims.subscribe()), claims.store()),
        claims_for_volumes: Box::pin(claims.subscribe()),
        volumes: (
            Box::pin(inf.all::<PersistentVolume>().subscribe()),
            inf.all::<PersistentVolume>().store(),
        ),
        volumes_for_claims: Box::pin(inf.all::<PersistentVolume>().subscribe()),
        nodes_for_claims: Box::pin(inf.all::<Node>().subscribe()),
    };
    tokio::spawn(persistentvolume::run(ctx, streams))
}

fn start_pvc_protection(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let ctx = Arc::new(persistentvolume::ProtectionCtx {
        client: m.client.clone(),
        pods: inf.all::<Pod>().store(),
    });
    let claims = inf.all::<PersistentVolumeClaim>();
    let main = (Box::pin(claims.subscribe()) as _, claims.store());
    let pods = Box::pin(inf.all::<Pod>().subscribe());
    tokio::spawn(persistentvolume::run_claim_protection(ctx, main, pods))
}

fn start_pv_protection(inf: &mut Informers, m: &Manager) -> JoinHandle<()> {
    use k8s_openapi::api::core::v1::PersistentVolume;
    let ctx = Arc::new(persistentvolume::ProtectionCtx {
        client: m.client.clone(),
        pods: inf.all::<Pod>().store(),
    });
    let volumes = inf.all::<PersistentVolume>();
    let main = (Box::pin(volumes.subscribe()) as _, volumes.store());
    tokio::spawn(persistentvolume::run_volume_protection(ctx, main))
}
