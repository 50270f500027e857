//! `metrics.k8s.io/v1beta1`: `PodMetrics` and `NodeMetrics` built from each node's kubelet-style
//! `/stats/summary`, as metrics-server serves them behind its APIService — so `kubectl top` and
//! the HPA controller work against the API server alone.
//!
//! The pods (or nodes) come from the store, with the request's label and field selectors; the
//! usage comes from the summaries of the nodes they run on, fetched concurrently with the API
//! server's own node credential and a short timeout. A node that does not answer is skipped and
//! logged, as metrics-server skips a failed scrape. Each node's summary is reused for
//! [`SUMMARY_TTL`], and concurrent requests wait on one fetch per node, so a list over thousands
//! of pods costs one store list and one summary per node.
//!
//! CPU is the summary's `usageNanoCores` (a rate the node computes over its sampling window) as a
//! decimal quantity in `n`, memory its `workingSetBytes` as a binary quantity, both printed in
//! Kubernetes' canonical form (`1234567n`, `250m`, `2Mi`, `1536Ki`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use skiff_meta::stats::{PodStats, Summary};
use skiff_store::ListOptions;

use crate::body::{Wanted, negotiate};
use crate::error::ApiError;
use crate::objects;
use crate::request::{Query, ResourceRequest};
use crate::respond::{json_response, table_response};
use crate::state::AppState;
use crate::subresources::node_proxy;

/// How long a node's summary is reused.
pub const SUMMARY_TTL: Duration = Duration::from_secs(1);

/// How long a node may take to answer `/stats/summary` before it is skipped.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest summary read from a node.
const MAX_SUMMARY_BYTES: usize = 64 << 20;

/// The window reported with each metric: the node's sampling window for `usageNanoCores`
/// (`host/src/stats.rs` `WINDOW`).
pub const WINDOW: &str = "5s";

const GROUP: &str = "metrics.k8s.io";

/// The per-server cache of node summaries (`AppState.metrics_api`).
#[derive(Default)]
pub struct SummaryCache {
    nodes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
}

struct Cached {
    url: String,
    at: Instant,
    summary: Result<Arc<Summary>, String>,
}

impl SummaryCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The summary of the node whose endpoint is `base`, fetched unless one younger than
    /// [`SUMMARY_TTL`] is held; a failure is held as long, so a dead node costs one timeout per
    /// period, not one per request.
    async fn summary(
        &self,
        state: &AppState,
        node: &str,
        base: &str,
    ) -> Result<Arc<Summary>, String> {
        let slot = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            nodes.entry(node.to_string()).or_default().clone()
        };
        let mut held = slot.lock().await;
        if let Some(c) = held.as_ref()
            && c.url == base
            && c.at.elapsed() < SUMMARY_TTL
        {
            return c.summary.clone();
        }
        let summary = fetch_summary(state, base).await.map(Arc::new);
        if let Err(e) = &summary {
            tracing::warn!(node, error = %e, "skipping node: no summary");
        }
        *held = Some(Cached {
            url: base.to_string(),
            at: Instant::now(),
            summary: summary.clone(),
        });
        summary
    }
}

/// `GET BASE/stats/summary?only_cpu_and_memory=true` with the server's node credential.
async fn fetch_summary(state: &AppState, base: &str) -> Result<Summary, String> {
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(format!("{base}/stats/summary?only_cpu_and_memory=true"))
        .header(header::ACCEPT, "application/json");
    if let Some(token) = node_proxy::kubelet_client_token(state) {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder.body(Body::empty()).map_err(|e| e.to_string())?;
    let read = async {
        let response = node_proxy::client()
            .request(request)
            .await
            .map_err(|e| format!("error trying to reach the node: {e}"))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_SUMMARY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the summary: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "the node answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        serde_json::from_slice::<Summary>(&body).map_err(|e| format!("decoding the summary: {e}"))
    };
    tokio::time::timeout(FETCH_TIMEOUT, read)
        .await
        .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))?
}

/// What a stored pod or node says that metrics need.
#[derive(Deserialize, Default)]
struct Stored {
    #[serde(default)]
    metadata: StoredMeta,
    #[serde(default)]
    spec: StoredSpec,
}

#[derive(Deserialize, Default)]
struct StoredMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StoredSpec {
    #[serde(default)]
    node_name: Option<String>,
}

