//! `skiff bench top`: the latency of `kubectl top pods -A` — a list of `metrics.k8s.io` PodMetrics
//! across all namespaces — over many pods on simulated nodes, each of which answers
//! `/stats/summary` with a canned summary of its pods. Cold (every node's summary fetched) and
//! warm (within the API server's one-second summary cache), median and p99.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http::Request;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bench::{client_for, machine_description, ms, percentile, publish};

#[derive(clap::Args)]
pub(crate) struct TopBenchArgs {
    /// Directory for the server's data; a fresh one is made inside it.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Simulated nodes, each serving a summary of its pods.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Pods, spread evenly over the nodes and over 10 namespaces.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Lists measured in each of the cold and warm series.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Append the results to this Markdown file.
    #[arg(long)]
    append: Option<PathBuf>,
}

const NAMESPACES: usize = 10;

fn namespace(n: usize) -> String {
    format!("top-{}", n % NAMESPACES)
}

/// The canned summary of node `node` (pods `n` with `n % nodes == node`).
fn summary(node: usize, nodes: usize, pods: usize) -> Vec<u8> {
    let t = "2026-01-01T00:00:00Z";
    let pods: Vec<serde_json::Value> = (0..pods)
        .filter(|n| n % nodes == node)
        .map(|n| {
            json!({
                "podRef": {"name": format!("pod-{n}"), "namespace": namespace(n), "uid": ""},
                "containers": [{"name": "app",
                    "cpu": {"time": t, "usageNanoCores": 1_000_000 + n as u64, "usageCoreNanoSeconds": 1_000_000_000u64},
                    "memory": {"time": t, "workingSetBytes": (1u64 << 20) + n as u64 * 4096}}],
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "node": {"nodeName": format!("top-node-{node}"),
                 "cpu": {"time": t, "usageNanoCores": 500_000_000u64},
                 "memory": {"time": t, "workingSetBytes": 1u64 << 30}},
        "pods": pods,
    }))
    .expect("a summary")
}

/// A minimal HTTP/1.1 server on loopback answering every request with `body` (keep-alive);
/// returns its port.
async fn serve_summary(body: Arc<Vec<u8>>) -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    buf.drain(..end + 4);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if conn.write_all(head.as_bytes()).await.is_err()
                        || conn.write_all(&body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

pub(crate) async fn run(args: TopBenchArgs) -> Result<()> {
    anyhow::ensure!(args.nodes > 0, "--nodes must be at least 1");
    std::fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-bench-top-")
        .tempdir_in(&args.dir)?;
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data)?;
    let server = skiff_api::start(skiff_api::ServerOptions::new(&data, "127.0.0.1:0".parse()?))
        .await
        .context("starting the server")?;
    let kubeconfig = server.kubeconfig_path.clone();
    let client = client_for(&kubeconfig).await?;
    let send = |method: http::Method, path: String, ct: &'static str, body: serde_json::Value| {
        let client = client.clone();
        async move {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("Content-Type", ct)
                .body(serde_json::to_vec(&body)?)?;
            client.request_text(req).await?;
            anyhow::Ok(())
        }
    };
    for ns in 0..NAMESPACES {
        send(
            http::Method::POST,
            "/api/v1/namespaces".into(),
            "application/json",
            json!({"metadata": {"name": namespace(ns)}}),
        )
        .await?;
    }
    println!("{} simulated nodes", args.nodes);
    for node in 0..args.nodes {
        let port = serve_summary(Arc::new(summary(node, args.nodes, args.pods))).await?;
        let name = format!("top-node-{node}");
        send(
            http::Method::POST,
            "/api/v1/nodes".into(),
            "application/json",
            json!({"metadata": {"name": name}}),
        )
        .await?;
        send(
            http::Method::PATCH,
            format!("/api/v1/nodes/{name}/status"),
            "application/merge-patch+json",
            json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            }}),
        )
        .await?;
    }
    println!("creating {} pods", args.pods);
    let started = Instant::now();
    let writers = 64;
    let per = args.pods.div_ceil(writers);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = client_for(&kubeconfig).await?;
        let (total, nodes) = (args.pods, args.nodes);
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let n = w * per + i;
                if n >= total {
                    break;
                }
                let pod = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("pod-{n}"), "labels": {"app": "top"}},
                    "spec": {"nodeName": format!("top-node-{}", n % nodes),
                             "containers": [{"name": "app", "image": "example/app:1"}]}});
                let req = Request::post(format!("/api/v1/namespaces/{}/pods", namespace(n)))
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(&pod)?)?;
                client.request_text(req).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!("created in {:.1} s", started.elapsed().as_secs_f64());

    let list = || async {
        let t = Instant::now();
        let body = client
            .request_text(Request::get("/apis/metrics.k8s.io/v1beta1/pods").body(Vec::new())?)
            .await?;
        let elapsed = t.elapsed();
        let items = serde_json::from_str::<serde_json::Value>(&body)?["items"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        anyhow::Ok((elapsed, items, body.len()))
    };
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut seen = (0, 0);
    for _ in 0..args.rounds {
        // Past the cache's second: every node's summary is fetched again.
        tokio::time::sleep(skiff_api::metricsapi::SUMMARY_TTL + Duration::from_millis(100)).await;
        let (d, items, bytes) = list().await?;
        cold.push(d);
        seen = (items, bytes);
        let (d, _, _) = list().await?;
        warm.push(d);
    }
    anyhow::ensure!(
        seen.0 == args.pods,
        "the list had {} PodMetrics, not {}",
        seen.0,
        args.pods
    );
    cold.sort();
    warm.sort();
    let rows = [
        (
            format!(
                "`metrics.k8s.io` list of {} pods on {} nodes, cold (every summary fetched)",
                args.pods, args.nodes
            ),
            format!(
                "median {} ms, p99 {} ms of {} ({:.1} MB)",
                ms(percentile(&cold, 0.5)),
                ms(percentile(&cold, 0.99)),
                cold.len(),
                seen.1 as f64 / 1e6
            ),
        ),
        (
            "the same list, warm (summaries from the 1 s cache)".to_string(),
            format!(
                "median {} ms, p99 {} ms of {}",
                ms(percentile(&warm, 0.5)),
                ms(percentile(&warm, 0.99)),
                warm.len()
            ),
        ),
    ];
    server.shutdown().await;

    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z").to_string();
    let mut md = format!(
        "\n### kubectl top — {date}\n\nCommand: `skiff bench top --nodes {} --pods {} --rounds {}` ({} build)  \nMachine: {}\n\n| measure | result |\n|---|---|\n",
        args.nodes,
        args.pods,
        args.rounds,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        machine_description()
    );
    for (k, v) in &rows {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    publish(&md, args.append.as_deref())
}
