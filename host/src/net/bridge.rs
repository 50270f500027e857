//! The node's services to the Linux containers on its bridge: the cluster DNS on the gateway
//! (port 53, [`super::dns`]), each local wasm pod's IP as a /32 on the bridge with an HTTP/1.1
//! listener per container port served into the pod in-process, and each Service ClusterIP as a
//! /32 with a listener per TCP port whose requests go through the Service router (which picks an
//! endpoint: a wasm pod in-process, a container through its sandbox). Addresses and listeners
//! follow the routing table and the local wasm pods, converging on every change, and are all
//! removed at shutdown. Only nodes that run Linux containers start this.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use skiff_runtime::{HttpBody, Network, Routed, ServiceRouter, box_body};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::dns::{self, DnsServer};
use super::router::reply;
use super::table::{Kind, Table};

/// The bounds on the bridge's connections, over all its listeners: 4096 open, 1024 of one
/// client (a container's IP: a pool of connections to a database Service fits, one container
/// cannot take them all), 30 s for each request head (also a keep-alive connection's idle time).
/// A spliced connection (plain TCP to a container endpoint) counts until it closes, like the
/// rest.
pub(crate) const LIMITS: skiff_serve::ConnectionLimits = skiff_serve::ConnectionLimits {
    max_connections: 4096,
    max_connections_per_client_ip: 1024,
    request_header_timeout: Duration::from_secs(30),
    ..skiff_serve::ConnectionLimits::DEFAULT
};
/// How long open connections get to finish their requests when a listener closes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The local wasm pods the bridge serves: pod IP → the TCP ports of its containers. Only pods
/// served in-process by the wasm backend belong here (a Linux pod's IP is on its own veth).
pub(crate) type WasmPods = BTreeMap<Ipv4Addr, BTreeSet<u16>>;

/// The addresses of the node's bridge, as the bridge services use them (implemented by
/// [`skiff_runtime::oci::net::Bridge`]; a test may record instead).
pub(crate) trait BridgeAddresses: Send + Sync + 'static {
    /// The bridge's own address: the pods' gateway and DNS server.
    fn gateway(&self) -> Ipv4Addr;
    /// Adds `ip`/32 to the bridge (idempotent).
    fn add(&self, ip: Ipv4Addr) -> BoxFuture<'_, Result<(), String>>;
    /// Removes `ip`/32 from the bridge (idempotent).
    fn remove(&self, ip: Ipv4Addr) -> BoxFuture<'_, Result<(), String>>;
    /// The /32 addresses on the bridge now (not the gateway).
    fn existing(&self) -> BoxFuture<'_, Result<Vec<Ipv4Addr>, String>>;
    /// At shutdown, after the addresses: removes the bridge when no pod's veth is on it (with
    /// Linux pods left, the OCI backend removes it after them).
    fn release(&self) -> BoxFuture<'_, ()>;
}

impl BridgeAddresses for skiff_runtime::oci::net::Bridge {
    fn gateway(&self) -> Ipv4Addr {
        skiff_runtime::oci::net::Bridge::gateway(self)
    }

    fn add(&self, ip: Ipv4Addr) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.add_address(ip).await.map_err(|e| e.to_string()) })
    }

    fn remove(&self, ip: Ipv4Addr) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.remove_address(ip).await.map_err(|e| e.to_string()) })
    }

    fn existing(&self) -> BoxFuture<'_, Result<Vec<Ipv4Addr>, String>> {
        Box::pin(async move { self.addresses().await.map_err(|e| e.to_string()) })
    }

    fn release(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match self.pod_netns().await {
                Ok(pods) if pods.is_empty() => {
                    if let Err(e) = self.clone().remove().await {
                        tracing::warn!(bridge = %self.name(), error = %e, "removing the node's bridge");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(bridge = %self.name(), error = %e, "listing the bridge's pods")
                }
            }
        })
    }
}

