//! OpenTelemetry traces and log formats end to end: an OTLP/HTTP receiver in the test (axum on
//! loopback, `POST /v1/traces`, decoded with `opentelemetry-proto`) gets the spans of a
//! `skiff server` and two real `skiff node`s started with `OTEL_EXPORTER_OTLP_ENDPOINT`; one
//! request through the ingress to a frontend that calls a backend on the other node is one
//! trace with spans from both nodes. `--log-format json` lines parse as JSON with their fields.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use k8s_openapi::api::core::v1::Pod;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use skiff_tests::fixtures::{host_ingress, is_ready, url_encode};
use skiff_tests::{Cluster, set_child_env, wait_for, wait_object};

const WAIT: Duration = Duration::from_secs(120);

/// One span as received: its process's resource attributes and its ids.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    node: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
}

type Spans = Arc<Mutex<Vec<Received>>>;

fn text_attr(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> String {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

async fn export(State(spans): State<Spans>, body: Bytes) -> axum::response::Response {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return axum::response::IntoResponse::into_response(axum::http::StatusCode::BAD_REQUEST);
    };
    let mut got = Vec::new();
    for rs in req.resource_spans {
        let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
        let service = text_attr(&attrs, "service.name");
        let node = text_attr(&attrs, "k8s.node.name");
        for ss in rs.scope_spans {
            for s in ss.spans {
                got.push(Received {
                    service: service.clone(),
                    node: node.clone(),
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                });
            }
        }
    }
    spans.lock().unwrap().extend(got);
    let mut resp = axum::response::IntoResponse::into_response(
        ExportTraceServiceResponse::default().encode_to_vec(),
    );
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-protobuf"),
    );
    resp
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An OTLP/HTTP (protobuf) trace receiver on loopback: its address and what it received.
async fn receiver() -> (SocketAddr, Spans) {
    let spans: Spans = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(export))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, spans)
}

/// `GET path` through an ingress for `host` with a `traceparent` header: status and body.
fn get_traced(addr: &str, host: &str, path: &str, traceparent: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\ntraceparent: {traceparent}\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn pod(name: &str, app: &str, node: &str, image: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  nodeName: {node}
  containers:
  - name: app
    image: {image}
    ports: [{{containerPort: 8080}}]
    env:
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    readinessProbe:
      httpGet: {{path: /, port: 8080}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {app}}}
spec:
  selector: {{app: {app}}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_through_the_ingress_to_a_frontend_calling_a_backend_on_another_node_is_one_trace()
 {
    let (addr, spans) = receiver().await;
    set_child_env("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{addr}"));
    // Export every 200 ms rather than every 5 s.
    set_child_env("OTEL_BSP_SCHEDULE_DELAY", "200");
    let Some(c) = Cluster::builder()
        .kubectl()
        .push("frontend/frontend.wasm", "samples/frontend:1.0")
        .loopback_zones(&["a", "b"])
        .start()
        .await
    else {
        return;
    };
    let image = format!("{}/samples/frontend:1.0", c.registry().addr);
    let (node_a, node_b) = (&c.nodes[0], &c.nodes[1]);
    c.apply_in("default", &pod("fe", "fe", &node_a.name, &image));
    c.apply_in("default", &pod("be", "backend", &node_b.name, &image));
    c.apply_in("default", &host_ingress("fe", "fe.test", "fe"));
    for name in ["fe", "be"] {
        wait_object(
            &c.pods("default"),
            name,
            "to be Ready",
            WAIT,
            |p: Option<&Pod>| p.is_some_and(is_ready),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
    }
    let exporting = node_a.pid().map(threads).unwrap_or_default();
    assert!(
        exporting.iter().any(|n| n.starts_with(EXPORTER_THREAD)),
        "an exporter thread in a node with an endpoint: {exporting:?}"
    );
    let ingress = node_a.ingress.clone().expect("node-a has an ingress");
    let path = format!("/call?url={}", url_encode("http://backend/"));
    // The client's own span: the trace id and the parent of the ingress's span. A new trace
    // per attempt (routes converge within a watch event); the one that reached the backend
    // is looked for.
    let client_span = "00f067aa0ba902b7";
    let mut attempt = 0u32;
    let trace = wait_for(
        "a request through the ingress to reach the backend",
        WAIT,
        || {
            attempt += 1;
            let trace = format!("4bf92f3577b34da6a3ce929d{attempt:08x}");
            let got = get_traced(
                &ingress,
                "fe.test",
                &path,
                &format!("00-{trace}-{client_span}-01"),
            );
            let ok = got.is_some_and(|(s, body)| s == 200 && body.starts_with("upstream: 200"));
            async move { ok.then_some(trace) }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));

    // Spans arrive in batches; wait for both nodes' side of the request.
    let found = wait_for("the spans of both nodes in the trace", WAIT, || {
        let of_trace: Vec<Received> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace)
            .cloned()
            .collect();
        let has = |node: &str, name: &str| {
            of_trace
                .iter()
                .any(|s| s.node == node && s.name.starts_with(name))
        };
        // Span names: `ingress NS/SERVICE`, `route NS/SERVICE`, `pod NS/POD`, `endpoint IP:PORT`.
        let complete = has(&node_a.name, "ingress default/fe")
            && has(&node_a.name, "route default/fe")
            && has(&node_a.name, "pod default/fe")
            && has(&node_a.name, "route default/backend")
            && has(&node_b.name, "endpoint ")
            && has(&node_b.name, "pod default/be");
        async move { complete.then_some(of_trace) }
    })
    .await;
    let of_trace = found.unwrap_or_else(|e| {
        let all: Vec<String> = spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| format!("{} {} {} {}", s.service, s.node, s.name, s.trace_id))
            .collect();
        panic!("{e:#}; received:\n{}", all.join("\n"))
    });
    let by_id: BTreeMap<&str, &Received> =
        of_trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    // The ingress's span is the child of the client's.
    let ingress_span = of_trace
        .iter()
        .find(|s| s.name.starts_with("ingress "))
        .expect("an ingress span");
    assert_eq!(ingress_span.parent, client_span, "{of_trace:#?}");
    assert_eq!(ingress_span.service, "skiff-node");
    // The backend's request descends from the ingress's span, across the two processes.
    let backend = of_trace
        .iter()
        .find(|s| s.node == node_b.name && s.name == "pod default/be")
        .expect("the backend's span");
    let mut chain = vec![backend.name.clone()];
    let mut at = backend;
    while let Some(parent) = by_id.get(at.parent.as_str()) {
        chain.push(format!("{} ({})", parent.name, parent.node));
        at = parent;
    }
    assert_eq!(
        at.span_id, ingress_span.span_id,
        "the backend's span descends from the ingress's: {chain:?}\n{of_trace:#?}"
    );
    assert!(
        chain.iter().any(|s| s.contains(&node_a.name)) && backend.node == node_b.name,
        "{chain:?}"
    );

    let all = spans.lock().unwrap().clone();
    // The API server's requests (`VERB RESOURCE`) and its controllers' reconciles.
    let server: Vec<&Received> = all
        .iter()
        .filter(|s| s.service == "skiff-apiserver")
        .collect();
    assert!(
        server.iter().any(|s| s.name == "create pods"),
        "{server:#?}"
    );
    assert!(
        server.iter().any(|s| s.name.starts_with("reconcile ")),
        "{server:#?}"
    );
    // The frontend's start on node-a: one trace, pull, compile and instantiate its children.
    let start = all
        .iter()
        .find(|s| s.node == node_a.name && s.name == "start default/fe app")
        .unwrap_or_else(|| panic!("the frontend's start: {all:#?}"));
    for step in ["pull", "compile", "instantiate"] {
        assert!(
            all.iter().any(|s| s.name == step
                && s.parent == start.span_id
                && s.trace_id == start.trace_id),
            "{step} under {start:?}: {all:#?}"
        );
    }
}

