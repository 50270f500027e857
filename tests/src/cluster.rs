//! One builder for every end-to-end cluster: a `skiff server`, optionally a `skiff registry`
//! with images pushed, real `skiff node` processes, simulated nodes (`skiff_testkit::fake`)
//! and controllers run in this process; plus the verbs tests use on it (kubectl, apply, pods).
//!
//! ```ignore
//! let Some(c) = Cluster::builder().kubectl().fake_zones(&["a", "b", "c"]).start().await else {
//!     return; // kubectl is missing and SKIFF_REQUIRE_TOOLS is not set
//! };
//! ```

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node as KNode, Pod};
use kube::api::{Api, ListParams};
use skiff_testkit::fake::{FakeNodeSpec, FakeNodes};

use crate::{Node, Registry, Server, ok, repo_root, tools, wait};

/// How long a real node may take to report Ready.
const NODE_READY: Duration = Duration::from_secs(60);

/// What [`ClusterBuilder::start`] starts; see the methods.
#[derive(Default)]
pub struct ClusterBuilder {
    server_args: Vec<String>,
    kubectl: bool,
    registry: bool,
    pushes: Vec<(String, String)>,
    nodes: Vec<NodeSpec>,
    node_args: Vec<String>,
    fake_nodes: Vec<FakeNodeSpec>,
    fake_renewal: Option<Duration>,
    controllers: Option<skiff_controllers::Options>,
}

