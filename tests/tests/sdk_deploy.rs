//! The SDK end to end on `skiff up`: the issue's two-component `skiff.toml`, verbatim, builds and
//! deploys; its frontend answers through the ingress and reaches the backend by name; the objects
//! carry the app's labels; `skiff deploy --dry-run -o yaml` applied by kubectl gives the same
//! objects (a later deploy leaves their labels and specs as they are); `skiff apps` lists it; removing a component and
//! redeploying deletes its objects; an invalid manifest names file, line and field; `skiff delete`
//! removes the app; the SDK's example program (`sdk/examples/deploy.rs`), compiled into this
//! test, deploys an app built in Rust code; and the counter sample deploys from its own
//! `skiff.toml`, its keyvalue count surviving a backend pod's replacement and a changed config
//! value reaching the running frontend; another app on the counter's route is refused.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use serde_json::Value;
use skiff_tests::{client, http_request, repo_root, skiff_bin, start_up, tools};

#[allow(dead_code)]
#[path = "../../sdk/examples/deploy.rs"]
mod example;

/// The issue's manifest, as written there.
const SHOP: &str = r#"[app]
name = "shop"

[[component]]
name = "frontend"
source = "frontend.wasm"
route = "/"
env = { GREETING = "hi" }

[[component]]
name = "backend"
source = "backend.wasm"
replicas = 2
"#;

