//! `skiff bench fairness`: one user floods the API server with concurrent LISTs while another
//! does sequential GETs; reports the second user's GET p50/p99 and the flooding user's 429
//! rate, with fairness on (bounded in flight, per-user queues) and off
//! (`--max-requests-inflight 0`), side by side. The server runs in process over HTTPS on
//! loopback; both users are `--token-auth-file` users (not exempt).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http::Request;
use serde_json::json;

use crate::bench::{machine_description, ms, percentile, publish};

#[derive(clap::Args)]
pub(crate) struct FairnessBenchArgs {
    /// Concurrent request loops of the flooding user.
    #[arg(long, default_value_t = 400)]
    flood: usize,
    /// `--max-requests-inflight` of the runs with fairness on, one run each.
    #[arg(long, value_delimiter = ',', default_value = "100,4")]
    inflight: Vec<usize>,
    /// Requests of one user queued at most (fairness on).
    #[arg(long, default_value_t = 50)]
    queue: usize,
    /// ConfigMaps in the namespace the flood lists.
    #[arg(long, default_value_t = 200)]
    objects: usize,
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Directory for the servers' data directories.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Append the results to this Markdown file.
    #[arg(long)]
    append: Option<PathBuf>,
}

/// What one run measured.
struct Outcome {
    b_p50: Duration,
    b_p99: Duration,
    b_max: Duration,
    b_requests: usize,
    b_failures: usize,
    a_ok: u64,
    a_429: u64,
    a_errors: u64,
    /// Requests the server answered 429 (clients may retry them on their own).
    server_429: u64,
}

/// A kube client of `token`, from the admin kubeconfig with its token replaced.
async fn client_as(
    admin_kubeconfig: &Path,
    admin_token: &str,
    token: &str,
) -> Result<kube::Client> {
    let text = std::fs::read_to_string(admin_kubeconfig)?;
    let kc = kube::config::Kubeconfig::from_yaml(&text.replace(admin_token, token))
        .context("reading the admin kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn one_run(args: &FairnessBenchArgs, base: &Path, inflight: usize) -> Result<Outcome> {
    let fairness_on = inflight > 0;
    let data = base.join(format!("inflight-{inflight}"));
    std::fs::create_dir_all(&data)?;
    let tokens = base.join("tokens.csv");
    std::fs::write(
        &tokens,
        "flood-token,flooder,uid-a\nsteady-token,steady,uid-b\n",
    )?;
    let mut opts = skiff_api::ServerOptions::new(&data, "127.0.0.1:0".parse()?);
    opts.token_auth_file = Some(tokens);
    // Both users may read everything: the bench measures fairness, not authorization.
    opts.authorization_modes = vec![skiff_api::AuthorizationMode::AlwaysAllow];
    opts.fairness = skiff_api::fairness::FairnessOptions {
        max_requests_inflight: inflight,
        max_mutating_requests_inflight: if fairness_on { inflight.div_ceil(2) } else { 0 },
        queue_length_per_user: args.queue,
        ..Default::default()
    };
    let server = skiff_api::start(opts)
        .await
        .context("starting the server")?;
    let admin = crate::bench::client_for(&server.kubeconfig_path).await?;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}});
    admin
        .request_text(
            Request::post("/api/v1/namespaces")
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&ns)?)?,
        )
        .await?;
    for i in 0..args.objects.max(1) {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}")}, "data": {"key": "value"}});
        admin
            .request_text(
                Request::post("/api/v1/namespaces/bench/configmaps")
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(&cm)?)?,
            )
            .await?;
    }

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let (a_ok, a_429, a_errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    // The flood: loops sharing one client per 10 (each client pools its own connections);
    // a 429 waits its Retry-After (1 s) as client-go does.
    let mut flood = Vec::new();
    let mut client = None;
    for i in 0..args.flood {
        if i % 10 == 0 {
            client =
                Some(client_as(&server.kubeconfig_path, &server.admin_token, "flood-token").await?);
        }
        let Some(client) = client.clone() else {
            continue;
        };
        let (ok, too_many, errors) = (a_ok.clone(), a_429.clone(), a_errors.clone());
        flood.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let req = Request::get("/api/v1/namespaces/bench/configmaps")
                    .body(Vec::new())
                    .expect("a valid request");
                match client.request_text(req).await {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(kube::Error::Api(status)) if status.code == 429 => {
                        too_many.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(err) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("first failed LIST of the flooding user: {err}");
                        }
                    }
                }
            }
        }));
    }
    // The steady user: sequential GETs of one object, after the flood has ramped up.
    let steady = client_as(&server.kubeconfig_path, &server.admin_token, "steady-token").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = Vec::new();
    let mut failures = 0;
    while Instant::now() < deadline {
        let req = Request::get("/api/v1/namespaces/bench/configmaps/cm-0").body(Vec::new())?;
        let t = Instant::now();
        match steady.request_text(req).await {
            Ok(_) => samples.push(t.elapsed()),
            Err(err) => {
                if failures == 0 {
                    eprintln!("first failed GET of the steady user: {err}");
                }
                failures += 1;
            }
        }
    }
    for task in flood {
        let _ = task.await;
    }
    let server_429 = server.fairness.rejected();
    server.shutdown().await;
    samples.sort();
    Ok(Outcome {
        b_p50: percentile(&samples, 0.5),
        b_p99: percentile(&samples, 0.99),
        b_max: samples.last().copied().unwrap_or_default(),
        b_requests: samples.len(),
        b_failures: failures,
        a_ok: a_ok.load(Ordering::Relaxed),
        a_429: a_429.load(Ordering::Relaxed),
        a_errors: a_errors.load(Ordering::Relaxed),
        server_429,
    })
}

