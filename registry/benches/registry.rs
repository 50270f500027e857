//! Registry benchmark: Skiff's registry against Debian's `docker-registry` (distribution 2.8)
//! on loopback, in one run. Push and pull of 10 MiB and 100 MiB blobs (MB/s), manifest GET
//! latency (p50/p99), and 64 concurrent pulls of one manifest. Prints a table with the ratio.
//!
//! Run: `cargo bench -p skiff-registry --bench registry`. The Skiff registry runs in-process on
//! its own runtime; `docker-registry` runs as a child process (skipped if not installed). The
//! same HTTP client drives both.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use skiff_registry::{Digest, RegistryConfig};

const ROUNDS: usize = 5;
const MANIFEST_GETS: usize = 2000;
const CONCURRENT: usize = 64;
const CONCURRENT_ROUNDS: usize = 30;

struct Target {
    name: &'static str,
    base: String,
    auth: Option<String>,
}

#[derive(Default, Clone)]
struct Results {
    push_10: f64,
    pull_10: f64,
    push_100: f64,
    pull_100: f64,
    manifest_p50_us: f64,
    manifest_p99_us: f64,
    concurrent_p50_ms: f64,
    concurrent_rps: f64,
}

fn main() {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let handle = server_rt
        .block_on(skiff_registry::start(
            "127.0.0.1:0".parse().expect("addr"),
            RegistryConfig::new(dir.path().join("skiff")),
        ))
        .expect("skiff registry starts");
    let skiff = Target {
        name: "skiff",
        base: format!("http://{}", handle.local_addr()),
        auth: Some(format!("Bearer {}", handle.token())),
    };
    let reference = start_docker_registry(dir.path());

    let skiff_results = client_rt.block_on(bench(&skiff));
    let ref_results = reference.as_ref().map(|(_, addr)| {
        let t = Target {
            name: "docker-registry",
            base: format!("http://{addr}"),
            auth: None,
        };
        client_rt.block_on(bench(&t))
    });

    print_table(&skiff_results, ref_results.as_ref());
    if let Some((mut child, _)) = reference {
        let _ = child.kill();
        let _ = child.wait();
    }
    server_rt
        .block_on(handle.shutdown(Duration::from_secs(5)))
        .expect("shutdown");
}

fn start_docker_registry(dir: &std::path::Path) -> Option<(std::process::Child, SocketAddr)> {
    let bin = std::path::Path::new("/usr/bin/docker-registry");
    if !bin.exists() {
        eprintln!(
            "SKIPPED reference: /usr/bin/docker-registry is not installed (apt-get install docker-registry)"
        );
        return None;
    }
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let cfg = dir.join("docker-registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("reference").display()
        ),
    )
    .expect("config");
    let child = std::process::Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker-registry starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((child, addr))
}

fn req(
    t: &Target,
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
) -> reqwest::RequestBuilder {
    let r = http.request(method, url);
    match &t.auth {
        Some(a) => r.header("Authorization", a),
        None => r,
    }
}

fn absolute(t: &Target, loc: &str) -> String {
    if loc.starts_with("http") {
        loc.to_string()
    } else {
        format!("{}{loc}", t.base)
    }
}

async fn push_blob(t: &Target, http: &reqwest::Client, repo: &str, data: bytes::Bytes) -> Digest {
    let d = Digest::sha256_of(&data);
    let r = req(
        t,
        http,
        reqwest::Method::POST,
        &format!("{}/v2/{repo}/blobs/uploads/", t.base),
    )
    .send()
    .await
    .expect("POST upload");
    assert_eq!(r.status(), 202, "{}: start upload", t.name);
    let loc = absolute(t, r.headers()["location"].to_str().expect("location"));
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = req(
        t,
        http,
        reqwest::Method::PUT,
        &format!("{loc}{sep}digest={d}"),
    )
    .header("Content-Type", "application/octet-stream")
    .body(data)
    .send()
    .await
    .expect("PUT upload");
    assert_eq!(r.status(), 201, "{}: finish upload", t.name);
    d
}

async fn pull_blob(t: &Target, http: &reqwest::Client, repo: &str, d: &Digest) -> usize {
    let mut r = req(
        t,
        http,
        reqwest::Method::GET,
        &format!("{}/v2/{repo}/blobs/{d}", t.base),
    )
    .send()
    .await
    .expect("GET blob");
    assert_eq!(r.status(), 200);
    let mut n = 0;
    while let Some(chunk) = r.chunk().await.expect("body") {
        n += chunk.len();
    }
    n
}

