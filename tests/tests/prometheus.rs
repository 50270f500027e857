//! Debian's Prometheus server scraping a real cluster: the API server (HTTPS with the cluster
//! CA and the admin token), a node's endpoint directly (the API server's node credential) and
//! through the API server's `nodes/NAME/proxy/metrics`, and the registry (its token as Basic
//! credentials). Every target reports `up`, and the named series are there through
//! Prometheus's query API (the in-process controllers' on the API server's target): the proof that each surface's exposition parses. Skipped with a
//! printed line when `prometheus` is not installed (`scripts/install-test-deps.sh` installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use skiff_tests::fixtures::is_ready;
use skiff_tests::{Cluster, http_get, wait_for, wait_object};

const NODE: &str = "node-1";
const WAIT: Duration = Duration::from_secs(120);

/// The Prometheus server; killed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(binary: &Path, config: &str) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("skiff-prometheus-")
            .tempdir()
            .expect("a temp dir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("config written");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` on Prometheus's HTTP API, as JSON (`None` while it is not answering).
    async fn api(&self, path: &str) -> Option<serde_json::Value> {
        let (addr, path) = (self.addr.clone(), path.to_string());
        let (status, body) = tokio::task::spawn_blocking(move || {
            http_get(&addr, &path, None, Duration::from_secs(5))
        })
        .await
        .ok()?
        .ok()?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }
}

/// A Prometheus query's first sample value, if the query has a result.
fn first_value(answer: &serde_json::Value) -> Option<f64> {
    answer["data"]["result"].as_array()?.first()?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

fn scrape_config(c: &Cluster, token: &str, ca: &Path) -> String {
    let api = c.server.url.trim_start_matches("https://");
    let node = c.node(NODE);
    let registry = c.registry();
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: apiserver
    scheme: https
    tls_config:
      ca_file: {ca}
    authorization:
      credentials: "{token}"
    static_configs:
      - targets: ["{api}"]
  - job_name: node
    scheme: http
    authorization:
      credentials: "{node_token}"
    static_configs:
      - targets: ["{node_addr}"]
  - job_name: node-through-apiserver
    scheme: https
    metrics_path: /api/v1/nodes/{NODE}/proxy/metrics
    tls_config:
      ca_file: {ca}
    authorization:
      credentials: "{token}"
    static_configs:
      - targets: ["{api}"]
  - job_name: registry
    scheme: http
    basic_auth:
      username: prometheus
      password: "{registry_token}"
    static_configs:
      - targets: ["{registry_addr}"]
"#,
        ca = ca.display(),
        node_token = node.token,
        node_addr = node.addr,
        registry_token = registry.token,
        registry_addr = registry.addr,
    )
}

fn prometheus_binary() -> Option<PathBuf> {
    skiff_tools::require(
        "prometheus",
        Some(PathBuf::from("/usr/bin/prometheus")),
        "run scripts/install-test-deps.sh (Debian's prometheus package)",
    )
}

#[tokio::test]
async fn prometheus_scrapes_the_api_server_a_node_and_the_registry() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let Some(c) = Cluster::builder()
        .push("load/load.wasm", "samples/load:1.0")
        .node(NODE, &[])
        .start()
        .await
    else {
        return;
    };
    // A pod on the node, so that its per-pod series exist.
    let image = format!("{}/samples/load:1.0", c.registry().addr);
    let pod: Pod = serde_yaml::from_str(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: load
spec:
  nodeName: {NODE}
  containers:
  - name: app
    image: {image}
    ports: [{{containerPort: 8080}}]
"#
    ))
    .expect("a pod");
    c.pods("default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod created");
    wait_object(&c.pods("default"), "load", "to be Ready", WAIT, |p| {
        p.is_some_and(is_ready)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));

    // The node's /metrics is behind its endpoint's authentication, like every route there.
    let node = c.node(NODE);
    let (status, _) = node.request("/metrics", None).expect("the node answers");
    assert_eq!(status, 401, "no token");
    let token = c.server.token().expect("the admin token");
    let (status, body) = node
        .request("/metrics", Some(&token))
        .expect("the node answers");
    assert_eq!(
        status, 403,
        "a user's token is not the API server's credential: {body}"
    );
    let ca = c.server.dir.join("pki").join("ca.crt");
    assert!(ca.exists(), "the cluster CA at {}", ca.display());
    let prometheus = Prometheus::start(&binary, &scrape_config(&c, &token, &ca));

    let up = wait_for("every target up", WAIT, || async {
        let answer = prometheus.api("/api/v1/targets").await?;
        let active = answer["data"]["activeTargets"].as_array()?.clone();
        (active.len() == 4 && active.iter().all(|t| t["health"] == "up")).then_some(active)
    })
    .await;
    if let Err(e) = up {
        let last = prometheus.api("/api/v1/targets").await;
        panic!(
            "{e:#}\ntargets: {}\nprometheus log:\n{}",
            serde_json::to_string_pretty(&last).unwrap_or_default(),
            prometheus.log()
        );
    }

    for (query, what) in [
        (
            r#"apiserver_request_total{job="apiserver",resource="pods",verb="POST",code="201"}"#,
            "the API server's requests by verb, resource and code",
        ),
        (
            r#"apiserver_request_duration_seconds_count{job="apiserver"}"#,
            "the API server's latency histogram",
        ),
        (
            r#"apiserver_storage_size_bytes{job="apiserver"}"#,
            "the store's size",
        ),
        (
            r#"controller_runtime_reconcile_total{job="apiserver"}"#,
            "the in-process controllers' reconciles, on the API server's /metrics",
        ),
        (
            r#"kubelet_running_pods{job="node"}"#,
            "the node's running pods",
        ),
        (
            r#"skiff_node_pods{job="node",phase="Running"}"#,
            "the node's pods by phase",
        ),
        (
            r#"skiff_container_starts_total{job="node",namespace="default",pod="load"}"#,
            "the pod's container starts",
        ),
        (
            r#"kubelet_running_pods{job="node-through-apiserver"}"#,
            "the node's metrics through nodes/proxy",
        ),
        (
            r#"registry_http_requests_total{job="registry",handler="manifest",method="PUT",code="201"}"#,
            "the registry's requests",
        ),
        (
            r#"skiff_registry_manifest_pushes_total{job="registry"}"#,
            "the registry's pushes",
        ),
    ] {
        let path = format!("/api/v1/query?query={}", encode(query));
        let value = wait_for(what, WAIT, || async {
            first_value(&prometheus.api(&path).await?)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}: {query}\n{}", prometheus.log()));
        assert!(value >= 1.0, "{what}: {query} = {value}");
    }
    c.shutdown().await;
}

/// Percent-encodes a query for a URL.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
