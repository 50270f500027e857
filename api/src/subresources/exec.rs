//! `pods/exec`: Kubernetes' remotecommand over a websocket (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`, `v4.base64.channel.k8s.io`: the node chooses). The API server checks the request (authorized as `create` too, the pod
//! and its container), opens an upgraded connection to the pod's node (`/exec/NS/POD/CONTAINER`
//! with the same query and subprotocol, the server's bearer token), answers the client with the
//! node's `101`, and splices the two connections without reading the frames. SPDY, which
//! kubectl before 1.30 speaks, is refused with a Status naming the websocket way.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::error::ApiError;
use crate::request::ResourceRequest;
use crate::state::AppState;
use crate::subresources::node_proxy::{get_object, node_endpoint, segment};

/// The headers of a websocket handshake that reach the node and come back from it.
const REQUEST_HEADERS: [&str; 4] = [
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];
const RESPONSE_HEADERS: [&str; 2] = ["sec-websocket-accept", "sec-websocket-protocol"];

/// What the client asked to upgrade to.
#[derive(Debug, PartialEq, Eq)]
enum Upgrade {
    WebSocket,
    Spdy,
    None,
}

fn upgrade_of(headers: &HeaderMap) -> Upgrade {
    let Some(value) = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()) else {
        return Upgrade::None;
    };
    let value = value.to_ascii_lowercase();
    if value.split(',').any(|p| p.trim() == "websocket") {
        Upgrade::WebSocket
    } else if value.starts_with("spdy/") {
        Upgrade::Spdy
    } else {
        Upgrade::None
    }
}

/// The container an exec names: the one asked for, or the pod's only container.
fn container_of(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let regular = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c)
            if regular
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c) =>
        {
            Ok(c.to_string())
        }
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if regular.len() == 1 => Ok(regular[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                regular.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// `GET|POST pods/NAME/exec?command=..&container=..&stdin=..&stdout=..&stderr=..&tty=..`.
pub(crate) async fn exec(state: &AppState, mut req: ResourceRequest) -> Result<Response, ApiError> {
    // Kubernetes authorizes every exec as `create` on `pods/exec`, whatever the method.
    crate::authz::check_verb(state.authorizer.as_ref(), &req, "create")?;
    let ns = req.namespace.clone().unwrap_or_else(|| "default".into());
    let name = req.name.clone().unwrap_or_default();
    let pod = get_object(state, "pods", Some(&ns), &name).await?;
    let container = container_of(&pod, &name, req.query.get("container"))?;
    if !query_has(req.raw_query.as_deref(), "command") {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let streams = ["stdin", "stdout", "stderr"]
        .iter()
        .filter(|s| req.query.flag(s))
        .count();
    if streams == 0 {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    if let Some(phase @ ("Succeeded" | "Failed")) =
        pod.pointer("/status/phase").and_then(Value::as_str)
    {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    match upgrade_of(&req.headers) {
        Upgrade::WebSocket => {}
        Upgrade::Spdy => {
            // kubectl falls back to SPDY when the websocket upgrade fails, so a container the
            // node cannot run a command in is named here too.
            if !running(&pod, &container) {
                return Err(ApiError::bad_request(format!(
                    "unable to upgrade connection: container not found ({container:?})"
                )));
            }
            return Err(ApiError::bad_request(
                "SPDY is not supported by this server for pods/exec: use a websocket \
                 (kubectl 1.30 or later does by default; kubectl 1.29 with \
                 KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true)",
            ));
        }
        Upgrade::None => return Err(ApiError::bad_request("Upgrade request required")),
    }
    let Some(client_upgrade) = req.upgrade.take() else {
        return Err(ApiError::bad_request(
            "this connection cannot be upgraded (use HTTP/1.1 for pods/exec)",
        ));
    };
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let base = node_endpoint(state, node_name).await?;
    let authority = base.trim_start_matches("http://").to_string();
    let path = format!(
        "/exec/{}/{}/{}{}{}",
        segment(&ns),
        segment(&name),
        segment(&container),
        if req.raw_query.is_some() { "?" } else { "" },
        req.raw_query.as_deref().unwrap_or("")
    );
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, &authority)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket");
    for name in REQUEST_HEADERS {
        for value in req.headers.get_all(name) {
            builder = builder.header(name, value);
        }
    }
    if let Some(token) = super::node_proxy::kubelet_client_token(state) {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(Body::empty())
        .map_err(|e| ApiError::internal(format!("cannot build the node request: {e}")))?;

    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::unavailable(format!("error trying to reach the node {node_name}: {e}"))
    };
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| unreachable(&e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "exec: the node connection ended");
        }
    });
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(&e))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_string();
        let message = format!("unable to upgrade connection: {text}");
        return Err(if status.is_client_error() {
            ApiError::bad_request(message)
        } else {
            ApiError::internal(message)
        });
    }
    let mut out = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, HeaderValue::from_static("Upgrade"))
        .header(header::UPGRADE, HeaderValue::from_static("websocket"));
    for name in RESPONSE_HEADERS {
        if let Some(value) = response.headers().get(name) {
            out = out.header(name, value);
        }
    }
    let node_upgrade = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (client, node) = match tokio::try_join!(client_upgrade, node_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "exec: an upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut node = TokioIo::new(node);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut node).await {
            tracing::debug!(error = %e, "exec: the stream ended");
        }
    });
    out.body(Body::empty())
        .map_err(|e| ApiError::internal(format!("cannot build the upgrade response: {e}")))
}

/// True when the pod's status shows `container` running.
fn running(pod: &Value, container: &str) -> bool {
    [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|f| {
        pod.pointer(&format!("/status/{f}"))
            .and_then(Value::as_array)
    })
    .flatten()
    .any(|c| {
        c.get("name").and_then(Value::as_str) == Some(container)
            && c.pointer("/state/running").is_some()
    })
}

/// True when the raw query has a non-empty `key`.
fn query_has(raw: Option<&str>, key: &str) -> bool {
    raw.unwrap_or("").split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k == key && !v.is_empty()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_the_asked_or_the_only_one() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(container_of(&one, "p", None).unwrap(), "a");
        assert_eq!(container_of(&one, "p", Some("a")).unwrap(), "a");
        let e = container_of(&one, "p", Some("x")).unwrap_err();
        assert_eq!(e.message, "container x is not valid for pod p");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "i"}]}});
        let e = container_of(&two, "p", None).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(container_of(&two, "p", Some("i")).unwrap(), "i");
    }

    #[test]
    fn a_running_container_is_read_from_the_status() {
        let pod = json!({"status": {"containerStatuses": [
            {"name": "a", "state": {"running": {}}},
            {"name": "b", "state": {"waiting": {}}}]}});
        assert!(running(&pod, "a"));
        assert!(!running(&pod, "b"));
        assert!(!running(&pod, "c"));
        assert!(!running(&json!({}), "a"));
    }

    #[test]
    fn upgrades_are_told_apart() {
        let mut h = HeaderMap::new();
        assert_eq!(upgrade_of(&h), Upgrade::None);
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert_eq!(upgrade_of(&h), Upgrade::Spdy);
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_of(&h), Upgrade::WebSocket);
    }

    #[test]
    fn the_command_must_be_there() {
        assert!(query_has(
            Some("command=sh&command=-c&stdout=true"),
            "command"
        ));
        assert!(!query_has(Some("stdout=true&command="), "command"));
        assert!(!query_has(None, "command"));
    }
}
