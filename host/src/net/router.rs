//! The Service router: takes over a pod's outgoing request to a Service name or ClusterIP (the
//! runtime's [`skiff_runtime::ServiceRouter`] hook) and the ingress's requests
//! ([`ServiceBackend`]), balances them over the ready endpoints of every node (least outstanding
//! requests, power of two choices; `sessionAffinity: ClientIP`), calls an endpoint of this node
//! in-process and one elsewhere through its node's endpoint, offers a request that could not be
//! delivered (pod gone, port not served) to other endpoints, holds requests during a scale from
//! zero, and answers its own failures (503 no endpoint, 504 held too long, 508 loop) in plain
//! text. Every delivery is checked against the NetworkPolicies (`super::policy`): a denied
//! connection is refused ([`skiff_runtime::refused_response`]), never sent elsewhere.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use skiff_meta::names;
use skiff_runtime::{HttpBody, Network, Routed, box_body, full_body, port_of, refused_response};

use super::hold::Holds;
use super::policy::Policies;
use super::table::{Compiled, Kind, ServiceName, Table, Target, parse_host};
use super::{ServiceBackend, ServicePortRef};

/// The header a forwarding node sends its bearer token in (the request's own `Authorization`
/// stays the caller's).
pub(crate) const NODE_AUTH_HEADER: &str = "skiff-node-authorization";
/// Response header of a node endpoint whose pod is not there (gone, or not serving the port):
/// the request was not delivered and may be retried elsewhere.
pub(crate) const ENDPOINT_GONE_HEADER: &str = "skiff-endpoint-gone";
/// Request header of a forwarded request (node to node, NodePort to router): the address of
/// the connection's source (the calling pod or the outside client), which the destination's
/// ingress policies are checked against. Absent: the node itself. Never reaches a pod.
pub(crate) const SOURCE_IP_HEADER: &str = "skiff-source-ip";
/// Response header of a node endpoint that refused a request by NetworkPolicy: the sender
/// refuses the connection too, and never offers the request to another endpoint.
pub(crate) const POLICY_DENIED_HEADER: &str = "skiff-policy-denied";
/// How many endpoints a request that was not delivered is offered to in all (an EndpointSlice
/// can lag behind pods that are gone, several at once during a scale-down).
const MAX_ATTEMPTS: usize = 3;
/// How many ExternalName aliases a request may follow.
const MAX_ALIASES: usize = 4;
/// Request bodies up to this size (with a known length) are kept so that an undelivered request
/// can be retried on another endpoint.
const REPLAY_LIMIT: u64 = 64 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A plain-text answer of the router itself.
pub(crate) fn reply(status: StatusCode, msg: impl Into<String>) -> Response<HttpBody> {
    let mut msg = msg.into();
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    let mut resp = Response::new(full_body(msg));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Which Service port a request is for.
#[derive(Clone, Debug)]
enum PortSel {
    Number(u16),
    Name(String),
}

/// Why a request to an endpoint failed.
enum Failure {
    /// It never reached the endpoint (pod gone, port not served, node unreachable): safe to
    /// send elsewhere.
    Undelivered(String),
    /// It may have reached it.
    Failed(String),
    /// A NetworkPolicy refuses the connection: not sent, and not sent elsewhere either.
    Refused(String),
}

/// `sessionAffinity: ClientIP` pins: (namespace, Service, client IP) -> (endpoint IP, expiry).
type Affinity = HashMap<(String, String, IpAddr), (IpAddr, Instant)>;

/// The router. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    table: Arc<Table>,
    network: Network,
    client: kube::Client,
    token: crate::endpointauth::OutgoingToken,
    hop_limit: u32,
    http: HttpClient<HttpConnector, HttpBody>,
    affinity: Mutex<Affinity>,
    holds: Holds,
    policies: Arc<Policies>,
    /// The node's metrics, once `set_metrics` gave them (`skiff_service_requests_total`, pod
    /// requests).
    metrics: std::sync::OnceLock<Arc<crate::metrics::NodeMetrics>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("node", &self.inner.table.node())
            .field("hop_limit", &self.inner.hop_limit)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router over `table`, calling local endpoints through `network` and other nodes'
    /// endpoints with `token` (this node's current one); scales Deployments from zero through `client`.
    pub(crate) fn new(
        table: Arc<Table>,
        network: Network,
        client: kube::Client,
        token: impl Into<crate::endpointauth::OutgoingToken>,
        hop_limit: u32,
    ) -> Router {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        // Under the endpoints' 32 s keep-alive bound (`crate::ENDPOINT_CONNECTION_LIMITS`), so a
        // pooled connection is dropped here before the other node closes it under a request.
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Router {
            inner: Arc::new(Inner {
                table,
                network,
                client,
                token: token.into(),
                hop_limit,
                http,
                affinity: Mutex::new(HashMap::new()),
                holds: Holds::default(),
                policies: Arc::new(Policies::default()),
                metrics: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Records requests in `metrics` from now on (once; later calls change nothing).
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::NodeMetrics>) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// Counts a routed request by Service and code when the answer comes.
    fn counted(
        &self,
        source: &'static str,
        svc: &Compiled,
        fut: BoxFuture<'static, Response<HttpBody>>,
    ) -> BoxFuture<'static, Response<HttpBody>> {
        let Some(metrics) = self.inner.metrics.get().cloned() else {
            return fut;
        };
        let (namespace, name) = (svc.namespace.clone(), svc.name.clone());
        Box::pin(async move {
            let resp = fut.await;
            metrics.service_request(source, &namespace, &name, resp.status().as_u16());
            resp
        })
    }

    /// The NetworkPolicies every delivery is checked against (fed by the watches).
    pub(crate) fn policies(&self) -> &Arc<Policies> {
        &self.inner.policies
    }

    /// The Service a pod (IP `from`) means by `host`.
    fn lookup(&self, from: Option<IpAddr>, host: &str) -> Option<Arc<Compiled>> {
        let t = &self.inner.table;
        match parse_host(host)? {
            ServiceName::Ip(ip) => t.by_ip(ip),
            ServiceName::Qualified(name, ns) => t.get(ns, name),
            ServiceName::Bare(name) => t.get_in_namespace_of(from?, name),
        }
    }

    /// Routes `req` to Service `svc` on `port`; in a span of its own when traces are exported.
    fn dispatch(
        self,
        svc: Arc<Compiled>,
        port: PortSel,
        client: Option<IpAddr>,
        req: Request<HttpBody>,
        aliases: usize,
    ) -> BoxFuture<'static, Response<HttpBody>> {
        if !skiff_telemetry::trace::enabled() {
            return self.dispatch_untraced(svc, port, client, req, aliases);
        }
        use tracing::Instrument;
        let mut req = req;
        // The parent: the context the request carries (the ingress's span, a guest's call),
        // else the current span. The request carries this span's context on.
        let span = tracing::info_span!(
            "route",
            otel.name = %format!("route {}/{}", svc.namespace, svc.name),
            otel.kind = "internal",
            service = %format!("{}/{}", svc.namespace, svc.name),
            url.path = %req.uri().path(),
            http.response.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        skiff_telemetry::trace::set_parent_from(&span, req.headers());
        skiff_telemetry::trace::inject(&span, req.headers_mut());
        let fut = span.in_scope(|| self.dispatch_untraced(svc, port, client, req, aliases));
        Box::pin(
            async move {
                let resp = fut.await;
                tracing::Span::current()
                    .record("http.response.status_code", resp.status().as_u16());
                resp
            }
            .instrument(span),
        )
    }

    /// Routes `req` to Service `svc` on `port`.
    fn dispatch_untraced(
        self,
        svc: Arc<Compiled>,
        port: PortSel,
        client: Option<IpAddr>,
        req: Request<HttpBody>,
        aliases: usize,
    ) -> BoxFuture<'static, Response<HttpBody>> {
        Box::pin(async move {
            let mut req = req;
            let hops = req
                .headers()
                .get(names::HOP_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(0)
                .saturating_add(1);
            if hops > self.inner.hop_limit {
                return reply(
                    StatusCode::LOOP_DETECTED,
                    format!(
                        "Loop Detected: the request to service \"{}/{}\" took more than {} \
                         service hops (a service calling itself?)",
                        svc.namespace, svc.name, self.inner.hop_limit
                    ),
                );
            }
            req.headers_mut().insert(names::HOP_HEADER, hop_value(hops));
            if let Kind::ExternalName(ext) = &svc.kind {
                return self
                    .alias(&svc, ext.clone(), port, client, req, aliases)
                    .await;
            }
            let (targets, target_port_direct) = match &port {
                PortSel::Number(n) => match svc.port(*n) {
                    Some(p) => (Some(p), None),
                    None if svc.headless() => (None, Some(*n)),
                    None => {
                        return reply(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("service \"{}/{}\" has no port {n}", svc.namespace, svc.name),
                        );
                    }
                },
                PortSel::Name(name) => match svc.port_named(name) {
                    Some(p) => (Some(p), None),
                    None => {
                        return reply(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "service \"{}/{}\" has no port named \"{name}\"",
                                svc.namespace, svc.name
                            ),
                        );
                    }
                },
            };
            if let Some(scale) = &svc.scale {
                self.inner.holds.touch(&self.inner.client, scale);
            }
            // Borrowed from the Service (no copy on the common path).
            let chosen: std::borrow::Cow<'_, [Target]> = match (targets, target_port_direct) {
                (Some(p), _) if !p.ready.is_empty() => (&p.ready[..]).into(),
                (Some(p), _) if svc.scale.is_none() && !p.fallback.is_empty() => {
                    (&p.fallback[..]).into()
                }
                (None, Some(n)) => svc.direct_targets(n).into(),
                _ => (&[][..]).into(),
            };
            if !chosen.is_empty() {
                return self.deliver(&svc, &chosen, client, req).await;
            }
            match svc.scale.clone() {
                Some(scale) => self.hold(svc, port, client, req, scale).await,
                None => no_endpoints(&svc),
            }
        })
    }

    /// Follows an ExternalName alias: to a Service in the table, else out as named.
    async fn alias(
        self,
        svc: &Compiled,
        ext: String,
        port: PortSel,
        client: Option<IpAddr>,
        mut req: Request<HttpBody>,
        aliases: usize,
    ) -> Response<HttpBody> {
        let number = match &port {
            PortSel::Number(n) => *n,
            PortSel::Name(_) => port_of(req.uri()),
        };
        if !req.headers().contains_key(header::HOST)
            && let Some(a) = req.uri().authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            req.headers_mut().insert(header::HOST, v);
        }
        let mut parts = req.uri().clone().into_parts();
        let authority = if number == 80 {
            ext.clone()
        } else {
            format!("{ext}:{number}")
        };
        parts.authority = match authority.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                return reply(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "service \"{}/{}\": invalid externalName {ext:?}",
                        svc.namespace, svc.name
                    ),
                );
            }
        };
        if parts.scheme.is_none() {
            parts.scheme = Some(http::uri::Scheme::HTTP);
        }
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        match http::Uri::from_parts(parts) {
            Ok(u) => *req.uri_mut() = u,
            Err(e) => {
                return reply(
                    StatusCode::BAD_GATEWAY,
                    format!("externalName {ext:?}: {e}"),
                );
            }
        }
        let target = match parse_host(&ext) {
            Some(ServiceName::Bare(name)) => self.inner.table.get(&svc.namespace, name),
            Some(ServiceName::Qualified(name, ns)) => self.inner.table.get(ns, name),
            Some(ServiceName::Ip(ip)) => self.inner.table.by_ip(ip),
            None => None,
        };
        match target {
            Some(_) if aliases >= MAX_ALIASES => reply(
                StatusCode::LOOP_DETECTED,
                format!(
                    "Loop Detected: service \"{}/{}\" is an alias of an alias more than \
                     {MAX_ALIASES} times",
                    svc.namespace, svc.name
                ),
            ),
            Some(t) => self.dispatch(t, port, client, req, aliases + 1).await,
            None => {
                let to = req.uri().port_u16().unwrap_or_else(|| port_of(req.uri()));
                let checked = match req
                    .uri()
                    .host()
                    .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
                {
                    Some(ip) => self.inner.policies.check(client, ip, to),
                    None => self.inner.policies.check_named(client, &ext, to),
                };
                if let Err(denied) = checked {
                    return refused_response(denied.0);
                }
                self.external(svc, &ext, req).await
            }
        }
    }

    /// Sends an ExternalName Service's request out over the network.
    async fn external(
        &self,
        svc: &Compiled,
        ext: &str,
        req: Request<HttpBody>,
    ) -> Response<HttpBody> {
        match skiff_runtime::send_external(req).await {
            Ok(r) => r,
            Err(e) => reply(
                StatusCode::BAD_GATEWAY,
                format!("service \"{}/{}\" ({ext}): {e}", svc.namespace, svc.name),
            ),
        }
    }

    /// Holds a request for a Service of a scale-to-zero Deployment with no ready endpoint.
    async fn hold(
        self,
        svc: Arc<Compiled>,
        port: PortSel,
        client: Option<IpAddr>,
        req: Request<HttpBody>,
        scale: super::table::ScaleTarget,
    ) -> Response<HttpBody> {
        let Some(_held) = self.inner.holds.enter(&scale) else {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "service \"{}/{}\": {} requests are already held while deployment \"{}/{}\" \
                     scales from zero",
                    svc.namespace, svc.name, scale.max_held, scale.namespace, scale.name
                ),
            );
        };
        let mut changes = self.inner.table.changes();
        // Detached: the held requests wait on the table, not on the scale-up.
        drop(self.inner.holds.scale_up(&self.inner.client, &scale));
        let deadline = tokio::time::Instant::now() + scale.deadline;
        // A held request is a request for the Deployment: its last-request time is kept fresh
        // while it waits, so that a pod slower to be ready than the idle period is not scaled
        // away under it.
        let refresh = (scale.idle / 4).max(std::time::Duration::from_millis(250));
        loop {
            if let Some(now) = self.inner.table.get(&svc.namespace, &svc.name) {
                let ready = match &port {
                    PortSel::Number(n) => now.port(*n).map(|p| p.ready.clone()),
                    PortSel::Name(n) => now.port_named(n).map(|p| p.ready.clone()),
                };
                if let Some(targets) = ready
                    && !targets.is_empty()
                {
                    return self.deliver(&now, &targets, client, req).await;
                }
                if now.scale.is_none() {
                    return no_endpoints(&now);
                }
            } else {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("service \"{}/{}\" was deleted", svc.namespace, svc.name),
                );
            }
            let wake = deadline.min(tokio::time::Instant::now() + refresh);
            match tokio::time::timeout_at(wake, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return reply(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down");
                }
                Err(_) if wake < deadline => {
                    self.inner.holds.touch(&self.inner.client, &scale);
                }
                Err(_) => {
                    return reply(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "service \"{}/{}\": no endpoint became ready within {}s while \
                             deployment \"{}/{}\" scaled from zero",
                            svc.namespace,
                            svc.name,
                            scale.deadline.as_secs_f64(),
                            scale.namespace,
                            scale.name
                        ),
                    );
                }
            }
        }
    }

    /// Picks a target: the client's pinned endpoint under `sessionAffinity: ClientIP`, else the
    /// less loaded of two (round robin and a random other one); never `avoid`, nor an endpoint
    /// of this node that is not serving the port (gone, or stopping).
    fn pick(
        &self,
        svc: &Compiled,
        targets: &[Target],
        client: Option<IpAddr>,
        avoid: &[IpAddr],
    ) -> Option<Target> {
        let (Some(timeout), Some(client)) = (svc.affinity, client) else {
            return self.balance(svc, targets, avoid);
        };
        let key = (svc.namespace.clone(), svc.name.clone(), client);
        let now = Instant::now();
        let pinned = lock(&self.inner.affinity)
            .get(&key)
            .filter(|(_, until)| *until > now)
            .map(|(ip, _)| *ip);
        let t = pinned
            .and_then(|ip| {
                targets
                    .iter()
                    .find(|t| svc.endpoints[t.ep].ip == ip && self.usable(svc, t, avoid))
                    .copied()
            })
            .or_else(|| self.balance(svc, targets, avoid))?;
        let mut map = lock(&self.inner.affinity);
        if map.len() > 100_000 {
            map.retain(|_, (_, until)| *until > now);
        }
        map.insert(key, (svc.endpoints[t.ep].ip, now + timeout));
        Some(t)
    }

    /// Whether `t` may be sent to now.
    fn usable(&self, svc: &Compiled, t: &Target, avoid: &[IpAddr]) -> bool {
        let ip = svc.endpoints[t.ep].ip;
        if avoid.contains(&ip) {
            return false;
        }
        !self.is_local(svc, *t)
            || self
                .inner
                .network
                .lookup(ip)
                .is_some_and(|p| p.serves_port(t.port))
    }

    /// Power of two choices: the next target in round-robin order and a random other one, the
    /// one with fewer outstanding requests wins (the first on a tie).
    fn balance(&self, svc: &Compiled, targets: &[Target], avoid: &[IpAddr]) -> Option<Target> {
        let n = targets.len();
        if n == 0 {
            return None;
        }
        let start = svc.next.fetch_add(1, Ordering::Relaxed) % n;
        let i = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.usable(svc, &targets[i], avoid))?;
        if n == 1 {
            return Some(targets[i]);
        }
        let r = rand::rng().random_range(0..n);
        let j = (0..n)
            .map(|k| (r + k) % n)
            .find(|&j| j != i && self.usable(svc, &targets[j], avoid));
        let load = |k: usize| svc.endpoints[targets[k].ep].load.load(Ordering::Relaxed);
        Some(match j {
            Some(j) if load(j) < load(i) => targets[j],
            _ => targets[i],
        })
    }

    /// True when endpoint `t` runs on this node.
    fn is_local(&self, svc: &Compiled, t: Target) -> bool {
        match svc.endpoints[t.ep].node.as_deref() {
            None => true,
            Some(n) => n == self.inner.table.node(),
        }
    }

    /// Sends to a chosen endpoint; a request that was not delivered is offered to another (up to
    /// [`MAX_ATTEMPTS`] endpoints in all).
    /// An endpoint of this node was checked by [`Router::pick`] (no copy of the request
    /// needed); a request to another node keeps a small body so that it can be sent again.
    async fn deliver(
        &self,
        svc: &Compiled,
        targets: &[Target],
        client: Option<IpAddr>,
        req: Request<HttpBody>,
    ) -> Response<HttpBody> {
        let Some(first) = self.pick(svc, targets, client, &[]) else {
            return no_endpoints(svc);
        };
        if self.is_local(svc, first) {
            return answer(self.send_to(svc, first, client, req).await);
        }
        let (parts, body) = req.into_parts();
        let bytes: Bytes = if body.is_end_stream() {
            Bytes::new()
        } else if body.size_hint().exact().is_some_and(|n| n <= REPLAY_LIMIT) {
            match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        format!("reading the request body: {e}"),
                    );
                }
            }
        } else {
            // A streamed body goes once.
            let req = Request::from_parts(parts, body);
            return answer(self.send_to(svc, first, client, req).await);
        };
        let mut target = first;
        let mut failed: Vec<IpAddr> = Vec::new();
        loop {
            let req = Request::from_parts(parts.clone(), full_body(bytes.clone()));
            match self.send_to(svc, target, client, req).await {
                Err(Failure::Undelivered(m)) => {
                    failed.push(svc.endpoints[target.ep].ip);
                    let next = if failed.len() < MAX_ATTEMPTS {
                        self.pick(svc, targets, client, &failed)
                    } else {
                        None
                    };
                    let Some(next) = next else {
                        return reply(StatusCode::SERVICE_UNAVAILABLE, m);
                    };
                    tracing::debug!(service = %format!("{}/{}", svc.namespace, svc.name), reason = %m, "retrying on another endpoint");
                    target = next;
                }
                other => return answer(other),
            }
        }
    }

    /// Sends to one endpoint from `client` (a pod or outside address; `None`: the node): in-process
    /// when its pod is on this node, else through its node; refused when a NetworkPolicy denies
    /// the connection to the endpoint's pod IP and target port.
    async fn send_to(
        &self,
        svc: &Compiled,
        t: Target,
        client: Option<IpAddr>,
        req: Request<HttpBody>,
    ) -> Result<Response<HttpBody>, Failure> {
        let ep = &svc.endpoints[t.ep];
        if let Err(denied) = self.inner.policies.check(client, ep.ip, t.port) {
            tracing::debug!(service = %format!("{}/{}", svc.namespace, svc.name), reason = %denied, "refused by network policy");
            return Err(Failure::Refused(denied.0));
        }
        let mut req = req;
        req.headers_mut().remove(SOURCE_IP_HEADER);
        ep.load.fetch_add(1, Ordering::Relaxed);
        let _done = Decrement(&ep.load);
        if self.is_local(svc, t) {
            let Some(pod) = self.inner.network.lookup(ep.ip) else {
                return Err(Failure::Undelivered(format!(
                    "endpoint {} of service \"{}/{}\" is gone",
                    ep.ip, svc.namespace, svc.name
                )));
            };
            set_host(&mut req);
            let started = std::time::Instant::now();
            return match pod.handle_http(t.port, req).await {
                Ok(r) => {
                    if let Some(metrics) = self.inner.metrics.get() {
                        metrics.pod_request(ep.ip, r.status().as_u16(), started.elapsed());
                    }
                    Ok(r)
                }
                Err(
                    e @ (skiff_runtime::Error::PodRemoved(_)
                    | skiff_runtime::Error::UnknownPort { .. }
                    | skiff_runtime::Error::ContainerState { .. }),
                ) => Err(Failure::Undelivered(format!(
                    "endpoint {}:{} of service \"{}/{}\": {e}",
                    ep.ip, t.port, svc.namespace, svc.name
                ))),
                Err(e) => Err(Failure::Failed(format!(
                    "endpoint {}:{} of service \"{}/{}\": {e}",
                    ep.ip, t.port, svc.namespace, svc.name
                ))),
            };
        }
        let node = ep.node.as_deref().unwrap_or_default();
        let Some(addr) = self.inner.table.node_endpoint(node) else {
            return Err(Failure::Undelivered(format!(
                "endpoint {} of service \"{}/{}\": node \"{node}\" has no known address",
                ep.ip, svc.namespace, svc.name
            )));
        };
        self.forward(addr, ep.ip, t.port, client, req).await
    }

    /// Sends a request from `client` to pod `ip`'s `port` through its node's endpoint, which
    /// checks its ingress policies against `client` too.
    async fn forward(
        &self,
        node: SocketAddr,
        ip: IpAddr,
        port: u16,
        client: Option<IpAddr>,
        req: Request<HttpBody>,
    ) -> Result<Response<HttpBody>, Failure> {
        let (mut parts, body) = req.into_parts();
        if !parts.headers.contains_key(header::HOST)
            && let Some(a) = parts.uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            parts.headers.insert(header::HOST, v);
        }
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri = format!("http://{node}/endpoints/{ip}/{port}{pq}");
        parts.uri = uri
            .parse()
            .map_err(|e| Failure::Failed(format!("forwarding to {node}: {e}")))?;
        parts.version = http::Version::HTTP_11;
        let bearer = format!("Bearer {}", self.inner.token.get());
        parts.headers.insert(
            NODE_AUTH_HEADER,
            HeaderValue::from_str(&bearer)
                .map_err(|_| Failure::Failed("the node token is not a header value".into()))?,
        );
        match client {
            Some(c) => {
                let v = HeaderValue::from_str(&c.to_string()).map_err(|_| {
                    Failure::Failed("a source address is not a header value".into())
                })?;
                parts.headers.insert(SOURCE_IP_HEADER, v);
            }
            None => {
                parts.headers.remove(SOURCE_IP_HEADER);
            }
        }
        let req = Request::from_parts(parts, body);
        match self.inner.http.request(req).await {
            Ok(resp) => {
                if resp.headers().contains_key(POLICY_DENIED_HEADER) {
                    return Err(Failure::Refused(format!(
                        "network policy of node {node}: connection to {ip}:{port} refused"
                    )));
                }
                if resp.headers().contains_key(ENDPOINT_GONE_HEADER) {
                    return Err(Failure::Undelivered(format!(
                        "endpoint {ip}:{port} is not served on node {node}"
                    )));
                }
                Ok(resp.map(box_body))
            }
            Err(e) if e.is_connect() => Err(Failure::Undelivered(format!(
                "connecting to node {node} for endpoint {ip}:{port}: {e}"
            ))),
            Err(e) => Err(Failure::Failed(format!(
                "endpoint {ip}:{port} through node {node}: {e}"
            ))),
        }
    }
}

