//! `skiff deploy` on `skiff up` end to end: the printed URL answers 200 through the ingress
//! (curl resolves `*.localhost` to loopback itself); deploying hello-http-v2 under the same
//! name changes the answer with no failed request on the way; `--delete` removes the app; bad
//! input and a missing cluster get clear errors.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use skiff_tests::{client, http_request, repo_root, skiff_bin, start_up};

/// Runs `skiff deploy ARGS` with a private HOME and cache; whatever it returns.
fn deploy(home: &Path, args: &[&str]) -> Output {
    Command::new(skiff_bin())
        .arg("deploy")
        .args(args)
        .env("HOME", home)
        .env("SKIFF_CACHE_DIR", home.join("cache"))
        .env_remove("KUBECONFIG")
        .env_remove("SKIFF_REGISTRY_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("skiff deploy runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiff_deploy_prints_a_url_that_answers_and_redeploys_without_a_failed_request() {
    let dir = tempfile::Builder::new()
        .prefix("skiff-e2e-deploy-")
        .tempdir()
        .unwrap();
    // No Linux containers: their bridge and addresses live on the host, shared by tests.
    let (_up, kubeconfig, ingress) = start_up(dir.path());
    let show_log = || std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    let port = ingress.rsplit_once(':').unwrap().1.to_string();
    assert_ne!(port, "0", "the ready file names the bound ingress port");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let samples = repo_root().join("samples");
    let v1 = samples.join("hello-http/hello-http.wasm");
    let v2 = samples.join("hello-http/hello-http-v2.wasm");

    // Deploy: the last line of stdout is the URL, and curl gets 200 from it.
    let out = deploy(
        &home,
        &[
            v1.to_str().unwrap(),
            "--name",
            "hello",
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), show_log());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = stdout.lines().last().unwrap_or_default().to_string();
    assert_eq!(
        url,
        format!("http://hello.localhost:{port}/"),
        "{}",
        text(&out)
    );
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}", &url])
        .output()
        .expect("curl runs");
    let answer = String::from_utf8_lossy(&curl.stdout);
    assert_eq!(answer, "Hello from Skiff!\n\n200", "{}", text(&curl));

    let kube = client::client(Path::new(&kubeconfig)).await.unwrap();
    let d = Api::<Deployment>::namespaced(kube.clone(), "default")
        .get("hello")
        .await
        .unwrap();
    let managers: Vec<String> = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.iter().any(|m| m == "skiff"), "{managers:?}");
    let image = d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert!(image.contains("@sha256:"), "pinned by digest: {image}");

    // Redeploy v2 under load: every request answers 2xx and the answer changes.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (stop, ingress) = (stop.clone(), ingress.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failures, mut last) = (0usize, Vec::new(), String::new());
            let start = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                match http_request(&ingress, "hello.localhost", "/", Duration::from_secs(30)) {
                    Ok(a) if (200..300).contains(&a.status) => {
                        ok += 1;
                        last = a.body;
                    }
                    Ok(a) => {
                        failures.push(format!("{:?}: {} {}", start.elapsed(), a.status, a.body))
                    }
                    Err(e) => failures.push(format!("{:?}: {e:#}", start.elapsed())),
                }
                std::thread::sleep(Duration::from_millis(3));
            }
            (ok, failures, last)
        })
    };
    let out = deploy(
        &home,
        &[
            v2.to_str().unwrap(),
            "--name",
            "hello",
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), show_log());
    // The old pod drains while the load goes on.
    let api = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(kube.clone(), "default");
    skiff_tests::wait_for(
        "the old pod of hello to go",
        Duration::from_secs(120),
        || {
            let api = api.clone();
            async move {
                let pods = api
                    .list(&kube::api::ListParams::default().labels("app=hello"))
                    .await
                    .ok()?;
                (pods.items.len() == 1).then_some(())
            }
        },
    )
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let (ok, failures, last) = tokio::task::spawn_blocking(move || loader.join().unwrap())
        .await
        .unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the redeploy:\n{}",
        failures.len(),
        ok + failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    assert_eq!(last, "Hello from Skiff v2!\n");

    // --delete removes the three objects and says so.
    let out = deploy(
        &home,
        &["--delete", "--name", "hello", "--kubeconfig", &kubeconfig],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for kind in ["deployment.apps", "service", "ingress.networking.k8s.io"] {
        assert!(
            stdout.contains(&format!("{kind}/hello deleted")),
            "{stdout}"
        );
    }
    assert!(
        Api::<Service>::namespaced(kube.clone(), "default")
            .get_opt("hello")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        Api::<Ingress>::namespaced(kube.clone(), "default")
            .get_opt("hello")
            .await
            .unwrap()
            .is_none()
    );

    // --scale-to-zero: the app goes to zero pods when idle and the next request still gets 200.
    let frontend = samples.join("frontend/frontend.wasm");
    let out = deploy(
        &home,
        &[
            frontend.to_str().unwrap(),
            "--name",
            "lazy",
            "--scale-to-zero",
            "--scale-to-zero-idle",
            "2s",
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), show_log());
    let lazy_url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(lazy_url, format!("http://lazy.localhost:{port}/"));
    skiff_tests::wait_object(
        &Api::<Deployment>::namespaced(kube.clone(), "default"),
        "lazy",
        "to go to zero replicas when idle",
        Duration::from_secs(120),
        |d: Option<&Deployment>| {
            d.and_then(|d| d.spec.as_ref()?.replicas) == Some(0)
                && d.and_then(|d| d.status.as_ref()?.replicas).unwrap_or(0) == 0
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", show_log()));
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-w", "\n%{http_code}", &lazy_url])
        .output()
        .expect("curl runs");
    let answer = String::from_utf8_lossy(&curl.stdout);
    assert!(
        answer.starts_with("lazy-") && answer.ends_with("\n200"),
        "{}",
        text(&curl)
    );

    // Bad input: clear errors, non-zero exit.
    let not_wasm = samples.join("testdata/not-wasm.wasm");
    let out = deploy(
        &home,
        &[
            not_wasm.to_str().unwrap(),
            "--name",
            "bad",
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is not a wasm component"),
        "{}",
        text(&out)
    );
    let out = deploy(
        &home,
        &[
            "/no/such.wasm",
            "--name",
            "bad",
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    assert!(
        !out.status.success() && text(&out).contains("no such file"),
        "{}",
        text(&out)
    );
    // A component that never becomes ready: the rollout fails with the pod's reason.
    let server_wasm = samples.join("fileserver/server.wasm");
    let out = deploy(
        &home,
        &[
            server_wasm.to_str().unwrap(),
            "--name",
            "files",
            "--timeout",
            "10s",
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    assert!(
        !out.status.success()
            && text(&out).contains("the rollout did not finish in time: pod files-")
            && text(&out).contains("Readiness probe failed"),
        "{}",
        text(&out)
    );
    // A kubeconfig whose server is gone.
    let gone = dir.path().join("gone.kubeconfig");
    let cfg = std::fs::read_to_string(&kubeconfig).unwrap();
    let server = cfg
        .lines()
        .find_map(|line| line.trim().strip_prefix("server: "))
        .expect("the kubeconfig names its server")
        .to_string();
    std::fs::write(&gone, cfg.replace(&server, "https://127.0.0.1:1")).unwrap();
    let out = deploy(
        &home,
        &[
            v1.to_str().unwrap(),
            "--name",
            "hello",
            "--kubeconfig",
            gone.to_str().unwrap(),
        ],
    );
    assert!(
        !out.status.success() && text(&out).contains("no cluster"),
        "{}",
        text(&out)
    );
}