/// A `metrics.k8s.io` request (the kind is one of `skiff_kinds::aggregated_kinds`); `dispatch`
/// has authorized it and refused verbs other than get and list.
pub(crate) async fn handle(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    if req.subresource.is_some() {
        return Err(ApiError::no_route(&format!(
            "{}/{}",
            req.kind.plural,
            req.subresource.as_deref().unwrap_or_default()
        )));
    }
    if req.method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            req.method,
            req.kind.qualified_resource()
        )));
    }
    let now = jiff::Timestamp::now();
    match (req.kind.kind, req.name.as_deref()) {
        ("PodMetrics", Some(name)) => {
            let m = get_pod(state, req, name, now).await?;
            respond(req, vec![m], false)
        }
        ("PodMetrics", None) => {
            let items = list_pods(state, req, now).await?;
            respond(req, items, true)
        }
        ("NodeMetrics", Some(name)) => {
            let m = get_node(state, name, now).await?;
            respond(req, vec![m], false)
        }
        ("NodeMetrics", None) => {
            let items = list_nodes(state, req, now).await?;
            respond(req, items, true)
        }
        _ => Err(ApiError::no_route(&req.kind.qualified_resource())),
    }
}

/// One object, a `…MetricsList`, or a Table of either, as the client asked.
fn respond(req: &ResourceRequest, mut items: Vec<Value>, list: bool) -> Result<Response, ApiError> {
    let api_version = req.kind.api_version();
    for item in &mut items {
        if let Some(o) = item.as_object_mut() {
            o.insert("kind".into(), json!(req.kind.kind));
            o.insert("apiVersion".into(), json!(api_version));
        }
    }
    if negotiate(&req.headers) == Wanted::Table {
        let include = req.query.get("includeObject").unwrap_or("Metadata");
        return Ok(table_response(StatusCode::OK, &table(req, &items, include)));
    }
    if list {
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": req.kind.list_kind(),
                "apiVersion": api_version,
                "metadata": {},
                "items": items,
            }),
        ));
    }
    items
        .into_iter()
        .next()
        .map(|obj| json_response(StatusCode::OK, &obj))
        .ok_or_else(|| ApiError::internal("no object to answer with"))
}

/// metrics-server's table: name, CPU and memory (summed over containers), window.
fn table(req: &ResourceRequest, items: &[Value], include: &str) -> Value {
    let col = |name: &str, ty: &str, format: &str, description: &str| json!({"name": name, "type": ty, "format": format, "description": description, "priority": 0});
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let (cpu, memory) = if req.kind.kind == "PodMetrics" {
                let mut cpu = 0u128;
                let mut memory = 0u128;
                for c in obj["containers"].as_array().into_iter().flatten() {
                    cpu += nano_cores(c["usage"]["cpu"].as_str().unwrap_or("0"));
                    memory += bytes_of(c["usage"]["memory"].as_str().unwrap_or("0"));
                }
                (cpu, memory)
            } else {
                (
                    nano_cores(obj["usage"]["cpu"].as_str().unwrap_or("0")),
                    bytes_of(obj["usage"]["memory"].as_str().unwrap_or("0")),
                )
            };
            let mut row = json!({"cells": [
                obj["metadata"]["name"],
                cpu_quantity(cpu as u64),
                memory_quantity(memory as u64),
                obj["window"],
            ]});
            match include {
                "None" => {}
                "Object" => row["object"] = obj.clone(),
                _ => row["object"] = skiff_kinds::table::partial_metadata(req.kind, obj),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [
            col("Name", "string", "name", "Name of the pod or node measured"),
            col("CPU", "string", "", "CPU consumption"),
            col("Memory", "string", "", "Memory consumption"),
            col("Window", "string", "", "Interval over which the usage was measured"),
        ],
        "rows": rows,
    })
}

/// Nanocores in a CPU quantity printed by [`cpu_quantity`] (tables only).
fn nano_cores(q: &str) -> u128 {
    let (digits, scale) = match q.as_bytes().last() {
        Some(b'n') => (&q[..q.len() - 1], 1),
        Some(b'u') => (&q[..q.len() - 1], 1_000),
        Some(b'm') => (&q[..q.len() - 1], 1_000_000),
        _ => (q, 1_000_000_000),
    };
    digits.parse::<u128>().unwrap_or(0) * scale
}