/// The hop header's value: a static string for the usual counts (no allocation per hop).
fn hop_value(hops: u32) -> HeaderValue {
    const SMALL: [&str; 33] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
        "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
        "32",
    ];
    match SMALL.get(hops as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(hops),
    }
}

/// Gives a request without a `Host` header its authority as one (the Service name it was
/// sent to).
fn set_host(req: &mut Request<HttpBody>) {
    if !req.headers().contains_key(header::HOST)
        && let Some(a) = req.uri().authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        req.headers_mut().insert(header::HOST, v);
    }
}

/// The response, or the router's own answer to a failure: 503 when the request reached no
/// endpoint, 502 when it may have.
fn answer(r: Result<Response<HttpBody>, Failure>) -> Response<HttpBody> {
    match r {
        Ok(r) => r,
        Err(Failure::Undelivered(m)) => reply(StatusCode::SERVICE_UNAVAILABLE, m),
        Err(Failure::Failed(m)) => reply(StatusCode::BAD_GATEWAY, m),
        Err(Failure::Refused(m)) => refused_response(m),
    }
}

fn no_endpoints(svc: &Compiled) -> Response<HttpBody> {
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "no endpoints available for service \"{}/{}\"",
            svc.namespace, svc.name
        ),
    )
}

struct Decrement<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes the source address a NodePort put in [`SOURCE_IP_HEADER`] off the request.
fn source_ip(req: &mut Request<HttpBody>) -> Option<IpAddr> {
    let v = req.headers_mut().remove(SOURCE_IP_HEADER)?;
    v.to_str().ok()?.trim().parse().ok()
}