/// What the bridge services need.
pub(crate) struct BridgeConfig {
    /// The node's bridge.
    pub(crate) bridge: Arc<dyn BridgeAddresses>,
    /// The Service routing table (the router's).
    pub(crate) table: Arc<Table>,
    /// The pod network: wasm pods by IP.
    pub(crate) network: Network,
    /// The Service router: a ClusterIP's requests.
    pub(crate) router: Arc<dyn ServiceRouter>,
    /// The local wasm pods, as the pod workers publish them.
    pub(crate) wasm_pods: watch::Receiver<WasmPods>,
    /// The DNS port on the gateway (53; tests choose another).
    pub(crate) dns_port: u16,
    /// The bounds on its connections ([`LIMITS`]; tests choose smaller ones).
    pub(crate) limits: skiff_serve::ConnectionLimits,
    /// Where the upstream nameservers are read (`/etc/resolv.conf`).
    pub(crate) resolv_conf: PathBuf,
}

/// The running bridge services. [`BridgeServices::stopped`] waits until every listener is
/// closed and every address removed, after the shutdown signal; dropping it aborts them.
pub(crate) struct BridgeServices {
    task: Option<JoinHandle<()>>,
    listening: watch::Receiver<BTreeSet<SocketAddr>>,
}

impl BridgeServices {
    /// Starts the DNS server and the listeners; stops them all when `shutdown` turns true.
    /// A DNS port that cannot be bound is logged, and the rest runs.
    pub(crate) async fn start(cfg: BridgeConfig, shutdown: watch::Receiver<bool>) -> Self {
        let gateway = cfg.bridge.gateway();
        let dns = start_dns(&cfg, gateway, shutdown.clone()).await;
        let mut state = State {
            bridge: cfg.bridge,
            network: cfg.network,
            router: cfg.router,
            table: cfg.table.clone(),
            wasm_pods: cfg.wasm_pods.clone(),
            owned: BTreeSet::new(),
            failed_addrs: BTreeSet::new(),
            open: HashMap::new(),
            failed: HashMap::new(),
            closing: Vec::new(),
            listening: watch::channel(BTreeSet::new()).0,
            gate: skiff_serve::ConnectionGate::new(cfg.limits),
        };
        let listening = state.listening.subscribe();
        // Addresses a node killed earlier left on the bridge are this node's to remove.
        match state.bridge.existing().await {
            Ok(addrs) => state
                .owned
                .extend(addrs.into_iter().filter(|a| *a != gateway)),
            Err(e) => tracing::warn!(error = %e, "listing the bridge's addresses"),
        }
        let task = tokio::spawn(run(state, cfg.table, cfg.wasm_pods, shutdown, dns));
        BridgeServices {
            task: Some(task),
            listening,
        }
    }

    /// The addresses listening now, after every sync.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn listening(&self) -> watch::Receiver<BTreeSet<SocketAddr>> {
        self.listening.clone()
    }

    /// Waits until everything is closed and removed (after the shutdown signal).
    pub(crate) async fn stopped(mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for BridgeServices {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Starts the bridge services on a node that runs Linux containers (handler `oci` among
/// `runtimes`) and has a pod network: ensures the node's bridge (the OCI backend adopts the same
/// one), then serves DNS, wasm pods and ClusterIPs on it. `None` on a wasm-only node, or when the
/// bridge cannot be made (logged). The task ends once everything is removed after `shutdown`.
pub(crate) async fn start_for_node(
    node: &str,
    runtimes: &skiff_runtime::Runtimes,
    pod_network: Option<skiff_runtime::PodNetwork>,
    table: Arc<Table>,
    network: Network,
    router: Arc<dyn ServiceRouter>,
    shutdown: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    use skiff_runtime::oci::net::Bridge;
    if !runtimes
        .handlers()
        .iter()
        .any(|h| h == skiff_runtime::OCI_HANDLER)
    {
        return None;
    }
    let Some(pod_network) = pod_network else {
        tracing::warn!(
            "no pod CIDR yet: Linux containers get no cluster DNS, wasm pods or ClusterIPs on the bridge"
        );
        return None;
    };
    let name = Bridge::name_for(node);
    let bridge = match Bridge::ensure(&name, pod_network.gateway, pod_network.prefix_len).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(bridge = %name, error = %e, "cannot make the node's bridge: Linux containers get no cluster DNS, wasm pods or ClusterIPs");
            return None;
        }
    };
    let wasm_pods = table.wasm_pods();
    let services = BridgeServices::start(
        BridgeConfig {
            bridge: Arc::new(bridge),
            table,
            network,
            router,
            wasm_pods,
            dns_port: 53,
            limits: LIMITS,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        },
        shutdown,
    )
    .await;
    Some(tokio::spawn(services.stopped()))
}

async fn start_dns(
    cfg: &BridgeConfig,
    gateway: Ipv4Addr,
    shutdown: watch::Receiver<bool>,
) -> Option<DnsServer> {
    let addr = SocketAddr::new(IpAddr::V4(gateway), cfg.dns_port);
    let bound = async {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(addr).await?;
        Ok::<_, std::io::Error>((udp, tcp))
    };
    let (udp, tcp) = match bound.await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot serve cluster DNS to containers");
            return None;
        }
    };
    let conf = tokio::fs::read_to_string(&cfg.resolv_conf)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(path = %cfg.resolv_conf.display(), error = %e,
                "reading the node's resolver configuration: names outside the cluster will not resolve");
            String::new()
        });
    let upstream = dns::upstreams(&conf, &[IpAddr::V4(gateway)]);
    tracing::info!(%addr, ?upstream, "serving cluster DNS to containers");
    Some(DnsServer::start(
        cfg.table.clone(),
        udp,
        tcp,
        upstream,
        shutdown,
    ))
}