/// Bytes in a memory quantity printed by [`memory_quantity`] (tables only).
fn bytes_of(q: &str) -> u128 {
    const UNITS: [(&str, u32); 6] = [
        ("Ki", 1),
        ("Mi", 2),
        ("Gi", 3),
        ("Ti", 4),
        ("Pi", 5),
        ("Ei", 6),
    ];
    for (suffix, power) in UNITS {
        if let Some(digits) = q.strip_suffix(suffix) {
            return digits.parse::<u128>().unwrap_or(0) * 1024u128.pow(power);
        }
    }
    q.parse().unwrap_or(0)
}

/// A CPU rate in nanocores as Kubernetes prints `NewScaledQuantity(n, Nano)`: the largest
/// decimal SI suffix that keeps it whole (`0`, `2`, `250m`, `1500u`, `1234567n`).
pub fn cpu_quantity(nanocores: u64) -> String {
    if nanocores == 0 {
        return "0".into();
    }
    for (div, suffix) in [(1_000_000_000, ""), (1_000_000, "m"), (1_000, "u")] {
        if nanocores.is_multiple_of(div) {
            return format!("{}{suffix}", nanocores / div);
        }
    }
    format!("{nanocores}n")
}

/// A byte count as Kubernetes prints a binary SI quantity: the largest power of 1024 that keeps
/// it whole (`0`, `1000`, `1536Ki`, `2Mi`).
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let mut value = bytes;
    let mut unit = 0;
    while value.is_multiple_of(1024) && unit < 6 {
        value /= 1024;
        unit += 1;
    }
    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][unit];
    format!("{value}{suffix}")
}

/// RFC 3339 in seconds, as `metav1.Time` is written.
fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The sample time of a summary entry, or `now`.
fn time_of<T: serde::Serialize>(time: &Option<T>, now: jiff::Timestamp) -> Value {
    match time.as_ref().and_then(|t| serde_json::to_value(t).ok()) {
        Some(v) if !v.is_null() => v,
        _ => json!(rfc3339(now)),
    }
}

/// The metadata metrics-server gives a metrics object: the measured object's name, namespace
/// and labels, created now.
fn metadata(obj: &Stored, now: jiff::Timestamp) -> Value {
    let mut meta = json!({"name": obj.metadata.name, "creationTimestamp": rfc3339(now)});
    if let Some(ns) = &obj.metadata.namespace {
        meta["namespace"] = json!(ns);
    }
    if let Some(labels) = obj.metadata.labels.as_ref().filter(|l| !l.is_empty()) {
        meta["labels"] = json!(labels);
    }
    meta
}

fn usage(nanocores: u64, memory: u64) -> Value {
    json!({"cpu": cpu_quantity(nanocores), "memory": memory_quantity(memory)})
}

/// The `PodMetrics` (a `skiff_meta::stats::PodMetrics` as JSON) of one pod from its node's
/// summary; `None` while any container lacks a CPU rate (a pod the node has not sampled twice
/// yet), as metrics-server leaves such pods out. A container without a working set counts 0.
fn pod_metrics(pod: &Stored, stats: &PodStats, now: jiff::Timestamp) -> Option<Value> {
    if stats.containers.is_empty() {
        return None;
    }
    let mut containers = Vec::with_capacity(stats.containers.len());
    let mut timestamp = None;
    for c in &stats.containers {
        let cpu = c.cpu.as_ref()?;
        let nanocores = cpu.usage_nano_cores?;
        if timestamp.is_none() && cpu.time.is_some() {
            timestamp = Some(time_of(&cpu.time, now));
        }
        let memory = c
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes)
            .unwrap_or(0);
        containers.push(json!({"name": c.name, "usage": usage(nanocores, memory)}));
    }
    let timestamp =
        timestamp.unwrap_or_else(|| time_of(&stats.cpu.as_ref().and_then(|c| c.time.clone()), now));
    Some(json!({
        "metadata": metadata(pod, now),
        "timestamp": timestamp,
        "window": WINDOW,
        "containers": containers,
    }))
}

/// The `NodeMetrics` of a node from its summary's node totals.
fn node_metrics(node: &Stored, summary: &Summary, now: jiff::Timestamp) -> Option<Value> {
    let cpu = summary.node.cpu.as_ref()?;
    let nanocores = cpu.usage_nano_cores?;
    let memory = summary
        .node
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes)
        .unwrap_or(0);
    Some(json!({
        "metadata": metadata(node, now),
        "timestamp": time_of(&cpu.time, now),
        "window": WINDOW,
        "usage": usage(nanocores, memory),
    }))
}