/// The fast path's cost: a slot taken and given back when the server is not busy, in
/// nanoseconds per request (one thread, no contention).
async fn fast_path_ns() -> Result<f64> {
    let fairness = skiff_api::fairness::Fairness::new(Default::default());
    let rounds = 1_000_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        let permit = fairness
            .acquire("user", false)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        drop(permit);
    }
    Ok(start.elapsed().as_nanos() as f64 / f64::from(rounds))
}

pub(crate) async fn run(args: FairnessBenchArgs) -> Result<()> {
    let fast_path = fast_path_ns().await?;
    println!("fast path (not busy): {fast_path:.0} ns per request");
    std::fs::create_dir_all(&args.dir)?;
    let tmp = tempfile::Builder::new()
        .prefix("skiff-bench-fairness-")
        .tempdir_in(&args.dir)?;
    let mut rows = Vec::new();
    let runs: Vec<usize> = args
        .inflight
        .iter()
        .copied()
        .filter(|n| *n > 0)
        .chain([0])
        .collect();
    for inflight in runs {
        let outcome = one_run(&args, tmp.path(), inflight).await?;
        let label = if inflight > 0 {
            format!(
                "on (--max-requests-inflight {inflight}, queue {} per user)",
                args.queue
            )
        } else {
            "off (--max-requests-inflight 0)".to_string()
        };
        let a_total = outcome.a_ok + outcome.a_429 + outcome.a_errors;
        let rate = if a_total == 0 {
            0.0
        } else {
            outcome.a_429 as f64 * 100.0 / a_total as f64
        };
        println!(
            "fairness {label}: B GET p50 {} ms, p99 {} ms, max {} ms ({} GETs, {} failed); A {} ok, {} 429 seen by the client ({rate:.1}%), {} other errors; server 429s {}",
            ms(outcome.b_p50),
            ms(outcome.b_p99),
            ms(outcome.b_max),
            outcome.b_requests,
            outcome.b_failures,
            outcome.a_ok,
            outcome.a_429,
            outcome.a_errors,
            outcome.server_429,
        );
        rows.push(format!(
            "| {label} | {} | {} | {} | {} ({} failed) | {:.0}/s | {} | {} ({rate:.1}%) |\n",
            ms(outcome.b_p50),
            ms(outcome.b_p99),
            ms(outcome.b_max),
            outcome.b_requests,
            outcome.b_failures,
            outcome.a_ok as f64 / args.seconds as f64,
            outcome.server_429,
            outcome.a_429,
        ));
    }
    let date = jiff::Zoned::now().strftime("%Y-%m-%d %H:%M %Z").to_string();
    let mut md = format!(
        "\n### Fairness — {date}\n\nCommand: `skiff bench fairness --flood {} --inflight {} --queue {} --objects {} --seconds {}` ({} build; server, flood and steady client in one process)  \nMachine: {}\n\nUser A runs {} concurrent LIST loops of {} ConfigMaps (a 429 waits its Retry-After); user B GETs one ConfigMap sequentially.\n\n| fairness | B GET p50 ms | B GET p99 ms | B GET max ms | B GETs | A LISTs served | 429s sent by the server | 429s reaching A (kube-rs retries them) |\n|---|---|---|---|---|---|---|---|\n",
        args.flood,
        args.inflight
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.queue,
        args.objects,
        args.seconds,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        machine_description(),
        args.flood,
        args.objects,
    );
    for row in rows {
        md.push_str(&row);
    }
    md.push_str(&format!(
        "\nFast path (not busy: one compare-and-swap to take a slot, one subtraction to give it back, no lock): {fast_path:.0} ns per request, one thread.\n"
    ));
    publish(&md, args.append.as_deref())
}
