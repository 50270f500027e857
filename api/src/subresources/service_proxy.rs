//! `services/proxy`: `services/[SCHEME:]NAME[:PORT]/proxy/PATH` reaches a ready endpoint of the
//! Service, as Kubernetes' service `ResourceLocation` does: the port (name or number) is
//! resolved through the Service's EndpointSlices (label `kubernetes.io/service-name`), a ready
//! endpoint is picked at random, and the request goes through that endpoint's node exactly as
//! `pods/proxy` does.

use axum::response::Response;
use rand::seq::IndexedRandom;
use serde_json::Value;

use super::node_proxy::{forward, get_object, node_endpoint, segment};
use crate::error::ApiError;
use crate::objects;
use crate::request::ResourceRequest;
use crate::state::AppState;

/// `[SCHEME:]NAME[:PORT]` as Kubernetes' `SplitSchemeNamePort` reads it.
fn split_scheme_name_port(id: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    if name.is_empty() || !matches!(scheme, "" | "http" | "https") {
        return None;
    }
    Some((name, port))
}

/// One endpoint a request can go to: a pod on a node, on the port the Service port maps to.
struct Target {
    namespace: String,
    pod: String,
    node: String,
    port: i64,
}

/// A ready pod endpoint of the Service for the Service port named `port_name`.
async fn pick(
    state: &AppState,
    ns: &str,
    service: &str,
    port_name: &str,
) -> Result<Option<Target>, ApiError> {
    let kind = skiff_kinds::find("discovery.k8s.io", "v1", "endpointslices")
        .expect("endpointslices are a known kind");
    let listed = state
        .store
        .list(skiff_store::ListOptions {
            prefix: objects::collection_prefix(kind, Some(ns)),
            ..Default::default()
        })
        .await?;
    let mut targets = Vec::new();
    for kv in &listed.items {
        let slice = objects::from_kv(kind, kv)?;
        let owned = objects::meta(&slice)
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .and_then(Value::as_str)
            == Some(service);
        if !owned {
            continue;
        }
        let Some(port) = slice
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_i64))
        else {
            continue;
        };
        for ep in slice
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ready = ep.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false);
            let pod = ep
                .get("targetRef")
                .filter(|r| r.get("kind").and_then(Value::as_str) == Some("Pod"));
            let node = ep.get("nodeName").and_then(Value::as_str);
            if let (true, Some(pod), Some(node)) = (ready, pod, node)
                && let Some(name) = pod.get("name").and_then(Value::as_str)
            {
                targets.push(Target {
                    namespace: pod
                        .get("namespace")
                        .and_then(Value::as_str)
                        .unwrap_or(ns)
                        .to_string(),
                    pod: name.to_string(),
                    node: node.to_string(),
                    port,
                });
            }
        }
    }
    let chosen = targets.choose(&mut rand::rng()).map(|t| Target {
        namespace: t.namespace.clone(),
        pod: t.pod.clone(),
        node: t.node.clone(),
        port: t.port,
    });
    Ok(chosen)
}

/// `services/NAME[:PORT]/proxy/PATH`.
pub(crate) async fn proxy(
    state: &AppState,
    req: &ResourceRequest,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let ns = req.namespace.as_deref().unwrap_or("default");
    let id = req.name.as_deref().unwrap_or_default();
    let (name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid service request {id:?}")))?;
    let service = get_object(state, "services", Some(ns), name).await?;
    let ports = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let service_port = ports
        .iter()
        .find(|p| {
            let pname = p.get("name").and_then(Value::as_str).unwrap_or("");
            let number = p.get("port").and_then(Value::as_i64).map(|n| n.to_string());
            pname == port || (!port.is_empty() && number.as_deref() == Some(port))
        })
        .ok_or_else(|| {
            ApiError::unavailable(format!(
                "no service port {port:?} found for service {name:?}"
            ))
        })?;
    let port_name = service_port
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let target = pick(state, ns, name, port_name).await?.ok_or_else(|| {
        ApiError::unavailable(format!("no endpoints available for service {name:?}"))
    })?;
    let base = node_endpoint(state, &target.node).await?;
    let rest = req.rest.as_deref().unwrap_or("");
    let url = format!(
        "{base}/proxy/{}/{}/{}/{rest}{}{}",
        segment(&target.namespace),
        segment(&target.pod),
        target.port,
        if raw_query.is_some() { "?" } else { "" },
        raw_query.unwrap_or("")
    );
    forward(state, req.method.clone(), url, req).await
}

#[cfg(test)]
mod tests {
    use super::split_scheme_name_port;

    #[test]
    fn names_split_as_kubernetes_splits_them() {
        assert_eq!(split_scheme_name_port("web"), Some(("web", "")));
        assert_eq!(split_scheme_name_port("web:80"), Some(("web", "80")));
        assert_eq!(split_scheme_name_port("web:http"), Some(("web", "http")));
        assert_eq!(
            split_scheme_name_port("https:web:443"),
            Some(("web", "443"))
        );
        assert_eq!(split_scheme_name_port("http:web:"), Some(("web", "")));
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }
}