/// What a listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A port of the local wasm pod with this IP.
    Pod,
    /// A port of the Service `namespace/name` (by its ClusterIP).
    Service { namespace: String, name: String },
}

/// One open listener.
struct Open {
    target: Target,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct State {
    bridge: Arc<dyn BridgeAddresses>,
    network: Network,
    router: Arc<dyn ServiceRouter>,
    table: Arc<Table>,
    wasm_pods: watch::Receiver<WasmPods>,
    /// Addresses this node put on the bridge.
    owned: BTreeSet<Ipv4Addr>,
    /// Addresses that could not be added (logged once; tried again when wanted anew).
    failed_addrs: BTreeSet<Ipv4Addr>,
    open: HashMap<(Ipv4Addr, u16), Open>,
    /// Listeners that could not be bound (logged once, tried again at every change).
    failed: HashMap<(Ipv4Addr, u16), Target>,
    /// Servers of closed listeners finishing their open requests.
    closing: Vec<JoinHandle<()>>,
    /// The open listeners' addresses, published after every sync.
    listening: watch::Sender<BTreeSet<SocketAddr>>,
    /// Counts the connections of every listener.
    gate: Arc<skiff_serve::ConnectionGate>,
}

/// The addresses and listeners the table and the wasm pods ask for.
fn wanted(table: &Table, pods: &WasmPods, gateway: Ipv4Addr) -> BTreeMap<(Ipv4Addr, u16), Target> {
    let mut out = BTreeMap::new();
    for (ip, ports) in pods {
        for port in ports {
            out.insert((*ip, *port), Target::Pod);
        }
    }
    for svc in table.services() {
        let (Some(IpAddr::V4(ip)), Kind::Endpoints) = (svc.cluster_ip, &svc.kind) else {
            continue;
        };
        for p in &svc.ports {
            out.entry((ip, p.port)).or_insert_with(|| Target::Service {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
            });
        }
    }
    out.retain(|(ip, _), _| *ip != gateway && !ip.is_unspecified());
    out
}

async fn run(
    mut state: State,
    table: Arc<Table>,
    mut pods: watch::Receiver<WasmPods>,
    mut stop: watch::Receiver<bool>,
    dns: Option<DnsServer>,
) {
    let mut changes = table.changes();
    let mut pods_open = true;
    let gateway = state.bridge.gateway();
    loop {
        let current = if pods_open {
            pods.borrow_and_update().clone()
        } else {
            WasmPods::new()
        };
        changes.borrow_and_update();
        let want = wanted(&table, &current, gateway);
        state.sync(want).await;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = changes.changed() => if r.is_err() { break },
            r = pods.changed(), if pods_open => if r.is_err() { pods_open = false },
        }
    }
    state.sync(BTreeMap::new()).await;
    futures::future::join_all(std::mem::take(&mut state.closing)).await;
    if let Some(dns) = dns {
        dns.stopped().await;
    }
    state.bridge.release().await;
}

