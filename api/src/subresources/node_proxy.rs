//! `pods/log`, `pods/proxy` and `nodes/proxy`: the API server finds the pod's node (or the node)
//! and forwards the request to the node's endpoint (`status.daemonEndpoints.kubeletEndpoint.port`
//! on its InternalIP), as the Kubernetes API server does with kubelets. The server presents its own node credential, the
//! `kube-apiserver-kubelet-client` token (`DATA/pki/kubelet-client.token`), never a user's.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Uri, header};
use axum::response::Response;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::error::ApiError;
use crate::objects;
use crate::request::ResourceRequest;
use crate::state::AppState;

/// The token the API server presents to nodes: the one `state.tokens` holds for
/// `kube-apiserver-kubelet-client`; a state without one (an in-process test server) sends its
/// first token.
pub(crate) fn kubelet_client_token(state: &AppState) -> Option<&str> {
    state
        .tokens
        .iter()
        .find(|(_, user)| user.name == skiff_meta::names::KUBELET_CLIENT_USER)
        .or_else(|| state.tokens.first())
        .map(|(token, _)| token.as_str())
}

/// Reads `DIR/pki/kubelet-client.token`, making it (0600) on first start.
pub(crate) fn load_or_create_kubelet_client_token(
    dir: &std::path::Path,
) -> Result<String, crate::pki::Error> {
    let path = dir.join("pki").join("kubelet-client.token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(crate::pki::Error::Io { path, source }),
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| crate::pki::Error::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let token = crate::pki::random_token();
    crate::pki::write_private(&path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}

/// The HTTP client every request to a node goes through.
pub(crate) fn client() -> &'static Client<HttpConnector, Body> {
    static CLIENT: OnceLock<Client<HttpConnector, Body>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        // Under the node endpoint's 32 s keep-alive bound (`skiff_host::ENDPOINT_CONNECTION_LIMITS`),
        // so a pooled connection is dropped here before the node closes it under a request.
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector)
    })
}

/// Percent-encodes one path segment.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) async fn get_object(
    state: &AppState,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let kind = skiff_kinds::find("", "v1", plural).expect("core kinds are known");
    let kv = state
        .store
        .get(&objects::key(kind, ns, name))
        .await?
        .ok_or_else(|| ApiError::not_found("", plural, name))?;
    objects::from_kv(kind, &kv)
}

/// The `http://host:port` of the node a pod runs on.
async fn node_base(state: &AppState, pod: &Value, pod_name: &str) -> Result<String, ApiError> {
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {pod_name} does not have a host assigned"))
        })?;
    node_endpoint(state, node_name).await
}

/// The `http://host:port` of a node's endpoint.
pub(crate) async fn node_endpoint(state: &AppState, node_name: &str) -> Result<String, ApiError> {
    let node = get_object(state, "nodes", None, node_name).await?;
    endpoint_of(&node, node_name)
}

/// The `http://host:port` of a Node object's endpoint: its published kubelet port on its first
/// InternalIP (else ExternalIP, else Hostname).
pub(crate) fn endpoint_of(node: &Value, node_name: &str) -> Result<String, ApiError> {
    endpoint_with_port(node, node_name, None)
}

fn endpoint_with_port(
    node: &Value,
    node_name: &str,
    port: Option<u16>,
) -> Result<String, ApiError> {
    let published = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p < 65536)
        .and_then(|p| u16::try_from(p).ok());
    let port = port.or(published).ok_or_else(|| {
        ApiError::unavailable(format!("node {node_name} does not publish an endpoint"))
    })?;
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let address = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|t| {
            addresses
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
                .and_then(|a| a.get("address").and_then(Value::as_str))
        })
        .ok_or_else(|| ApiError::unavailable(format!("node {node_name} has no address")))?;
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    Ok(format!("http://{host}:{port}"))
}

/// Sends a request to the node and streams its answer back.
pub(crate) async fn forward(
    state: &AppState,
    method: Method,
    url: String,
    req: &ResourceRequest,
) -> Result<Response, ApiError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| ApiError::bad_request("the proxied path is not valid"))?;
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in req.headers.iter() {
        if name == header::AUTHORIZATION || name == header::HOST || name == header::CONNECTION {
            continue;
        }
        builder = builder.header(name, value);
    }
    if let Some(token) = kubelet_client_token(state) {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(Body::from(req.body.clone()))
        .map_err(|e| ApiError::bad_request(format!("cannot build the proxied request: {e}")))?;
    let response = client()
        .request(request)
        .await
        .map_err(|e| ApiError::unavailable(format!("error trying to reach the node: {e}")))?;
    let (parts, body) = response.into_parts();
    let mut out = Response::from_parts(parts, Body::new(body));
    out.headers_mut().remove(header::CONNECTION);
    Ok(out)
}