/// A request for `plural` of the core group with this request's user, namespace and selectors
/// (`labelSelector`, `fieldSelector`), for `resource::list_objects`.
fn core_list_request(req: &ResourceRequest, plural: &str) -> Result<ResourceRequest, ApiError> {
    let kind = skiff_kinds::find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("core {plural} are not known")))?;
    let mut raw = Vec::new();
    for key in ["labelSelector", "fieldSelector"] {
        if let Some(v) = req.query.get(key) {
            raw.push(format!("{key}={}", node_proxy::segment(v)));
        }
    }
    let raw = raw.join("&");
    Ok(ResourceRequest {
        method: Method::GET,
        user: req.user.clone(),
        kind,
        namespace: if kind.namespaced {
            req.namespace.clone()
        } else {
            None
        },
        name: None,
        subresource: None,
        rest: None,
        query: Query::parse(Some(&raw)),
        raw_query: None,
        headers: Default::default(),
        body: Bytes::new(),
        legacy_watch: false,
        http2: false,
        upgrade: None,
    })
}

fn decode(kv: &skiff_store::KeyValue) -> Result<Stored, ApiError> {
    serde_json::from_slice(&kv.value)
        .map_err(|_| ApiError::internal("a stored object could not be decoded"))
}

/// Every stored Node by name, as JSON (for their endpoints).
async fn nodes_by_name(state: &AppState) -> Result<HashMap<String, Value>, ApiError> {
    let kind = skiff_kinds::find("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("core nodes are not known"))?;
    let listed = state
        .store
        .list(ListOptions {
            prefix: objects::collection_prefix(kind, None),
            start_after: None,
            limit: None,
            revision: None,
        })
        .await?;
    let mut out = HashMap::new();
    for kv in &listed.items {
        let node = objects::from_kv(kind, kv)?;
        if let Some(name) = node.pointer("/metadata/name").and_then(Value::as_str) {
            out.insert(name.to_string(), node);
        }
    }
    Ok(out)
}

/// The summaries of the named nodes, fetched concurrently; nodes without an endpoint or that
/// fail are left out (and logged).
async fn summaries(
    state: &AppState,
    nodes: &HashMap<String, Value>,
    wanted: impl IntoIterator<Item = String>,
) -> HashMap<String, Arc<Summary>> {
    let fetches = wanted.into_iter().filter_map(|name| {
        let node = nodes.get(&name)?;
        match node_proxy::endpoint_of(node, &name) {
            Ok(base) => Some(async move {
                let s = state.metrics_api.summary(state, &name, &base).await;
                (name, s)
            }),
            Err(e) => {
                tracing::debug!(node = %name, error = %e.message, "skipping node without an endpoint");
                None
            }
        }
    });
    futures::future::join_all(fetches)
        .await
        .into_iter()
        .filter_map(|(name, s)| s.ok().map(|s| (name, s)))
        .collect()
}

/// The summary entry of a pod: by namespace and name, and the same uid when both know one.
fn find_pod<'a>(summary: &'a Summary, pod: &Stored) -> Option<&'a PodStats> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    summary.pods.iter().find(|p| {
        p.pod_ref.name == pod.metadata.name
            && p.pod_ref.namespace == ns
            && match (&pod.metadata.uid, p.pod_ref.uid.as_str()) {
                (Some(uid), theirs) if !theirs.is_empty() => uid == theirs,
                _ => true,
            }
    })
}