impl State {
    /// Closes, removes, adds and opens to match `want`.
    async fn sync(&mut self, want: BTreeMap<(Ipv4Addr, u16), Target>) {
        let addrs: BTreeSet<Ipv4Addr> = want.keys().map(|(ip, _)| *ip).collect();
        let gone: Vec<(Ipv4Addr, u16)> = self
            .open
            .iter()
            .filter(|(k, o)| want.get(*k) != Some(&o.target))
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            if let Some(o) = self.open.remove(&key) {
                tracing::debug!(addr = %SocketAddr::from(key), target = ?o.target, "closing a bridge listener");
                let _ = o.stop.send(true);
                self.closing.push(o.task);
            }
        }
        self.closing.retain(|t| !t.is_finished());
        self.failed.retain(|k, t| want.get(k) == Some(t));
        self.failed_addrs.retain(|a| addrs.contains(a));
        let unwanted: Vec<Ipv4Addr> = self.owned.difference(&addrs).copied().collect();
        for ip in unwanted {
            match self.bridge.remove(ip).await {
                Ok(()) => {
                    self.owned.remove(&ip);
                }
                Err(e) => tracing::warn!(%ip, error = %e, "removing an address from the bridge"),
            }
        }
        for ip in &addrs {
            if self.owned.contains(ip) || self.failed_addrs.contains(ip) {
                continue;
            }
            match self.bridge.add(*ip).await {
                Ok(()) => {
                    self.owned.insert(*ip);
                }
                Err(e) => {
                    tracing::warn!(%ip, error = %e, "cannot add an address to the bridge: containers will not reach it");
                    self.failed_addrs.insert(*ip);
                }
            }
        }
        for (key, target) in want {
            if self.open.contains_key(&key) || !self.owned.contains(&key.0) {
                continue;
            }
            // A listener that could not be bound is tried again silently at every change (another
            // node on this machine may have let the address go).
            let logged = self.failed.contains_key(&key);
            let addr = SocketAddr::from(key);
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::debug!(%addr, ?target, "bridge listener open");
                    let (stop, stop_rx) = watch::channel(false);
                    let handler = Arc::new(Handler {
                        ip: key.0,
                        port: key.1,
                        target: target.clone(),
                        network: self.network.clone(),
                        router: self.router.clone(),
                        table: self.table.clone(),
                        wasm_pods: self.wasm_pods.clone(),
                    });
                    let task = tokio::spawn(serve(listener, handler, self.gate.clone(), stop_rx));
                    self.failed.remove(&key);
                    self.open.insert(key, Open { target, stop, task });
                }
                Err(_) if logged => {}
                Err(e) => {
                    tracing::warn!(%addr, ?target, error = %e, "cannot listen on the bridge: containers will not reach it");
                    self.failed.insert(key, target);
                }
            }
        }
        let now: BTreeSet<SocketAddr> = self.open.keys().map(|k| SocketAddr::from(*k)).collect();
        self.listening.send_if_modified(|l| {
            let changed = *l != now;
            *l = now;
            changed
        });
    }
}

/// Answers the requests of one listener.
struct Handler {
    ip: Ipv4Addr,
    port: u16,
    target: Target,
    network: Network,
    router: Arc<dyn ServiceRouter>,
    table: Arc<Table>,
    wasm_pods: watch::Receiver<WasmPods>,
}