/// The names of a process's threads.
fn threads(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|c| c.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The batch span processor's thread (`OpenTelemetry.Traces.BatchProcessor`, cut to 15 bytes).
const EXPORTER_THREAD: &str = "OpenTelemetry.T";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_with_their_fields_and_no_exporter_starts_without_an_endpoint() {
    let Some(c) = Cluster::builder()
        .kubectl()
        .server_args(&["--log-format", "json"])
        .push("frontend/frontend.wasm", "samples/frontend:1.0")
        .node("node-json", &["--log-format", "json"])
        .start()
        .await
    else {
        return;
    };
    let image = format!("{}/samples/frontend:1.0", c.registry().addr);
    c.apply_in("default", &pod("logged", "logged", "node-json", &image));
    wait_object(
        &c.pods("default"),
        "logged",
        "to be Ready",
        WAIT,
        |p: Option<&Pod>| p.is_some_and(is_ready),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
    let node = c.node("node-json");
    // No OTLP endpoint in its environment: no exporter thread.
    let pid = node.pid().expect("the node runs");
    let names = threads(pid);
    assert!(!names.is_empty(), "the threads of {pid}");
    assert!(
        !names.iter().any(|n| n.starts_with(EXPORTER_THREAD)),
        "{names:?}"
    );
    for (who, log) in [("server", c.server.log()), ("node", node.log())] {
        let mut lines = 0;
        for line in log.lines().filter(|l| l.starts_with('{')) {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a {who} log line that is not JSON ({e}): {line}"));
            for field in ["timestamp", "level", "target", "fields"] {
                assert!(v.get(field).is_some(), "no {field} in {line}");
            }
            lines += 1;
        }
        // Log lines are JSON; the banners a command prints on stdout stay text. A text log
        // line starts with its timestamp.
        let text: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("20") && !l.starts_with('{'))
            .collect();
        assert!(lines > 0, "the {who} logged no JSON line:\n{log}");
        assert!(text.is_empty(), "{who} log lines in text: {text:#?}");
    }
    // The pod's lines carry its name and namespace (the fields of the node's span of the pod).
    let log = node.log();
    let pod_line = log.lines().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        let span = v.get("span")?;
        (span.get("pod")? == "logged" && span.get("namespace")? == "default").then_some(v)
    });
    assert!(pod_line.is_some(), "no line of pod default/logged:\n{log}");
}