/// Runs `skiff ARGS` in `dir` with a private HOME and cache.
fn skiff(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(skiff_bin())
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("SKIFF_CACHE_DIR", home.join("cache"))
        .env_remove("KUBECONFIG")
        .env_remove("SKIFF_REGISTRY_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("skiff runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Each Deployment's name, labels and spec (as stored, defaults filled in).
fn specs(list: &[Deployment]) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = list
        .iter()
        .map(|d| {
            (
                d.metadata.name.clone().unwrap_or_default(),
                serde_json::json!({"labels": d.metadata.labels, "spec": d.spec}),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_manifest_deploys_reaches_its_backend_and_prunes() {
    let Some(kubectl) = tools::kubectl() else {
        return; // SKIPPED printed by the tool policy
    };
    let dir = tempfile::Builder::new()
        .prefix("skiff-e2e-sdk-")
        .tempdir()
        .unwrap();
    let (_up, kubeconfig, ingress) = start_up(dir.path());
    let show_log = || std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let kube = client::client(Path::new(&kubeconfig)).await.unwrap();
    let kubectl_run = |args: &[&str], stdin: Option<&str>| -> Output {
        let mut cmd = Command::new(&kubectl);
        cmd.arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.path().join("kube-cache"))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(input) = stdin {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    };

    // The app directory: the issue's manifest and two committed components.
    let app_dir = dir.path().join("shop");
    std::fs::create_dir_all(&app_dir).unwrap();
    let samples = repo_root().join("samples");
    std::fs::copy(
        samples.join("frontend/frontend.wasm"),
        app_dir.join("frontend.wasm"),
    )
    .unwrap();
    std::fs::copy(
        samples.join("hello-http/hello-http.wasm"),
        app_dir.join("backend.wasm"),
    )
    .unwrap();
    std::fs::write(app_dir.join("skiff.toml"), SHOP).unwrap();

    // `skiff build`: no build commands, the sources exist.
    let out = skiff(&app_dir, &home, &["build"]);
    assert!(out.status.success(), "{}", text(&out));

    // `--dry-run -o yaml` applied by kubectl first; `skiff deploy` afterwards changes nothing.
    let out = skiff(
        &app_dir,
        &home,
        &[
            "deploy",
            "--dry-run",
            "-o",
            "yaml",
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let yaml = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(yaml.starts_with("---\n"), "{yaml}");
    let applied = kubectl_run(&["apply", "-f", "-"], Some(&yaml));
    assert!(applied.status.success(), "{}\n{yaml}", text(&applied));
    let deployments = Api::<Deployment>::namespaced(kube.clone(), "shop");
    let before = specs(&deployments.list(&Default::default()).await.unwrap().items);
    assert_eq!(before.len(), 2, "{before:?}");

    // `skiff deploy` in the app's directory: the last line is the frontend's URL.
    let out = skiff(&app_dir, &home, &["deploy", "--kubeconfig", &kubeconfig]);
    assert!(out.status.success(), "{}\n{}", text(&out), show_log());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = stdout.lines().last().unwrap_or_default().to_string();
    assert_eq!(url, format!("http://{ingress}/"), "{}", text(&out));
    let after = specs(&deployments.list(&Default::default()).await.unwrap().items);
    assert_eq!(
        before, after,
        "the dry run's objects are the deploy's: the Deployments kubectl made are unchanged"
    );

    // The frontend answers through the ingress, and reaches the backend by name.
    let answer = http_request(&ingress, "shop.test", "/", Duration::from_secs(30)).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.starts_with("frontend-"), "{}", answer.body);
    let answer = http_request(
        &ingress,
        "shop.test",
        "/call?url=http%3A%2F%2Fbackend%2F",
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.contains("upstream: 200") && answer.body.contains("Hello from Skiff!"),
        "{}",
        answer.body
    );

    // The objects: labels, replicas, env, images pinned by digest, applied by `skiff`.
    let backend = deployments.get("backend").await.unwrap();
    let labels = backend.metadata.labels.clone().unwrap();
    for (k, v) in [
        ("app.kubernetes.io/name", "shop"),
        ("app.kubernetes.io/part-of", "shop"),
        ("app.kubernetes.io/component", "backend"),
        ("app.kubernetes.io/version", "latest"),
        ("app.kubernetes.io/managed-by", "skiff"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "{labels:?}");
    }
    assert!(
        backend
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .any(|m| m.manager.as_deref() == Some("skiff"))
    );
    let spec = backend.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let image = spec.template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert!(
        image.contains("/shop/backend@sha256:"),
        "pushed under the app's namespace, pinned: {image}"
    );
    let frontend = deployments.get("frontend").await.unwrap();
    let env = frontend.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "GREETING" && e.value.as_deref() == Some("hi"))
    );

    // `skiff apps` lists the app with its URL.
    let out = skiff(&app_dir, &home, &["apps", "--kubeconfig", &kubeconfig]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("shop") && listing.contains(&format!("http://{ingress}/")),
        "{listing}"
    );
    assert!(
        listing.contains("backend(2/2)") && listing.contains("frontend(1/1)"),
        "{listing}"
    );

    // An invalid manifest names file, line and field, and deploys nothing.
    let bad_dir = dir.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    std::fs::write(
        bad_dir.join("skiff.toml"),
        SHOP.replace("replicas = 2", "replicas = \"two\""),
    )
    .unwrap();
    let out = skiff(&bad_dir, &home, &["deploy", "--kubeconfig", &kubeconfig]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skiff.toml:13: component \"backend\": replicas:")
            && stderr.contains("expected an integer"),
        "{stderr}"
    );

    // Removing the backend (and limiting the frontend's calls) and redeploying prunes it.
    let trimmed = SHOP[..SHOP.find("\n[[component]]\nname = \"backend\"").unwrap()].to_string()
        + "allowed_outbound = []\n";
    std::fs::write(app_dir.join("skiff.toml"), trimmed).unwrap();
    let out = skiff(&app_dir, &home, &["deploy", "--kubeconfig", &kubeconfig]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("deployment.apps/backend pruned")
            && stderr.contains("service/backend pruned"),
        "{stderr}"
    );
    assert!(deployments.get_opt("backend").await.unwrap().is_none());
    let services = Api::<Service>::namespaced(kube.clone(), "shop");
    assert!(services.get_opt("backend").await.unwrap().is_none());
    assert!(services.get_opt("frontend").await.unwrap().is_some());
    assert!(
        Api::<NetworkPolicy>::namespaced(kube.clone(), "shop")
            .get_opt("frontend")
            .await
            .unwrap()
            .is_some()
    );

    // The SDK's example: an app built in Rust code, deployed through the library.
    let example_dir = dir.path().join("example");
    std::fs::create_dir_all(&example_dir).unwrap();
    for (from, to) in [
        ("frontend/frontend.wasm", "frontend.wasm"),
        ("hello-http/hello-http.wasm", "backend.wasm"),
    ] {
        std::fs::copy(samples.join(from), example_dir.join(to)).unwrap();
    }
    let deployed = example::deploy(kube.clone(), &example_dir).await.unwrap();
    assert_eq!(deployed.urls, [format!("http://{ingress}/hello")]);
    let answer = http_request(&ingress, "x.test", "/hello", Duration::from_secs(30)).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.starts_with("frontend-"), "{}", answer.body);
    let example_backend = Api::<Deployment>::namespaced(kube.clone(), "example")
        .get("backend")
        .await
        .unwrap();
    let status = example_backend.status.unwrap_or_default();
    assert_eq!(
        status.available_replicas,
        Some(2),
        "the example waited for its rollout"
    );

    // `skiff delete shop` removes the app and the namespace it made.
    let out = skiff(
        &app_dir,
        &home,
        &["delete", "shop", "--kubeconfig", &kubeconfig],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(deployments.get_opt("frontend").await.unwrap().is_none());
    let ns = Api::<Namespace>::all(kube.clone())
        .get_opt("shop")
        .await
        .unwrap();
    assert!(
        ns.is_none_or(|n| n.metadata.deletion_timestamp.is_some()),
        "the app's namespace goes"
    );
    let out = skiff(
        &app_dir,
        &home,
        &["delete", "nothing", "--kubeconfig", &kubeconfig],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no app called nothing"),
        "{}",
        text(&out)
    );

    // The counter sample deploys from its own `skiff.toml` (its route is `/`, free again now):
    // the frontend reaches the backend by name, the backend's keyvalue counter survives its pod
    // being replaced, and a changed config value reaches the running frontend without a restart.
    let counter_dir = dir.path().join("counter");
    std::fs::create_dir_all(&counter_dir).unwrap();
    for file in ["skiff.toml", "frontend.wasm", "backend.wasm"] {
        std::fs::copy(samples.join("counter").join(file), counter_dir.join(file)).unwrap();
    }
    let out = skiff(
        &counter_dir,
        &home,
        &["deploy", "--kubeconfig", &kubeconfig],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), show_log());
    let visit = |want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let answer = http_request(&ingress, "counter.test", "/", Duration::from_secs(30));
            match answer {
                Ok(a) if a.status == 200 && a.body.starts_with(want) => return a.body,
                other if std::time::Instant::now() > deadline => {
                    panic!("no {want:?} answer: {other:?}\n{}", show_log())
                }
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    };
    let visitor = |body: &str| -> u64 {
        body.trim()
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no visitor count in {body:?}"))
    };
    let first = visitor(&visit("hello, visitor "));
    let second = visitor(&visit("hello, visitor "));
    assert_eq!(second, first + 1, "the backend counts");

    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(kube.clone(), "counter");
    let selector = "app.kubernetes.io/part-of=counter,app.kubernetes.io/component=";
    let uid_of = |list: Vec<k8s_openapi::api::core::v1::Pod>| {
        list.into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.uid)
            .collect::<Vec<_>>()
    };
    let params = |c: &str| kube::api::ListParams::default().labels(&format!("{selector}{c}"));
    let backend_before = uid_of(pods.list(&params("backend")).await.unwrap().items);
    assert_eq!(backend_before.len(), 1, "{backend_before:?}");
    pods.delete_collection(&Default::default(), &params("backend"))
        .await
        .unwrap();
    // Once the old pod is gone and its replacement is Ready, the count goes on.
    let ready = |p: &k8s_openapi::api::core::v1::Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let backend_after = loop {
        let list = pods.list(&params("backend")).await.unwrap().items;
        let old_gone = list
            .iter()
            .all(|p| p.metadata.uid.as_ref() != backend_before.first());
        let fresh: Vec<String> = list
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        if old_gone && !fresh.is_empty() {
            break fresh;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Ready replacement of the backend pod: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_ne!(backend_after, backend_before);
    let third = visitor(&visit("hello, visitor "));
    assert_eq!(
        third,
        second + 1,
        "the count survives the backend pod's replacement"
    );

    let frontend_before = uid_of(pods.list(&params("frontend")).await.unwrap().items);
    let manifest = std::fs::read_to_string(counter_dir.join("skiff.toml")).unwrap();
    assert!(manifest.contains("greeting = \"hello\""), "{manifest}");
    std::fs::write(
        counter_dir.join("skiff.toml"),
        manifest.replace("greeting = \"hello\"", "greeting = \"welcome back\""),
    )
    .unwrap();
    let out = skiff(
        &counter_dir,
        &home,
        &["deploy", "--kubeconfig", &kubeconfig],
    );
    assert!(out.status.success(), "{}", text(&out));
    let fourth = visitor(&visit("welcome back, visitor "));
    assert!(fourth > third, "{fourth} after {third}");
    let frontend_after = uid_of(pods.list(&params("frontend")).await.unwrap().items);
    assert_eq!(
        frontend_before, frontend_after,
        "the config change reached the same frontend pod"
    );

    // Another app on the same route is refused before anything is applied: the ingress would
    // keep serving the counter there.
    let clash_dir = dir.path().join("clash");
    std::fs::create_dir_all(&clash_dir).unwrap();
    std::fs::copy(
        samples.join("hello-http/hello-http.wasm"),
        clash_dir.join("web.wasm"),
    )
    .unwrap();
    std::fs::write(
        clash_dir.join("skiff.toml"),
        "[app]\nname = \"clash\"\n\n[[component]]\nname = \"web\"\nsource = \"web.wasm\"\nroute = \"/\"\n",
    )
    .unwrap();
    let out = skiff(&clash_dir, &home, &["deploy", "--kubeconfig", &kubeconfig]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "component \"web\": route / on any host is already served by Ingress counter/frontend"
        ),
        "{}",
        text(&out)
    );
    assert!(
        Api::<Namespace>::all(kube.clone())
            .get_opt("clash")
            .await
            .unwrap()
            .is_none(),
        "nothing of the refused app was applied"
    );
}