impl Handler {
    /// Where a connection to a ClusterIP goes as plain TCP: when every endpoint the port would
    /// pick is a Linux container of this node (reachable on the bridge), one of them, round
    /// robin, as kube-proxy would (any protocol, a database's too). `None`: served as HTTP
    /// through the router (wasm endpoints, endpoints on other nodes).
    fn splice_target(&self) -> Option<SocketAddr> {
        if self.target == Target::Pod {
            return None;
        }
        let svc = self.table.by_ip(IpAddr::V4(self.ip))?;
        let port = svc.port(self.port)?;
        let targets = if port.ready.is_empty() {
            &port.fallback
        } else {
            &port.ready
        };
        if targets.is_empty() {
            return None;
        }
        let wasm = self.wasm_pods.borrow();
        let all_containers = targets.iter().all(|t| {
            let e = &svc.endpoints[t.ep];
            e.node.as_deref() == Some(self.table.node())
                && matches!(e.ip, IpAddr::V4(v4) if !wasm.contains_key(&v4))
        });
        if !all_containers {
            return None;
        }
        let t =
            targets[svc.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % targets.len()];
        Some(SocketAddr::new(svc.endpoints[t.ep].ip, t.port))
    }

    async fn handle(&self, peer: IpAddr, req: Request<HttpBody>) -> Response<HttpBody> {
        match &self.target {
            Target::Pod => self.to_pod(peer, req).await,
            Target::Service { namespace, name } => {
                let (mut parts, body) = req.into_parts();
                let pq = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                // Addressed to the ClusterIP: the router finds the Service by it, and the Host
                // header the client sent goes on unchanged.
                parts.uri = match format!("http://{}:{}{pq}", self.ip, self.port).parse() {
                    Ok(u) => u,
                    Err(_) => return reply(StatusCode::BAD_REQUEST, "invalid request target"),
                };
                match self
                    .router
                    .route(Some(peer), Request::from_parts(parts, body))
                {
                    Routed::Taken(resp) => resp.await,
                    Routed::Declined(_) => reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("service \"{namespace}/{name}\" is gone"),
                    ),
                }
            }
        }
    }

    /// Serves a request for a local wasm pod in-process, as the node endpoint does for another
    /// node's router.
    async fn to_pod(&self, peer: IpAddr, req: Request<HttpBody>) -> Response<HttpBody> {
        let ip = IpAddr::V4(self.ip);
        // The NetworkPolicies, as for a wasm pod's call (the router's decision).
        if let Err(why) = self.router.admits(Some(peer), ip, self.port) {
            return skiff_runtime::refused_response(why);
        }
        let Some(pod) = self.network.lookup(ip) else {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no pod with IP {ip} on this node"),
            );
        };
        match pod.handle_http(self.port, req).await {
            Ok(r) => r,
            Err(
                e @ (skiff_runtime::Error::UnknownPort { .. }
                | skiff_runtime::Error::PodRemoved(_)
                | skiff_runtime::Error::ContainerState { .. }),
            ) => reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            Err(e) => reply(StatusCode::BAD_GATEWAY, e.to_string()),
        }
    }
}

/// Serves HTTP/1.1 (or splices plain TCP) on `listener` until `stop` turns true, each
/// connection within `gate`'s bounds (closed at once past them); then closes the listening
/// socket at once (the address may be bound again) and lets open connections finish, for at
/// most [`DRAIN_TIMEOUT`].
async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    gate: Arc<skiff_serve::ConnectionGate>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a bridge connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match gate.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refused) => {
                tracing::debug!(client = %peer, ?refused, "bridge connection refused: too many open");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        if let Some(to) = handler.splice_target() {
            conns.spawn(async move {
                let _permit = permit;
                splice(stream, peer, to).await;
            });
            continue;
        }
        let watcher = graceful.watcher();
        let header_timeout = gate.limits().request_header_timeout;
        conns.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let handler = handler.clone();
                async move {
                    Ok::<_, Infallible>(handler.handle(peer.ip(), req.map(box_body)).await)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(client = %peer, error = %e, "bridge connection");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("bridge connections still open after the drain timeout: closed");
    }
    conns.shutdown().await;
}

/// Copies bytes both ways between a client and a container endpoint until either side closes.
async fn splice(mut client: tokio::net::TcpStream, peer: SocketAddr, to: SocketAddr) {
    let mut upstream = match tokio::net::TcpStream::connect(to).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(client = %peer, endpoint = %to, error = %e, "connecting to a container endpoint");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(client = %peer, endpoint = %to, error = %e, "a spliced connection ended");
    }
}

#[cfg(test)]
mod tests;