/// The client address the ingress reports (`X-Forwarded-For`'s first entry), for affinity and
/// the NetworkPolicies.
fn forwarded_for(req: &Request<HttpBody>) -> Option<IpAddr> {
    req.headers()
        .get("x-forwarded-for")?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

impl skiff_runtime::ServiceRouter for Router {
    fn admits(&self, from: Option<IpAddr>, to: IpAddr, port: u16) -> Result<(), String> {
        self.inner.policies.check(from, to, port).map_err(|d| d.0)
    }

    fn route(&self, from: Option<IpAddr>, req: Request<HttpBody>) -> Routed {
        let svc = match req.uri().host() {
            Some(host) => self.lookup(from, host),
            None => None,
        };
        let Some(svc) = svc else {
            return self.not_a_service(from, req);
        };
        let port = port_of(req.uri());
        let fut = self
            .clone()
            .dispatch(svc.clone(), PortSel::Number(port), from, req, 0);
        Routed::Taken(self.counted("pod", &svc, fut))
    }
}

impl Router {
    /// A pod's request to a pod IP or an outside address: given back to the network when the
    /// NetworkPolicies allow it (the common case without policies: one atomic load), else
    /// refused.
    fn not_a_service(&self, from: Option<IpAddr>, req: Request<HttpBody>) -> Routed {
        let policies = &self.inner.policies;
        if !policies.is_active() {
            return Routed::Declined(req);
        }
        let port = port_of(req.uri());
        let checked = match req.uri().host() {
            None => Ok(()),
            Some(host) => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                match bare.parse::<IpAddr>() {
                    Ok(ip) => policies.check(from, ip, port),
                    Err(_) => policies.check_named(from, bare, port),
                }
            }
        };
        match checked {
            Ok(()) => Routed::Declined(req),
            Err(denied) => {
                tracing::debug!(reason = %denied, "refused by network policy");
                Routed::Taken(Box::pin(async move { refused_response(denied.0) }))
            }
        }
    }
}