async fn list_pods(
    state: &AppState,
    req: &ResourceRequest,
    now: jiff::Timestamp,
) -> Result<Vec<Value>, ApiError> {
    let pods_req = core_list_request(req, "pods")?;
    let listed = crate::resource::list_objects(state, &pods_req).await?;
    let pods: Vec<Stored> = listed.items.iter().map(decode).collect::<Result<_, _>>()?;
    let wanted: std::collections::BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.spec.node_name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let nodes = nodes_by_name(state).await?;
    let summaries = summaries(state, &nodes, wanted).await;
    // One index per node: (namespace, name) → stats.
    let index: HashMap<&str, HashMap<(&str, &str), &PodStats>> = summaries
        .iter()
        .map(|(node, s)| {
            let pods = s
                .pods
                .iter()
                .map(|p| ((p.pod_ref.namespace.as_str(), p.pod_ref.name.as_str()), p))
                .collect();
            (node.as_str(), pods)
        })
        .collect();
    let mut out = Vec::with_capacity(pods.len());
    for pod in &pods {
        let Some(node) = pod.spec.node_name.as_deref() else {
            continue;
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(stats) = index
            .get(node)
            .and_then(|pods| pods.get(&(ns, pod.metadata.name.as_str())))
        else {
            continue;
        };
        if let (Some(uid), theirs) = (&pod.metadata.uid, stats.pod_ref.uid.as_str())
            && !theirs.is_empty()
            && uid != theirs
        {
            continue;
        }
        if let Some(m) = pod_metrics(pod, stats, now) {
            out.push(m);
        }
    }
    Ok(out)
}

async fn get_pod(
    state: &AppState,
    req: &ResourceRequest,
    name: &str,
    now: jiff::Timestamp,
) -> Result<Value, ApiError> {
    let ns = req.namespace.as_deref().unwrap_or("default");
    let kind = skiff_kinds::find("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("core pods are not known"))?;
    let not_found = || ApiError::not_found(GROUP, "podmetrics", &format!("{ns}/{name}"));
    let kv = state
        .store
        .get(&objects::key(kind, Some(ns), name))
        .await?
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let pod = decode(&kv)?;
    let node = pod
        .spec
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(not_found)?;
    let nodes = nodes_by_name(state).await?;
    let summaries = summaries(state, &nodes, [node.clone()]).await;
    summaries
        .get(&node)
        .and_then(|s| find_pod(s, &pod))
        .and_then(|stats| pod_metrics(&pod, stats, now))
        .ok_or_else(not_found)
}

async fn list_nodes(
    state: &AppState,
    req: &ResourceRequest,
    now: jiff::Timestamp,
) -> Result<Vec<Value>, ApiError> {
    let nodes_req = core_list_request(req, "nodes")?;
    let listed = crate::resource::list_objects(state, &nodes_req).await?;
    let kind = nodes_req.kind;
    let mut nodes = HashMap::new();
    let mut order = Vec::new();
    for kv in &listed.items {
        let node = objects::from_kv(kind, kv)?;
        let stored = decode(kv)?;
        order.push(stored.metadata.name.clone());
        nodes.insert(stored.metadata.name.clone(), (node, stored));
    }
    let by_name: HashMap<String, Value> = nodes
        .iter()
        .map(|(n, (v, _))| (n.clone(), v.clone()))
        .collect();
    let summaries = summaries(state, &by_name, order.clone()).await;
    Ok(order
        .iter()
        .filter_map(|name| {
            let (_, stored) = nodes.get(name)?;
            node_metrics(stored, summaries.get(name)?, now)
        })
        .collect())
}

async fn get_node(state: &AppState, name: &str, now: jiff::Timestamp) -> Result<Value, ApiError> {
    let kind = skiff_kinds::find("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("core nodes are not known"))?;
    let kv = state
        .store
        .get(&objects::key(kind, None, name))
        .await?
        .ok_or_else(|| ApiError::not_found("", "nodes", name))?;
    let node = objects::from_kv(kind, &kv)?;
    let stored = decode(&kv)?;
    let by_name = HashMap::from([(name.to_string(), node)]);
    let summaries = summaries(state, &by_name, [name.to_string()]).await;
    summaries
        .get(name)
        .and_then(|s| node_metrics(&stored, s, now))
        .ok_or_else(|| ApiError::not_found(GROUP, "nodemetrics", name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_in_kubernetes_canonical_form() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(1_234_567), "1234567n");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(1_500_000), "1500u");
        assert_eq!(memory_quantity(0), "0");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(memory_quantity(1536 * 1024), "1536Ki");
        assert_eq!(memory_quantity(2 << 20), "2Mi");
        for n in [0, 7, 1_234_567, 250_000_000, 3_000_000_000] {
            assert_eq!(nano_cores(&cpu_quantity(n)), n as u128);
        }
        for b in [0u64, 1000, 1536 * 1024, 2 << 20, 5 << 30] {
            assert_eq!(bytes_of(&memory_quantity(b)), b as u128);
        }
    }
}