impl ClusterBuilder {
    /// Extra `skiff server` flags.
    pub fn server_args(mut self, args: &[&str]) -> Self {
        self.server_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The tests drive the cluster with kubectl 1.32: without it `start` returns `None` (the
    /// test is skipped), or fails under `SKIFF_REQUIRE_TOOLS`.
    pub fn kubectl(mut self) -> Self {
        self.kubectl = true;
        self
    }

    /// A `skiff registry` beside the server.
    pub fn registry(mut self) -> Self {
        self.registry = true;
        self
    }

    /// Pushes `samples/FILE` to the registry as `NAME` (implies [`registry`](Self::registry)).
    pub fn push(mut self, file: &str, name: &str) -> Self {
        self.registry = true;
        self.pushes.push((file.into(), name.into()));
        self
    }

    /// A real `skiff node` called `name`, with extra flags (after [`node_args`](Self::node_args)).
    pub fn node(mut self, name: &str, args: &[&str]) -> Self {
        self.nodes.push(NodeSpec {
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ip: None,
        });
        self
    }

    /// A real node `node-X` in zone `zone-X` for each `X` of `zones`.
    pub fn zones(mut self, zones: &[&str]) -> Self {
        for z in zones {
            self.nodes.push(zone_node(z));
        }
        self
    }

    /// A real node `node-X` in zone `zone-X` for each `X` of `zones`, the i-th (from 0) on
    /// its own loopback address `127.0.0.(i+2)` for its endpoint, its ingress (HTTP and HTTPS)
    /// and so its NodePorts, so each node's listeners can be told apart.
    pub fn loopback_zones(mut self, zones: &[&str]) -> Self {
        for z in zones {
            let mut spec = zone_node(z);
            spec.ip = Some(format!("127.0.0.{}", self.nodes.len() + 2));
            self.nodes.push(spec);
        }
        self
    }

    /// Flags every real node gets (also those added later with [`Cluster::add_zone_node`]).
    pub fn node_args(mut self, args: &[&str]) -> Self {
        self.node_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Simulated nodes.
    pub fn fake_nodes(mut self, nodes: &[FakeNodeSpec]) -> Self {
        self.fake_nodes.extend(nodes.iter().cloned());
        self
    }

    /// A simulated node `node-X` in zone `zone-X` for each `X` of `zones`.
    pub fn fake_zones(mut self, zones: &[&str]) -> Self {
        for z in zones {
            self.fake_nodes.push(FakeNodeSpec::new(
                &format!("node-{z}"),
                &format!("zone-{z}"),
            ));
        }
        self
    }

    /// How often the simulated nodes renew their Leases (the simulator's default otherwise).
    pub fn fake_renewal(mut self, every: Duration) -> Self {
        self.fake_renewal = Some(every);
        self
    }

    /// The scheduler and controllers run in this process as a client of the server (the
    /// server runs none), so they live through a server restart.
    pub fn controllers_in_process(mut self, opts: skiff_controllers::Options) -> Self {
        self.controllers = Some(opts);
        self
    }

    /// Starts everything and waits until each real node is Ready. `None` when a tool asked
    /// for is missing (the test is skipped).
    pub async fn start(self) -> Option<Cluster> {
        let kubectl = if self.kubectl {
            Some(tools::kubectl_132()?)
        } else {
            None
        };
        let mut server_args: Vec<&str> = self.server_args.iter().map(String::as_str).collect();
        if self.controllers.is_some() {
            server_args.extend(["--no-controllers", "--no-scheduler"]);
        }
        let server = Server::start_with(&server_args).expect("skiff server starts");
        let client = server.client().await.expect("a kube client");
        let registry = self
            .registry
            .then(|| Registry::start().expect("skiff registry starts"));
        if let Some(r) = &registry {
            for (file, name) in &self.pushes {
                r.push(&repo_root().join("samples").join(file), name)
                    .expect("skiff push");
            }
        }
        let controllers = self
            .controllers
            .map(|opts| skiff_controllers::start(client.clone(), opts));
        let fake = if self.fake_nodes.is_empty() {
            None
        } else {
            let fake = match self.fake_renewal {
                Some(every) => FakeNodes::start_with_renewal(client.clone(), every).await,
                None => FakeNodes::start(client.clone()).await,
            };
            fake.add(&self.fake_nodes)
                .await
                .expect("simulated nodes register");
            Some(fake)
        };
        let mut c = Cluster {
            server,
            registry,
            nodes: Vec::new(),
            client,
            kubectl,
            fake,
            controllers,
            node_args: self.node_args,
        };
        for spec in self.nodes {
            let args: Vec<&str> = spec.args.iter().map(String::as_str).collect();
            match &spec.ip {
                Some(ip) => c.add_node_at(&spec.name, ip, &args).await,
                None => c.add_node(&spec.name, &args).await,
            }
        }
        Some(c)
    }
}

/// A real node the builder starts.
struct NodeSpec {
    name: String,
    args: Vec<String>,
    /// Its loopback address, with an ingress there; `None`: 127.0.0.1 without an ingress.
    ip: Option<String>,
}

fn zone_node(zone: &str) -> NodeSpec {
    NodeSpec {
        name: format!("node-{zone}"),
        args: vec!["--zone".into(), format!("zone-{zone}")],
        ip: None,
    }
}

/// A running cluster; see [`ClusterBuilder`]. Dropping it kills every process.
pub struct Cluster {
    pub server: Server,
    pub registry: Option<Registry>,
    /// The real nodes, in the order they were started.
    pub nodes: Vec<Node>,
    /// A client of the server with the admin kubeconfig.
    pub client: kube::Client,
    /// kubectl 1.32, when the builder asked for it.
    pub kubectl: Option<PathBuf>,
    /// The simulated nodes, when the builder asked for any.
    pub fake: Option<FakeNodes>,
    /// The controllers running in this process, when the builder asked for them.
    pub controllers: Option<skiff_controllers::Running>,
    node_args: Vec<String>,
}

impl Cluster {
    /// A builder of a cluster of one `skiff server` and nothing else.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Starts a real node `name` (with the builder's node flags and `args`) and waits until
    /// the API shows it Ready.
    pub async fn add_node(&mut self, name: &str, args: &[&str]) {
        let mut all: Vec<&str> = self.node_args.iter().map(String::as_str).collect();
        all.extend(args);
        let node = Node::start_with(&self.server, name, &all).expect("skiff node starts");
        self.push_ready_node(node).await;
    }

    /// As [`add_node`](Self::add_node), on the loopback address `ip` with an ingress there
    /// (see [`Node::start_at`]).
    pub async fn add_node_at(&mut self, name: &str, ip: &str, args: &[&str]) {
        let mut all: Vec<&str> = self.node_args.iter().map(String::as_str).collect();
        all.extend(args);
        let node = Node::start_at(&self.server, name, ip, true, &all).expect("skiff node starts");
        self.push_ready_node(node).await;
    }

    /// Starts a real node `name` whose minted client certificate is valid for `valid_for` only
    /// (see [`Node::start_with_certificate_valid_for`]) and waits until it is Ready.
    pub async fn add_node_with_certificate_valid_for(&mut self, name: &str, valid_for: Duration) {
        let all: Vec<&str> = self.node_args.iter().map(String::as_str).collect();
        let node = Node::start_with_certificate_valid_for(&self.server, name, valid_for, &all)
            .expect("skiff node starts");
        self.push_ready_node(node).await;
    }

    /// Starts a real node `name` that joins through TLS bootstrap with the bootstrap-token
    /// kubeconfig `bootstrap` (see [`Node::start_bootstrapping`]) and waits until it is Ready.
    pub async fn add_bootstrapping_node(&mut self, name: &str, bootstrap: &Path) {
        let all: Vec<&str> = self.node_args.iter().map(String::as_str).collect();
        let node = Node::start_bootstrapping(&self.server, name, bootstrap, &all)
            .expect("skiff node starts");
        self.push_ready_node(node).await;
    }

    async fn push_ready_node(&mut self, node: Node) {
        let name = node.name.clone();
        let name = name.as_str();
        self.nodes.push(node);
        let nodes: Api<KNode> = Api::all(self.client.clone());
        wait::wait_object(
            &nodes,
            name,
            "to be Ready",
            NODE_READY,
            |n: Option<&KNode>| {
                n.and_then(|n| n.status.as_ref()?.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", self.node_logs()));
    }

    /// Starts a real node `node-X` in zone `zone-X` and waits until it is Ready.
    pub async fn add_zone_node(&mut self, zone: &str) {
        let spec = zone_node(zone);
        self.add_node(
            &spec.name,
            &spec.args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
    }

    /// The real node `name`.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in this cluster"))
    }

    /// The real node `name`, to kill it.
    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in this cluster"))
    }

    /// Every real node's log, for failure messages.
    pub fn node_logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.name, n.log()))
            .collect()
    }

    /// The registry (the builder must have asked for one).
    pub fn registry(&self) -> &Registry {
        self.registry
            .as_ref()
            .expect("the cluster was built with a registry")
    }

    /// Pushes `samples/FILE` as `NAME`; returns the full image reference.
    pub fn push(&self, file: &str, name: &str) -> String {
        self.registry()
            .push(&repo_root().join("samples").join(file), name)
            .expect("skiff push")
    }

    /// The simulated nodes (the builder must have asked for some).
    pub fn fake(&self) -> &FakeNodes {
        self.fake
            .as_ref()
            .expect("the cluster was built with simulated nodes")
    }

    /// kubectl 1.32 (the builder must have asked for it).
    pub fn kubectl_path(&self) -> &Path {
        self.kubectl
            .as_deref()
            .expect("the cluster was built with kubectl")
    }

    /// Runs kubectl; whatever it returns.
    pub fn try_k(&self, args: &[&str]) -> Output {
        self.server
            .kubectl(self.kubectl_path(), args)
            .expect("kubectl runs")
    }

    /// Runs kubectl, asserting success; returns its stdout.
    pub fn k(&self, args: &[&str]) -> String {
        ok(&self.try_k(args))
    }

    /// Runs kubectl with `stdin`; whatever it returns.
    pub fn try_k_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.server
            .kubectl_stdin(self.kubectl_path(), args, Some(stdin))
            .expect("kubectl runs")
    }

    /// `kubectl apply -f -` of `yaml`, asserting success.
    pub fn apply(&self, yaml: &str) {
        ok(&self.try_k_stdin(&["apply", "-f", "-"], yaml));
    }

    /// `kubectl apply -n NS -f -` of `yaml`, asserting success.
    pub fn apply_in(&self, namespace: &str, yaml: &str) {
        ok(&self.try_k_stdin(&["apply", "-n", namespace, "-f", "-"], yaml));
    }

    /// `kubectl rollout status WHAT` (4 minutes at most), asserting it rolled out.
    pub fn rollout_status(&self, what: &str) {
        let out = self.k(&["rollout", "status", what, "--timeout=240s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
    }

    /// The API of `K` in `namespace`.
    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The pods of `namespace`.
    pub fn pods(&self, namespace: &str) -> Api<Pod> {
        self.api(namespace)
    }

    /// Pods of `namespace` matching `selector` that are not being deleted.
    pub async fn live_pods(&self, namespace: &str, selector: &str) -> Vec<Pod> {
        self.pods(namespace)
            .list(&ListParams::default().labels(selector))
            .await
            .expect("list pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// The Events of `namespace` about the object called `name`.
    pub async fn events_about(&self, namespace: &str, name: &str) -> Vec<Event> {
        self.api::<Event>(namespace)
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect()
    }

    /// Stops what runs in this process (simulated nodes, controllers); the processes stop
    /// when the cluster is dropped.
    pub async fn shutdown(mut self) {
        if let Some(fake) = self.fake.take() {
            fake.shutdown().await;
        }
        if let Some(c) = self.controllers.take() {
            c.shutdown().await;
        }
    }
}