fn data(size: usize, seed: u8) -> bytes::Bytes {
    let mut v = vec![0u8; size];
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    for b in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    v.into()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn blob_rates(t: &Target, http: &reqwest::Client, size: usize, seed: u8) -> (f64, f64) {
    let mb = size as f64 / 1_000_000.0;
    let mut push = Vec::new();
    let mut pull = Vec::new();
    for round in 0..ROUNDS {
        let body = data(size, seed.wrapping_add(round as u8));
        let start = Instant::now();
        let d = push_blob(t, http, "bench/blob", body).await;
        push.push(mb / start.elapsed().as_secs_f64());
        let start = Instant::now();
        let n = pull_blob(t, http, "bench/blob", &d).await;
        assert_eq!(n, size);
        pull.push(mb / start.elapsed().as_secs_f64());
    }
    (median(push), median(pull))
}

async fn bench(t: &Target) -> Results {
    eprintln!("benchmarking {} at {}", t.name, t.base);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .expect("http client");
    let mut res = Results::default();
    // Warm up connections and file system paths.
    push_blob(t, &http, "bench/warm", data(1 << 20, 200)).await;
    (res.push_10, res.pull_10) = blob_rates(t, &http, 10 << 20, 1).await;
    (res.push_100, res.pull_100) = blob_rates(t, &http, 100 << 20, 50).await;

    // A small image to fetch the manifest of.
    let config = push_blob(t, &http, "bench/app", bytes::Bytes::from_static(b"{}")).await;
    let layer = push_blob(t, &http, "bench/app", data(4096, 99)).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 4096}],
    })
    .to_string();
    let r = req(
        t,
        &http,
        reqwest::Method::PUT,
        &format!("{}/v2/bench/app/manifests/v1", t.base),
    )
    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    .body(manifest)
    .send()
    .await
    .expect("PUT manifest");
    assert_eq!(r.status(), 201, "{}: manifest", t.name);
    let url = format!("{}/v2/bench/app/manifests/v1", t.base);
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let mut lat = Vec::with_capacity(MANIFEST_GETS);
    for i in 0..MANIFEST_GETS + 100 {
        let start = Instant::now();
        let r = http
            .get(&url)
            .header("Accept", accept)
            .send()
            .await
            .expect("GET manifest");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("manifest body");
        if i >= 100 {
            lat.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    res.manifest_p50_us = percentile(&lat, 0.50);
    res.manifest_p99_us = percentile(&lat, 0.99);

    let mut rounds = Vec::new();
    let all = Instant::now();
    for _ in 0..CONCURRENT_ROUNDS {
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(CONCURRENT);
        for _ in 0..CONCURRENT {
            let http = http.clone();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let r = http
                    .get(&url)
                    .header("Accept", accept)
                    .send()
                    .await
                    .expect("GET manifest");
                assert_eq!(r.status(), 200);
                r.bytes().await.expect("body").len()
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        rounds.push(start.elapsed().as_secs_f64() * 1e3);
    }
    res.concurrent_rps = (CONCURRENT * CONCURRENT_ROUNDS) as f64 / all.elapsed().as_secs_f64();
    res.concurrent_p50_ms = median(rounds);
    res
}

fn print_table(s: &Results, r: Option<&Results>) {
    // (label, skiff, reference, higher is better)
    let rows: Vec<(&str, f64, Option<f64>, bool)> = vec![
        (
            "push 10 MiB blob (MB/s)",
            s.push_10,
            r.map(|r| r.push_10),
            true,
        ),
        (
            "pull 10 MiB blob (MB/s)",
            s.pull_10,
            r.map(|r| r.pull_10),
            true,
        ),
        (
            "push 100 MiB blob (MB/s)",
            s.push_100,
            r.map(|r| r.push_100),
            true,
        ),
        (
            "pull 100 MiB blob (MB/s)",
            s.pull_100,
            r.map(|r| r.pull_100),
            true,
        ),
        (
            "manifest GET p50 (µs)",
            s.manifest_p50_us,
            r.map(|r| r.manifest_p50_us),
            false,
        ),
        (
            "manifest GET p99 (µs)",
            s.manifest_p99_us,
            r.map(|r| r.manifest_p99_us),
            false,
        ),
        (
            "64 concurrent manifest pulls, p50 per batch (ms)",
            s.concurrent_p50_ms,
            r.map(|r| r.concurrent_p50_ms),
            false,
        ),
        (
            "64 concurrent manifest pulls (req/s)",
            s.concurrent_rps,
            r.map(|r| r.concurrent_rps),
            true,
        ),
    ];
    println!("| metric | skiff | docker-registry 2.8 | skiff advantage (×, >1 = skiff better) |");
    println!("|---|---:|---:|---:|");
    for (label, sv, rv, higher_better) in rows {
        match rv {
            Some(rv) => {
                let adv = if higher_better { sv / rv } else { rv / sv };
                println!("| {label} | {sv:.1} | {rv:.1} | {adv:.2} |");
            }
            None => println!("| {label} | {sv:.1} | – | – |"),
        }
    }
}
