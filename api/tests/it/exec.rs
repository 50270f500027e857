//! `pods/exec`: a websocket client (v5 and v4 subprotocols) reaches a fake node endpoint through
//! the API server, which checks the pod, the container and the `create` verb first; SPDY is
//! refused with a Status that names the websocket way.

use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message as WsMessage, WebSocketUpgrade};
use axum::extract::{Path, RawQuery};
use axum::http::HeaderMap;
use futures::{SinkExt, StreamExt};
use skiff_api::{Attributes, Decision};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;

const NODE: &str = "exec-node";

/// A node endpoint that answers `/exec`: stdout `hi`, then (with stdin) the first stdin frame
/// echoed on stdout, then a Status with exit code 7. Records each request's path and query.
async fn fake_node() -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let handler = move |Path((ns, pod, c)): Path<(String, String, String)>,
                        RawQuery(q): RawQuery,
                        headers: HeaderMap,
                        ws: WebSocketUpgrade| {
        let record = record.clone();
        async move {
            let bearer = format!("Bearer {TOKEN}");
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&bearer) {
                return axum::response::IntoResponse::into_response((
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                ));
            }
            if c == "gone" {
                return axum::response::IntoResponse::into_response((
                    StatusCode::NOT_FOUND,
                    "container not found (\"gone\")",
                ));
            }
            let q = q.unwrap_or_default();
            record.lock().unwrap().push(format!("{ns}/{pod}/{c}?{q}"));
            let stdin = q.contains("stdin=true");
            ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
                .on_upgrade(move |mut socket| async move {
                    let _ = socket
                        .send(WsMessage::Binary(bytes::Bytes::from_static(b"\x01hi\n")))
                        .await;
                    if stdin {
                        while let Some(Ok(msg)) = socket.next().await {
                            if let WsMessage::Binary(data) = msg
                                && data.first() == Some(&0)
                            {
                                let mut out = vec![1u8];
                                out.extend_from_slice(&data[1..]);
                                let _ = socket.send(WsMessage::Binary(out.into())).await;
                                break;
                            }
                        }
                    }
                    let status = json!({"metadata": {}, "status": "Failure",
                        "reason": "NonZeroExitCode",
                        "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}});
                    let mut frame = vec![3u8];
                    frame.extend_from_slice(&serde_json::to_vec(&status).unwrap());
                    let _ = socket.send(WsMessage::Binary(frame.into())).await;
                    let _ = socket.send(WsMessage::Close(None)).await;
                })
        }
    };
    let app =
        axum::Router::new().route("/exec/{ns}/{pod}/{container}", axum::routing::get(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

/// Serves the API on a socket (upgrades need a real connection), with the node and two pods
/// (`one` with container `c`, `two` with `a` and `b`) on it.
async fn setup(api: &Api) -> (u16, Arc<Mutex<Vec<String>>>) {
    let (node_port, seen) = fake_node().await;
    let (code, body) = api
        .call(
            Method::POST,
            "/api/v1/nodes",
            Some(json!({"metadata": {"name": NODE}})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let mut node = body;
    node["status"] = json!({
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": node_port}},
    });
    let (code, body) = api
        .call(
            Method::PUT,
            &format!("/api/v1/nodes/{NODE}/status"),
            Some(node),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    for (name, containers) in [("one", vec!["c"]), ("two", vec!["a", "b"])] {
        let containers: Vec<Value> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "example/app:1"}))
            .collect();
        let (code, body) = api
            .call(
                Method::POST,
                "/api/v1/namespaces/default/pods",
                Some(json!({"metadata": {"name": name},
                    "spec": {"nodeName": NODE, "containers": containers}})),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = api.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (port, seen)
}

/// Runs one exec over a websocket and returns the negotiated protocol and the frames received.
async fn ws_exec(
    port: u16,
    query: &str,
    protocol: &str,
    stdin: Option<&[u8]>,
) -> (String, Vec<Vec<u8>>) {
    let url = format!("ws://127.0.0.1:{port}/api/v1/namespaces/default/pods/one/exec?{query}");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the exec upgrades");
    let negotiated = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Some(input) = stdin {
        let mut frame = vec![0u8];
        frame.extend_from_slice(input);
        ws.send(Message::Binary(frame.into())).await.unwrap();
    }
    let mut frames = Vec::new();
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Binary(data) => frames.push(data.to_vec()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    (negotiated, frames)
}

fn exit_code(frames: &[Vec<u8>]) -> Option<String> {
    let last = frames.iter().find(|f| f.first() == Some(&3))?;
    let status: Value = serde_json::from_slice(&last[1..]).ok()?;
    status["details"]["causes"][0]["message"]
        .as_str()
        .map(str::to_string)
}

fn stdout(frames: &[Vec<u8>]) -> String {
    frames
        .iter()
        .filter(|f| f.first() == Some(&1))
        .map(|f| String::from_utf8_lossy(&f[1..]).to_string())
        .collect()
}

#[tokio::test]
async fn exec_over_v5_and_v4_reaches_the_node_both_ways() {
    let api = Api::new().await;
    let (port, seen) = setup(&api).await;
    let q = "command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true&stderr=true";
    let (protocol, frames) = ws_exec(port, q, "v5.channel.k8s.io", Some(b"ping")).await;
    assert_eq!(protocol, "v5.channel.k8s.io");
    assert_eq!(stdout(&frames), "hi\nping");
    assert_eq!(exit_code(&frames).as_deref(), Some("7"));
    assert_eq!(
        seen.lock().unwrap()[0],
        format!("default/one/c?{q}"),
        "the only container is the default and the query reaches the node as sent"
    );

    let q = "command=true&container=c&stdout=true";
    let (protocol, frames) = ws_exec(port, q, "v4.channel.k8s.io", None).await;
    assert_eq!(protocol, "v4.channel.k8s.io");
    assert_eq!(stdout(&frames), "hi\n");
    assert_eq!(exit_code(&frames).as_deref(), Some("7"));
}

/// A request with websocket upgrade headers, through the router (errors need no connection).
async fn upgrade_call(api: &Api, path: &str, upgrade: &str) -> (u16, Value) {
    let req = Request::get(path)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Connection", "Upgrade")
        .header("Upgrade", upgrade)
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Protocol", "v5.channel.k8s.io")
        .body(Body::empty())
        .unwrap();
    let resp = api.request(req).await;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const EXEC: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn spdy_bad_containers_and_missing_pods_get_kubernetes_statuses() {
    let api = Api::new().await;
    let (port, _) = setup(&api).await;
    let q = "command=date&stdout=true";

    // SPDY: a container that is not running is named (kubectl falls back to SPDY when the
    // websocket fails), a running one gets the refusal naming the websocket way.
    let (code, body) = upgrade_call(&api, &format!("{EXEC}/one/exec?{q}"), "SPDY/3.1").await;
    assert_eq!(
        (code, body["message"].as_str()),
        (
            400,
            Some("unable to upgrade connection: container not found (\"c\")")
        )
    );
    let (_, mut one) = api.call(Method::GET, &format!("{EXEC}/one"), None).await;
    one["status"] = json!({"phase": "Running", "containerStatuses": [{"name": "c",
        "ready": true, "restartCount": 0, "image": "example/app:1", "imageID": "",
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]});
    let (code, body) = api
        .call(Method::PUT, &format!("{EXEC}/one/status"), Some(one))
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = upgrade_call(&api, &format!("{EXEC}/one/exec?{q}"), "SPDY/3.1").await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["kind"], "Status");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("SPDY is not supported") && msg.contains("websocket"),
        "{msg}"
    );

    let (code, body) = upgrade_call(
        &api,
        &format!("{EXEC}/one/exec?{q}&container=x"),
        "websocket",
    )
    .await;
    assert_eq!(
        (code, body["message"].as_str()),
        (400, Some("container x is not valid for pod one"))
    );

    let (code, body) = upgrade_call(&api, &format!("{EXEC}/two/exec?{q}"), "websocket").await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "a container name must be specified for pod two, choose one of: [a b]"
    );

    let (code, body) = upgrade_call(&api, &format!("{EXEC}/nope/exec?{q}"), "websocket").await;
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));

    let (code, body) =
        upgrade_call(&api, &format!("{EXEC}/one/exec?stdout=true"), "websocket").await;
    assert_eq!(
        (code, body["message"].as_str()),
        (400, Some("you must specify at least 1 command"))
    );

    // The node's refusal (a container it does not run) comes back as kubectl shows it.
    let (code, body) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(json!({"metadata": {"name": "three"},
                "spec": {"nodeName": NODE, "containers": [{"name": "gone", "image": "example/app:1"}]}})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let url = format!("ws://127.0.0.1:{port}{EXEC}/three/exec?{q}");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    match tokio_tungstenite::client_async(request, stream).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400);
            let body: Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or(b"")).unwrap();
            assert_eq!(
                body["message"],
                "unable to upgrade connection: container not found (\"gone\")"
            );
        }
        other => panic!(
            "expected an HTTP refusal, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
}

/// Allows everything but `create` on `pods/exec`.
struct NoExecCreate;

impl skiff_api::Authorizer for NoExecCreate {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        if a.verb == "create" && a.subresource == Some("exec") {
            Decision::Deny("no exec".into())
        } else {
            Decision::Allow
        }
    }
}

#[tokio::test]
async fn a_websocket_get_is_authorized_as_create() {
    let api = Api::with_authorizer(Arc::new(NoExecCreate)).await;
    let (_port, seen) = setup(&api).await;
    let (code, body) = upgrade_call(
        &api,
        &format!("{EXEC}/one/exec?command=date&stdout=true"),
        "websocket",
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (403, Some("Forbidden")),
        "{body}"
    );
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("cannot create resource \"pods/exec\""),
        "{msg}"
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing reached the node");
}