/// `GET pods/NAME/log`.
pub(crate) async fn log(state: &AppState, req: &ResourceRequest) -> Result<Response, ApiError> {
    let ns = req.namespace.as_deref().unwrap_or("default");
    let name = req.name.as_deref().unwrap_or_default();
    let pod = get_object(state, "pods", Some(ns), name).await?;
    let containers: Vec<String> = ["initContainers", "containers"]
        .iter()
        .flat_map(|f| {
            pod.pointer(&format!("/spec/{f}"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let regular: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let container = match req.query.get("container") {
        Some(c) if containers.iter().any(|n| n == c) => c.to_string(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if regular.len() == 1 => regular[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                regular.join(" ")
            )));
        }
    };
    let base = node_base(state, &pod, name).await?;
    let mut query = Vec::new();
    for key in [
        "follow",
        "previous",
        "timestamps",
        "tailLines",
        "sinceSeconds",
        "sinceTime",
        "limitBytes",
    ] {
        if let Some(v) = req.query.get(key) {
            query.push(format!("{key}={}", segment(v)));
        }
    }
    let url = format!(
        "{base}/containerLogs/{}/{}/{}{}{}",
        segment(ns),
        segment(name),
        segment(&container),
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let mut response = forward(state, Method::GET, url, req).await?;
    if response.status().is_success() {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    Ok(response)
}

/// `pods/NAME[:PORT]/proxy/PATH`.
pub(crate) async fn proxy(
    state: &AppState,
    req: &ResourceRequest,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let ns = req.namespace.as_deref().unwrap_or("default");
    let full = req.name.as_deref().unwrap_or_default();
    // NAME, NAME:PORT or SCHEME:NAME:PORT, as Kubernetes accepts.
    let parts: Vec<&str> = full.split(':').collect();
    let (name, port) = match parts.as_slice() {
        [name] => (*name, None),
        [name, port] => (*name, Some(*port)),
        [_scheme, name, port] => (*name, Some(*port)),
        _ => {
            return Err(ApiError::bad_request(format!(
                "invalid pod proxy name {full:?}"
            )));
        }
    };
    let pod = get_object(state, "pods", Some(ns), name).await?;
    let port: u16 = match port {
        Some(p) => p
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid port {p:?}")))?,
        None => pod
            .pointer("/spec/containers/0/ports/0/containerPort")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(80),
    };
    let base = node_base(state, &pod, name).await?;
    let rest = req.rest.as_deref().unwrap_or("");
    let url = format!(
        "{base}/proxy/{}/{}/{port}/{rest}{}{}",
        segment(ns),
        segment(name),
        if raw_query.is_some() { "?" } else { "" },
        raw_query.unwrap_or("")
    );
    forward(state, req.method.clone(), url, req).await
}

/// `nodes/NAME[:PORT]/proxy/PATH` (any method): forwarded to `PATH` on the node's endpoint, or
/// on `PORT` at the node's address, as kube-apiserver forwards to a kubelet. The RBAC resource
/// is `nodes/proxy`; the node sees the API server's credential, never the caller's.
pub(crate) async fn node_proxy(
    state: &AppState,
    req: &ResourceRequest,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let full = req.name.as_deref().unwrap_or_default();
    // NAME, NAME:PORT or SCHEME:NAME:PORT, as Kubernetes accepts.
    let parts: Vec<&str> = full.split(':').collect();
    let (name, port) = match parts.as_slice() {
        [name] => (*name, None),
        [name, port] => (*name, Some(*port)),
        [scheme, name, port] if matches!(*scheme, "http" | "https" | "") => (*name, Some(*port)),
        _ => {
            return Err(ApiError::bad_request(format!(
                "invalid node proxy name {full:?}"
            )));
        }
    };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ApiError::bad_request(format!("invalid port {p:?}")))?,
        ),
        None => None,
    };
    let node = get_object(state, "nodes", None, name).await?;
    let base = endpoint_with_port(&node, name, port)?;
    let rest = req.rest.as_deref().unwrap_or("");
    let url = format!(
        "{base}/{rest}{}{}",
        if raw_query.is_some() { "?" } else { "" },
        raw_query.unwrap_or("")
    );
    forward(state, req.method.clone(), url, req).await
}