impl ServiceBackend for Router {
    fn serve(
        &self,
        namespace: &str,
        name: &str,
        port: &ServicePortRef,
        req: Request<HttpBody>,
    ) -> BoxFuture<'static, Response<HttpBody>> {
        let Some(svc) = self.inner.table.get(namespace, name) else {
            let msg = format!("service \"{namespace}/{name}\" not found");
            return Box::pin(async move { reply(StatusCode::SERVICE_UNAVAILABLE, msg) });
        };
        let mut req = req;
        let client = source_ip(&mut req).or_else(|| forwarded_for(&req));
        let port = match port {
            ServicePortRef::Number(n) => PortSel::Number(*n),
            ServicePortRef::Name(n) => PortSel::Name(n.clone()),
        };
        let fut = self.clone().dispatch(svc.clone(), port, client, req, 0);
        self.counted("ingress", &svc, fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_values_and_plain_text_answers() {
        for n in [0u32, 1, 16, 32, 33, 1000] {
            assert_eq!(hop_value(n).to_str().unwrap(), n.to_string());
        }
        let r = reply(StatusCode::LOOP_DETECTED, "Loop Detected: x");
        assert_eq!(r.status(), 508);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }

    fn no_api() -> kube::Client {
        let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            let resp = http::Response::builder()
                .status(404)
                .body(kube::client::Body::from(b"{}".to_vec()))
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        });
        kube::Client::new(svc, "default")
    }

    fn get(uri: &str) -> Request<HttpBody> {
        Request::get(uri).body(skiff_runtime::empty_body()).unwrap()
    }

    async fn routed(router: &Router, from: &str, uri: &str) -> Option<Response<HttpBody>> {
        use skiff_runtime::ServiceRouter as _;
        match router.route(Some(from.parse().unwrap()), get(uri)) {
            Routed::Taken(fut) => Some(fut.await),
            Routed::Declined(_) => None,
        }
    }

    /// A Service `shop/web` (10.96.0.10:80 -> 8080) whose two endpoints run on node-b, whose
    /// endpoint is a fake that refuses by policy and records the source each request names.
    #[tokio::test]
    async fn a_connection_refused_by_policy_is_refused_never_sent_elsewhere() {
        let sources = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
        let seen = sources.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let seen = seen.clone();
            async move {
                let source = req
                    .headers()
                    .get(SOURCE_IP_HEADER)
                    .map(|v| v.to_str().unwrap().to_string());
                lock(&seen).push(source);
                (
                    StatusCode::FORBIDDEN,
                    [(POLICY_DENIED_HEADER, "1")],
                    "network policy: denied",
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let table = Arc::new(Table::new("node-a"));
        table.apply_node(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "node-b"},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}
                }
            }))
            .unwrap(),
        );
        table.apply_service(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
            }))
            .unwrap(),
        );
        table.apply_slice(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web-1", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.244.2.10"], "conditions": {"ready": true}, "nodeName": "node-b"},
                    {"addresses": ["10.244.2.11"], "conditions": {"ready": true}, "nodeName": "node-b"}
                ]
            }))
            .unwrap(),
        );
        let router = Router::new(table, Network::new(), no_api(), Arc::from("t"), 8);

        // Refused by the destination's node: refused here, and not offered to the other
        // endpoint; the caller's pod IP went along.
        let resp = routed(&router, "10.244.1.5", "http://10.96.0.10/")
            .await
            .expect("a Service request is taken");
        assert!(skiff_runtime::refused(&resp).is_some(), "{resp:?}");
        assert_eq!(*lock(&sources), vec![Some("10.244.1.5".to_string())]);

        // Denied by this node's own copy of the policies: the other node is never called, by
        // Service or by pod IP.
        let policies = router.policies();
        for (name, ip) in [("web-1", "10.244.2.10"), ("web-2", "10.244.2.11")] {
            policies.apply_pod(
                &serde_json::from_value(serde_json::json!({
                    "metadata": {"namespace": "shop", "name": name, "labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app"}]},
                    "status": {"phase": "Running", "podIP": ip}
                }))
                .unwrap(),
            );
        }
        policies.apply_policy(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "shop", "name": "deny"},
                "spec": {"podSelector": {}}
            }))
            .unwrap(),
        );
        let resp = routed(&router, "10.244.1.5", "http://web.shop/")
            .await
            .expect("a Service request is taken");
        assert!(skiff_runtime::refused(&resp).is_some(), "{resp:?}");
        let resp = routed(&router, "10.244.1.5", "http://10.244.2.10:8080/")
            .await
            .expect("a denied pod IP is taken, to be refused");
        assert!(skiff_runtime::refused(&resp).is_some(), "{resp:?}");
        assert_eq!(lock(&sources).len(), 1, "nothing more reached node-b");
        // A listener for a pod's address (the bridge) asks the same question.
        use skiff_runtime::ServiceRouter as _;
        let (caller, web) = ("10.244.1.5".parse().ok(), "10.244.2.10".parse().unwrap());
        assert!(router.admits(caller, web, 8080).is_err());
        assert!(router.admits(None, web, 8080).is_ok(), "the node itself");

        // Without the policy, a pod IP goes back to the network as before.
        policies.delete_policy("shop", "deny");
        assert!(router.admits(caller, web, 8080).is_ok());
        assert!(
            routed(&router, "10.244.1.5", "http://10.244.2.10:8080/")
                .await
                .is_none()
        );

        // Ingress and NodePort traffic: the client's address is the source, matched by ipBlock.
        policies.apply_policy(
            &serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "shop", "name": "outside"},
                "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]}
            }))
            .unwrap(),
        );
        let from = |header: &str, ip: &str| {
            Request::get("/")
                .header(header, ip)
                .body(skiff_runtime::empty_body())
                .unwrap()
        };
        let port = ServicePortRef::Number(80);
        for req in [
            from(SOURCE_IP_HEADER, "198.51.100.1"),
            from("x-forwarded-for", "198.51.100.1"),
        ] {
            let resp = router.serve("shop", "web", &port, req).await;
            assert!(skiff_runtime::refused(&resp).is_some(), "{resp:?}");
        }
        assert_eq!(lock(&sources).len(), 1, "nothing more reached node-b");
        router
            .serve("shop", "web", &port, from(SOURCE_IP_HEADER, "192.0.2.7"))
            .await;
        assert_eq!(
            lock(&sources).last().cloned(),
            Some(Some("192.0.2.7".to_string())),
            "an allowed client reaches the endpoint's node, which checks it again"
        );
        server.abort();
    }

    #[test]
    fn the_ingress_client_address_comes_from_x_forwarded_for() {
        let req = Request::get("/")
            .header("x-forwarded-for", "192.0.2.7, 10.0.0.1")
            .body(skiff_runtime::empty_body())
            .unwrap();
        assert_eq!(forwarded_for(&req), Some("192.0.2.7".parse().unwrap()));
        let req = Request::get("/").body(skiff_runtime::empty_body()).unwrap();
        assert_eq!(forwarded_for(&req), None);
    }
}
