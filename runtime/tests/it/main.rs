//! Integration tests of the wasm pod runtime against WAT guests and the guests in `samples/`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use http_body_util::BodyExt;
use skiff_runtime::{
    ContainerKind, ContainerSpec, ContainerState, FileContent, Image, LogOptions, Mount, Network,
    PodSandbox, PodSpec, Resources, Runtime, RuntimeConfig, TerminationReason, VolumeSource,
    VolumeSpec, empty_body,
};

mod conformance;
mod guards;
mod usage;
mod wat_guests;

/// One runtime (engine, pool, compile cache) per test binary: each guest compiles once.
fn rt() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("skiff-runtime-it")
            .tempdir()
            .expect("tempdir")
            .keep();
        let mut config = RuntimeConfig::new(dir);
        config.max_instances = 128;
        Runtime::new(config, Network::new()).expect("runtime")
    })
}

fn samples() -> PathBuf {
    // At run time: a test binary reused from a shared target directory must read this checkout.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../samples")
}

/// The bytes of a sample guest, or `None` (with a note) when it has not been built.
fn sample(rel: &str) -> Option<Image> {
    let path = samples().join(rel);
    match std::fs::read(&path) {
        Ok(b) => Some(Image::Bytes(b.into())),
        Err(_) => {
            eprintln!(
                "SKIP: sample {} is missing (run samples/build.sh)",
                path.display()
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn new_pod(ip: Option<&str>, volumes: Vec<VolumeSpec>) -> Result<Arc<dyn PodSandbox>> {
    let id = unique("pod");
    Ok(rt()
        .create_pod(PodSpec {
            id: id.clone(),
            name: format!("default/{id}"),
            ip: ip.map(|s| s.parse::<IpAddr>()).transpose()?,
            volumes,
            ..Default::default()
        })
        .await?)
}

fn container(name: &str, image: Image) -> ContainerSpec {
    ContainerSpec {
        name: name.to_string(),
        image,
        ..Default::default()
    }
}

fn empty_dir(name: &str) -> VolumeSpec {
    VolumeSpec {
        name: name.to_string(),
        source: VolumeSource::EmptyDir { memory: false },
    }
}

fn mount(volume: &str, path: &str) -> Mount {
    Mount {
        volume: volume.to_string(),
        mount_path: path.to_string(),
        ..Default::default()
    }
}

/// Waits for the container's run to end (a hang guard, not a timing assertion).
async fn terminated(pod: &Arc<dyn PodSandbox>, name: &str) -> Result<ContainerState> {
    let mut rx = pod.watch_container(name)?;
    let state = tokio::time::timeout(Duration::from_secs(120), rx.wait_for(|s| s.is_terminated()))
        .await
        .context("container did not terminate")??
        .clone();
    Ok(state)
}

async fn logs(pod: &Arc<dyn PodSandbox>, name: &str, previous: bool) -> Result<String> {
    let lines: Vec<_> = pod
        .logs(
            name,
            LogOptions {
                previous,
                ..Default::default()
            },
        )?
        .collect()
        .await;
    Ok(lines
        .iter()
        .map(|l| format!("{}\n", String::from_utf8_lossy(&l.line)))
        .collect())
}

fn exit_of(state: &ContainerState) -> (i32, TerminationReason, String) {
    match state {
        ContainerState::Terminated {
            exit_code,
            reason,
            message,
            ..
        } => (*exit_code, *reason, message.clone()),
        other => panic!("not terminated: {other:?}"),
    }
}

async fn get(pod: &Arc<dyn PodSandbox>, port: u16, path: &str) -> Result<(u16, String)> {
    let req = http::Request::get(path)
        .header("host", "test.local")
        .body(empty_body())?;
    let resp = pod.handle_http(port, req).await?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Runs a command container to completion and returns its state and log.
async fn run_to_end(
    spec: ContainerSpec,
    volumes: Vec<VolumeSpec>,
) -> Result<(ContainerState, String)> {
    let pod = new_pod(None, volumes).await?;
    let name = spec.name.clone();
    pod.create_container(spec).await?;
    pod.start_container(&name).await?;
    let state = terminated(&pod, &name).await?;
    let log = logs(&pod, &name, false).await?;
    pod.remove(Duration::ZERO).await?;
    Ok((state, log))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_http_answers() -> Result<()> {
    let Some(image) = sample("hello-http/hello-http.wasm") else {
        return Ok(());
    };
    let pod = new_pod(None, vec![]).await?;
    let kind = pod
        .create_container(ContainerSpec {
            ports: vec![8080],
            ..container("web", image)
        })
        .await?;
    assert_eq!(kind, ContainerKind::Http);
    pod.start_container("web").await?;
    assert_eq!(
        get(&pod, 8080, "/").await?,
        (200, "Hello from Skiff!\n".into())
    );
    assert_eq!(get(&pod, 8080, "/status/418").await?.0, 418);
    assert!(pod.serves_port(8080) && !pod.serves_port(8081));
    // A port nobody declared.
    let err = get(&pod, 9999, "/").await.unwrap_err();
    assert!(err.to_string().contains("port 9999"), "{err}");
    pod.stop_container("web", Duration::from_secs(5)).await?;
    let (code, reason, _) = exit_of(&pod.watch_container("web")?.borrow());
    assert_eq!((code, reason), (0, TerminationReason::Completed));
    assert!(
        get(&pod, 8080, "/").await.is_err(),
        "stopped service refuses requests"
    );
    assert!(!pod.serves_port(8080));
    pod.remove(Duration::ZERO).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_gets_env_args_config_and_secret() -> Result<()> {
    let Some(image) = sample("env-reader/env-reader.wasm") else {
        return Ok(());
    };
    let mut config = BTreeMap::new();
    config.insert("color".to_string(), FileContent::new(&b"blue\n"[..]));
    config.insert(
        "app.properties".to_string(),
        FileContent::new(&b"a=1\nb=2\n"[..]),
    );
    let mut secret = BTreeMap::new();
    secret.insert("password".to_string(), FileContent::new(&b"s3cr3t"[..]));
    let volumes = vec![
        VolumeSpec {
            name: "config".into(),
            source: VolumeSource::Files {
                files: config,
                sensitive: false,
            },
        },
        VolumeSpec {
            name: "secret".into(),
            source: VolumeSource::Files {
                files: secret,
                sensitive: true,
            },
        },
    ];
    if rt().tmpfs_dir().is_none() {
        eprintln!("SKIP: no tmpfs on this machine for secret volumes");
        return Ok(());
    }
    let pod = new_pod(None, volumes).await?;
    pod.create_container(ContainerSpec {
        env: vec![
            ("GREETING".into(), "hello".into()),
            ("COLOR".into(), "blue".into()),
        ],
        mounts: vec![mount("config", "/config"), mount("secret", "/secret")],
        ..container("reader", image)
    })
    .await?;
    pod.start_container("reader").await?;
    let state = terminated(&pod, "reader").await?;
    let log = logs(&pod, "reader", false).await?;
    println!("{log}");
    assert_eq!(exit_of(&state).0, 0, "{log}");
    for want in [
        "GREETING=hello",
        "COLOR=blue",
        "/config/color: blue",
        "/config/app.properties: a=1\\nb=2",
        "/secret/password: s3cr3t",
    ] {
        assert!(log.contains(want), "missing {want:?} in:\n{log}");
    }

    // The ConfigMap changes: the next run sees the new value; the last run's log is `previous`.
    let mut config = BTreeMap::new();
    config.insert("color".to_string(), FileContent::new(&b"green"[..]));
    pod.update_files("config", config).await?;
    pod.start_container("reader").await?;
    let mut rx = pod.watch_container("reader")?;
    rx.wait_for(|s| s.is_running() || s.is_terminated()).await?;
    terminated(&pod, "reader").await?;
    let log2 = logs(&pod, "reader", false).await?;
    assert!(log2.contains("/config/color: green"), "{log2}");
    assert!(!log2.contains("app.properties"), "{log2}");
    assert_eq!(logs(&pod, "reader", true).await?, log);
    pod.remove(Duration::ZERO).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview1_module_runs_with_args() -> Result<()> {
    let Some(image) = sample("hello-c/hello-c.wasm") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let log_file = dir.path().join("hello-c/0.log");
    let (state, log) = run_to_end(
        ContainerSpec {
            log_file: Some(log_file.clone()),
            args: vec!["from".into(), "a pod".into()],
            env: vec![("NAME".into(), "Skiff".into())],
            ..container("hello-c", image)
        },
        vec![],
    )
    .await?;
    assert_eq!(exit_of(&state).0, 0, "{log}");
    assert!(log.contains("Hello from C on Skiff"), "{log}");
    assert!(
        log.contains("arg[1]=from") && log.contains("arg[2]=a pod"),
        "{log}"
    );
    assert!(log.contains("NAME=Skiff"), "{log}");
    // The same lines in CRI format in the log file (written by a background thread).
    let mut file = String::new();
    for _ in 0..500 {
        file = std::fs::read_to_string(&log_file).unwrap_or_default();
        if file.contains("NAME=Skiff") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = file.lines().next().context("empty log file")?;
    let fields: Vec<_> = first.splitn(4, ' ').collect();
    assert_eq!(
        fields[1..],
        ["stdout", "F", "Hello from C on Skiff"],
        "{file}"
    );
    assert!(fields[0].parse::<jiff::Timestamp>().is_ok(), "{file}");
    Ok(())
}

/// Waits until `cond` holds (a hang guard of a few seconds, not a timing assertion).
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_instances_are_fresh_unless_reuse_is_configured() -> Result<()> {
    let Some(image) = sample("hello-http/hello-http.wasm") else {
        return Ok(());
    };
    for reuse in [false, true] {
        let pod = rt()
            .create_pod(PodSpec {
                id: unique("reuse"),
                http: skiff_runtime::HttpOptions {
                    reuse_instances: reuse,
                    max_idle_instances: 2,
                },
                ..Default::default()
            })
            .await?;
        pod.create_container(ContainerSpec {
            ports: vec![8080],
            ..container("web", image.clone())
        })
        .await?;
        pod.start_container("web").await?;
        for _ in 0..3 {
            assert_eq!(
                get(&pod, 8080, "/").await?,
                (200, "Hello from Skiff!\n".into())
            );
        }
        if reuse {
            // An idle instance keeps its memory for the next request.
            assert!(eventually(|| pod.usage().memory_bytes > 0).await);
        } else {
            // Every request's instance is gone once it finished.
            assert!(
                eventually(|| pod.usage().memory_bytes == 0).await,
                "{:?}",
                pod.usage()
            );
        }
        pod.stop_container("web", Duration::from_secs(5)).await?;
        assert!(
            eventually(|| pod.usage().memory_bytes == 0).await,
            "{:?}",
            pod.usage()
        );
        pod.remove(Duration::ZERO).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wat_preview1_exit_code_and_trap() -> Result<()> {
    let (state, log) = run_to_end(
        container(
            "exit",
            Image::Bytes(wat_guests::p1_print_and_exit("bye", 3).into()),
        ),
        vec![],
    )
    .await?;
    assert_eq!(exit_of(&state).0, 3);
    assert_eq!(exit_of(&state).1, TerminationReason::Error);
    assert_eq!(log, "bye\n");

    let (state, _) = run_to_end(
        container("trap", Image::Bytes(wat_guests::p1_trap().into())),
        vec![],
    )
    .await?;
    let (code, reason, message) = exit_of(&state);
    assert_eq!((code, reason), (134, TerminationReason::Error));
    assert!(message.contains("unreachable"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptydir_shared_by_puller_and_server() -> Result<()> {
    let (Some(puller), Some(server)) = (
        sample("fileserver/puller.wasm"),
        sample("fileserver/server.wasm"),
    ) else {
        return Ok(());
    };
    let pod = new_pod(None, vec![empty_dir("data")]).await?;
    pod.create_container(ContainerSpec {
        mounts: vec![mount("data", "/data")],
        ..container("puller", puller)
    })
    .await?;
    let kind = pod
        .create_container(ContainerSpec {
            mounts: vec![Mount {
                read_only: true,
                ..mount("data", "/data")
            }],
            ports: vec![8080],
            ..container("server", server)
        })
        .await?;
    assert_eq!(
        kind,
        ContainerKind::Http,
        "an HTTP component importing wasi:cli and filesystem"
    );
    pod.start_container("puller").await?;
    let state = terminated(&pod, "puller").await?;
    let log = logs(&pod, "puller", false).await?;
    assert_eq!(exit_of(&state).0, 0, "{log}");
    pod.start_container("server").await?;
    let (status, body) = get(&pod, 8080, "/").await?;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Hello from the Skiff fileserver sample!"),
        "{body}"
    );
    assert_eq!(get(&pod, 8080, "/missing.txt").await?.0, 404);
    assert_eq!(get(&pod, 8080, "/../etc/passwd").await?.0, 400);
    pod.remove(Duration::ZERO).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_port_reaches_sibling() -> Result<()> {
    let (Some(puller), Some(hello)) = (
        sample("fileserver/puller.wasm"),
        sample("hello-http/hello-http.wasm"),
    ) else {
        return Ok(());
    };
    let pod = new_pod(Some("10.244.0.20"), vec![empty_dir("data")]).await?;
    pod.create_container(ContainerSpec {
        ports: vec![8080],
        ..container("hello", hello)
    })
    .await?;
    pod.create_container(ContainerSpec {
        env: vec![("SOURCE_URL".into(), "http://localhost:8080/".into())],
        mounts: vec![mount("data", "/data")],
        ..container("puller", puller)
    })
    .await?;
    pod.start_container("hello").await?;
    pod.start_container("puller").await?;
    let state = terminated(&pod, "puller").await?;
    let log = logs(&pod, "puller", false).await?;
    println!("{log}");
    assert_eq!(exit_of(&state).0, 0, "{log}");
    assert!(
        log.contains("wrote 18 bytes from http://localhost:8080/"),
        "{log}"
    );
    pod.remove(Duration::ZERO).await?;
    Ok(())
}

/// A Service router as the node plugs it in: a name taken over and sent in-process to the pod
/// behind it, a name without endpoints answered 503 by the router itself.
struct ServiceTable(skiff_runtime::Network);

impl skiff_runtime::ServiceRouter for ServiceTable {
    fn route(
        &self,
        _from: Option<std::net::IpAddr>,
        req: http::Request<skiff_runtime::HttpBody>,
    ) -> skiff_runtime::Routed {
        match req.uri().host() {
            Some("hello.resolver-test.svc") => {
                let pod = self.0.lookup([10, 244, 0, 41].into());
                skiff_runtime::Routed::Taken(Box::pin(async move {
                    match pod {
                        Some(pod) => pod.handle_http(8080, req).await.unwrap_or_else(|e| {
                            http::Response::builder()
                                .status(502)
                                .body(skiff_runtime::full_body(e.to_string()))
                                .expect("a response")
                        }),
                        None => http::Response::builder()
                            .status(503)
                            .body(skiff_runtime::full_body("gone"))
                            .expect("a response"),
                    }
                }))
            }
            Some("empty.resolver-test.svc") => skiff_runtime::Routed::Taken(Box::pin(async {
                http::Response::builder()
                    .status(503)
                    .body(skiff_runtime::full_body("no endpoints"))
                    .expect("a response")
            })),
            _ => skiff_runtime::Routed::Declined(req),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_name_reaches_a_pod_of_this_node() -> Result<()> {
    let (Some(puller), Some(hello)) = (
        sample("fileserver/puller.wasm"),
        sample("hello-http/hello-http.wasm"),
    ) else {
        return Ok(());
    };
    rt().network()
        .set_router(Some(std::sync::Arc::new(ServiceTable(
            rt().network().clone(),
        ))));
    let server = new_pod(Some("10.244.0.41"), vec![]).await?;
    server
        .create_container(ContainerSpec {
            ports: vec![8080],
            ..container("hello", hello)
        })
        .await?;
    server.start_container("hello").await?;

    let req = http::Request::get("http://hello.resolver-test.svc/").body(empty_body())?;
    let resp = rt().network().send(None, req).await?;
    assert_eq!(resp.status(), 200);
    let req = http::Request::get("http://empty.resolver-test.svc/").body(empty_body())?;
    assert_eq!(rt().network().send(None, req).await?.status(), 503);

    let client = new_pod(Some("10.244.0.42"), vec![empty_dir("data")]).await?;
    client
        .create_container(ContainerSpec {
            env: vec![(
                "SOURCE_URL".into(),
                "http://hello.resolver-test.svc/".into(),
            )],
            mounts: vec![mount("data", "/data")],
            ..container("puller", puller)
        })
        .await?;
    client.start_container("puller").await?;
    let state = terminated(&client, "puller").await?;
    let log = logs(&client, "puller", false).await?;
    println!("{log}");
    assert_eq!(exit_of(&state).0, 0, "{log}");
    assert!(
        log.contains("wrote 18 bytes from http://hello.resolver-test.svc/"),
        "{log}"
    );
    server.remove(Duration::ZERO).await?;
    client.remove(Duration::ZERO).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_to_pod_by_ip_in_process() -> Result<()> {
    let (Some(puller), Some(hello)) = (
        sample("fileserver/puller.wasm"),
        sample("hello-http/hello-http.wasm"),
    ) else {
        return Ok(());
    };
    let server = new_pod(Some("10.244.0.31"), vec![]).await?;
    server
        .create_container(ContainerSpec {
            ports: vec![8080],
            ..container("hello", hello)
        })
        .await?;
    server.start_container("hello").await?;

    // An in-process caller (a probe, the node's listener) through the network.
    let req = http::Request::get("http://10.244.0.31:8080/").body(empty_body())?;
    let resp = rt().network().send(None, req).await?;
    assert_eq!(resp.status(), 200);

    let client = new_pod(Some("10.244.0.32"), vec![empty_dir("data")]).await?;
    client
        .create_container(ContainerSpec {
            env: vec![("SOURCE_URL".into(), "http://10.244.0.31:8080/".into())],
            mounts: vec![mount("data", "/data")],
            ..container("puller", puller)
        })
        .await?;
    client.start_container("puller").await?;
    let state = terminated(&client, "puller").await?;
    let log = logs(&client, "puller", false).await?;
    println!("{log}");
    assert_eq!(exit_of(&state).0, 0, "{log}");
    assert!(
        log.contains("wrote 18 bytes from http://10.244.0.31:8080/"),
        "{log}"
    );

    // Once removed, the IP no longer routes in-process.
    server.remove(Duration::ZERO).await?;
    assert!(rt().network().lookup("10.244.0.31".parse()?).is_none());
    client.remove(Duration::ZERO).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_is_oom_killed() -> Result<()> {
    let limits = Resources {
        memory_limit: Some(32 << 20),
        ..Default::default()
    };
    let (state, _) = run_to_end(
        ContainerSpec {
            resources: limits,
            ..container(
                "wat-oom",
                Image::Bytes(wat_guests::p1_grow_forever().into()),
            )
        },
        vec![],
    )
    .await?;
    let (code, reason, message) = exit_of(&state);
    assert_eq!(
        (code, reason),
        (137, TerminationReason::OomKilled),
        "{message}"
    );

    let Some(image) = sample("testdata/oom.wasm") else {
        return Ok(());
    };
    let (state, log) = run_to_end(
        ContainerSpec {
            resources: limits,
            ..container("oom", image)
        },
        vec![],
    )
    .await?;
    let (code, reason, message) = exit_of(&state);
    assert_eq!(
        (code, reason),
        (137, TerminationReason::OomKilled),
        "{message}\n{log}"
    );
    assert!(log.contains("oom: allocated 16 MiB"), "{log}");
    assert!(!log.contains("oom: allocated 48 MiB"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_and_exit_code_samples() -> Result<()> {
    let (Some(trap), Some(exit3)) = (sample("testdata/trap.wasm"), sample("testdata/exit3.wasm"))
    else {
        return Ok(());
    };
    let (state, log) = run_to_end(container("trap", trap), vec![]).await?;
    let (code, reason, message) = exit_of(&state);
    assert_eq!((code, reason), (134, TerminationReason::Error));
    assert!(message.contains("unreachable"), "{message}");
    assert!(log.contains("trap: about to trap"), "{log}");

    let (state, log) = run_to_end(container("exit3", exit3), vec![]).await?;
    let (code, reason, _) = exit_of(&state);
    assert_eq!((code, reason), (3, TerminationReason::Error));
    assert!(log.contains("exit3: exiting with code 3"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_limit_caps_a_busy_loop() -> Result<()> {
    let Some(image) = sample("testdata/spin.wasm") else {
        return Ok(());
    };
    let pod = new_pod(None, vec![]).await?;
    pod.create_container(ContainerSpec {
        resources: Resources {
            cpu_limit_millis: Some(200),
            ..Default::default()
        },
        ..container("spin", image)
    })
    .await?;
    pod.start_container("spin").await?;
    let mut follow = pod.logs(
        "spin",
        LogOptions {
            follow: true,
            ..Default::default()
        },
    )?;
    let first = follow.next().await.context("no output")?;
    assert_eq!(&first.line[..], b"spin: started");
    let (cpu0, t0) = (pod.usage().cpu_nanos, Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu1, t1) = (pod.usage().cpu_nanos, Instant::now());
    let share = (cpu1 - cpu0) as f64 / (t1 - t0).as_nanos() as f64;
    println!(
        "busy loop with limits.cpu=200m used {:.1}% of a core (throttled {} ms)",
        share * 100.0,
        pod.usage().throttled_nanos / 1_000_000
    );
    assert!((0.10..=0.40).contains(&share), "share {share}");

    // A running guest is killed after its grace period; followers see the end.
    pod.stop_container("spin", Duration::from_millis(100))
        .await?;
    let (code, reason, _) = exit_of(&pod.watch_container("spin")?.borrow());
    assert_eq!((code, reason), (137, TerminationReason::Error));
    assert!(follow.next().await.is_none());
    pod.remove(Duration::ZERO).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_command_is_killed_on_stop() -> Result<()> {
    let Some(image) = sample("testdata/sleep.wasm") else {
        return Ok(());
    };
    let pod = new_pod(None, vec![]).await?;
    pod.create_container(container("sleep", image)).await?;
    pod.start_container("sleep").await?;
    let mut follow = pod.logs(
        "sleep",
        LogOptions {
            follow: true,
            ..Default::default()
        },
    )?;
    assert_eq!(
        &follow.next().await.context("no output")?.line[..],
        b"started"
    );
    pod.stop_container("sleep", Duration::from_millis(50))
        .await?;
    let (code, _, _) = exit_of(&pod.watch_container("sleep")?.borrow());
    assert_eq!(code, 137);
    assert!(follow.next().await.is_none());
    // It can be started again; the killed run is `previous`.
    pod.start_container("sleep").await?;
    assert!(pod.watch_container("sleep")?.borrow().is_running());
    assert_eq!(logs(&pod, "sleep", true).await?, "started\n");
    pod.remove(Duration::ZERO).await?;
    assert!(pod.container_states()["sleep"].is_terminated());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_request_is_killed_on_stop() -> Result<()> {
    let Some(image) = sample("testdata/spin-http.wasm") else {
        return Ok(());
    };
    let pod = new_pod(None, vec![]).await?;
    pod.create_container(ContainerSpec {
        ports: vec![80],
        ..container("web", image)
    })
    .await?;
    pod.start_container("web").await?;
    assert_eq!(get(&pod, 80, "/").await?, (200, "ok\n".into()));

    // A caller giving up (client gone, probe timeout) takes the spinning guest with it.
    let gave_up = tokio::time::timeout(Duration::from_millis(300), get(&pod, 80, "/spin")).await;
    assert!(gave_up.is_err(), "/spin answered");
    assert!(
        eventually(|| pod.usage().memory_bytes == 0).await,
        "abandoned request still holds an instance: {:?}",
        pod.usage()
    );

    let p = pod.clone();
    let stuck = tokio::spawn(async move { get(&p, 80, "/spin").await });
    // Let the request start spinning.
    let cpu0 = pod.usage().cpu_nanos;
    let mut waited = 0;
    while pod.usage().cpu_nanos < cpu0 + 50_000_000 && waited < 1000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    pod.stop_container("web", Duration::from_millis(100))
        .await?;
    let (code, _, _) = exit_of(&pod.watch_container("web")?.borrow());
    assert_eq!(code, 137);
    assert_eq!(stuck.await??.0, 500);
    pod.remove(Duration::ZERO).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_are_rejected_at_create() -> Result<()> {
    let pod = new_pod(None, vec![]).await?;
    let err = pod
        .create_container(container(
            "wat-bad",
            Image::Bytes(wat_guests::component_bad_import().into()),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("acme:nothing/here@1.0.0"), "{err}");

    let err = pod
        .create_container(container(
            "text",
            Image::Bytes((&b"hello there\n"[..]).into()),
        ))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a wasm module or component"),
        "{err}"
    );

    let err = pod
        .create_container(container(
            "missing",
            Image::Path("/nonexistent/x.wasm".into()),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.wasm"), "{err}");

    if let (Some(bad), Some(not_wasm)) = (
        sample("testdata/bad-import.wasm"),
        sample("testdata/not-wasm.wasm"),
    ) {
        let err = pod
            .create_container(container("bad", bad))
            .await
            .unwrap_err();
        println!("{err}");
        assert!(
            err.to_string().contains("acme:missing/thing@0.1.0"),
            "{err}"
        );
        let err = pod
            .create_container(container("nw", not_wasm))
            .await
            .unwrap_err();
        println!("{err}");
        assert!(err.to_string().contains("not a wasm"), "{err}");
    }
    // None of them left a container behind.
    assert!(pod.container_states().is_empty());
    pod.remove(Duration::ZERO).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_file_access_outside_preopens() -> Result<()> {
    let Some(image) = sample("testdata/escape.wasm") else {
        return Ok(());
    };
    let (state, log) = run_to_end(
        ContainerSpec {
            mounts: vec![mount("data", "/data")],
            ..container("escape", image)
        },
        vec![empty_dir("data")],
    )
    .await?;
    println!("{log}");
    assert_eq!(exit_of(&state).0, 0, "{log}");
    for path in [
        "/etc/passwd",
        "/data/../../etc/passwd",
        "/proc/self/environ",
    ] {
        assert!(
            log.contains(&format!("DENIED {path}")),
            "{path} readable:\n{log}"
        );
    }
    assert!(!log.contains("READ "), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_hits_memory_then_disk_and_refuses_foreign_artifacts() -> Result<()> {
    // A guest no other test uses, so the counters move only because of this test.
    let wasm = wat_guests::p1_print_and_exit("cached", 0);
    let dir = tempfile::tempdir()?;
    let config = || {
        let mut c = RuntimeConfig::new(dir.path());
        c.max_instances = 16;
        c
    };
    let rt1 = Runtime::new(config(), Network::new())?;
    let create = |rt: Runtime, wasm: Vec<u8>| async move {
        let pod = rt
            .create_pod(PodSpec {
                id: unique("cache"),
                ..Default::default()
            })
            .await?;
        pod.create_container(container("c", Image::Bytes(wasm.into())))
            .await?;
        pod.remove(Duration::ZERO).await?;
        anyhow::Ok(())
    };
    create(rt1.clone(), wasm.clone()).await?;
    assert_eq!(rt1.cache_stats().compiled, 1);
    create(rt1.clone(), wasm.clone()).await?;
    assert_eq!(rt1.cache_stats().memory_hits, 1);
    let cache_dir = rt1.cache_dir();
    drop(rt1);

    // A new runtime on the same data dir loads the verified artifact from disk.
    let rt2 = Runtime::new(config(), Network::new())?;
    create(rt2.clone(), wasm.clone()).await?;
    let s = rt2.cache_stats();
    assert_eq!((s.disk_hits, s.compiled), (1, 0), "{s:?}");
    drop(rt2);

    // An artifact altered on disk is refused and recompiled.
    let artifact = std::fs::read_dir(&cache_dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .context("no artifact")?;
    let mut bytes = std::fs::read(&artifact)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&artifact, &bytes)?;
    let rt3 = Runtime::new(config(), Network::new())?;
    create(rt3.clone(), wasm).await?;
    let s = rt3.cache_stats();
    assert_eq!((s.rejected, s.compiled, s.disk_hits), (1, 1, 0), "{s:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_and_spec_errors() -> Result<()> {
    let cap = rt().capacity();
    println!("{cap:?}");
    assert!(cap.instances >= 8 && cap.pods > 0);
    let pod = new_pod(None, vec![empty_dir("data")]).await?;
    let wasm = || Image::Bytes(wat_guests::p1_print_and_exit("x", 0).into());
    let err = pod
        .create_container(ContainerSpec {
            mounts: vec![mount("nope", "/x")],
            ..container("a", wasm())
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown volume"), "{err}");
    let err = pod
        .create_container(ContainerSpec {
            resources: Resources {
                memory_limit: Some(u64::MAX),
                ..Default::default()
            },
            ..container("b", wasm())
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
    pod.create_container(container("c", wasm())).await?;
    let err = pod
        .create_container(container("c", wasm()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = pod
        .logs("c", LogOptions::default())
        .err()
        .context("logs before start")?;
    assert!(err.to_string().contains("not started"), "{err}");
    let dup = rt()
        .create_pod(PodSpec {
            id: unique("ip"),
            ip: Some("10.244.9.9".parse()?),
            ..Default::default()
        })
        .await?;
    let err = rt()
        .create_pod(PodSpec {
            id: unique("ip"),
            ip: Some("10.244.9.9".parse()?),
            ..Default::default()
        })
        .await
        .err()
        .context("duplicate IP accepted")?;
    assert!(err.to_string().contains("10.244.9.9"), "{err}");
    dup.remove(Duration::ZERO).await?;
    pod.remove(Duration::ZERO).await?;
    if pod.create_container(container("d", wasm())).await.is_ok() {
        bail!("a removed pod accepted a container");
    }
    Ok(())
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_http_pods_all_answer() -> Result<()> {
    let Some(image) = sample("hello-http/hello-http.wasm") else {
        return Ok(());
    };
    const N: usize = 1000;
    // Warm the caches so the measurement is about pods, not compilation.
    let warm = new_pod(None, vec![]).await?;
    warm.create_container(container("web", image.clone()))
        .await?;
    warm.remove(Duration::ZERO).await?;
    let rss0 = rss_bytes();
    let started = Instant::now();
    let mut pods = Vec::with_capacity(N);
    for i in 0..N {
        let ip = format!("10.245.{}.{}", i / 250, i % 250 + 1);
        let pod = new_pod(Some(&ip), vec![]).await?;
        pod.create_container(ContainerSpec {
            ports: vec![8080],
            ..container("web", image.clone())
        })
        .await?;
        pod.start_container("web").await?;
        pods.push(pod);
    }
    let created = started.elapsed();
    let rss1 = rss_bytes();
    let mut ok = 0;
    for pod in &pods {
        if get(pod, 8080, "/").await? == (200, "Hello from Skiff!\n".into()) {
            ok += 1;
        }
    }
    println!(
        "{N} idle hello pods: created and started in {created:?}; RSS grew {} KiB ({} bytes per pod, approximate: other tests may run at the same time); {ok} answered",
        rss1.saturating_sub(rss0) / 1024,
        rss1.saturating_sub(rss0) / N as u64
    );
    assert_eq!(ok, N);
    for pod in pods {
        pod.remove(Duration::ZERO).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_reserves_a_pool_on_this_machine() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let rt = tokio::task::spawn_blocking({
        let path = dir.path().to_path_buf();
        move || Runtime::new(RuntimeConfig::new(path), Network::new())
    })
    .await??;
    let cap = rt.capacity();
    println!("default engine: {cap:?}, built in {:?}", started.elapsed());
    assert!(cap.instances >= 8);
    assert!(cap.max_memory_per_instance >= 1 << 20);
    drop(rt);

    // Far more than the address space holds: the probe backs off to what fits.
    let dir = tempfile::tempdir()?;
    let rt = tokio::task::spawn_blocking({
        let mut config = RuntimeConfig::new(dir.path());
        config.max_instances = 1 << 22;
        move || Runtime::new(config, Network::new())
    })
    .await??;
    let cap = rt.capacity();
    println!("asked for {} instances, got {cap:?}", 1 << 22);
    assert!(cap.instances < 1 << 22 && cap.instances >= 8);
    Ok(())
}

/// A node's tmpfs directory (secrets) does not outlive it: what a node that did not stop cleanly
/// left is cleared when a runtime starts on the same data directory, and the directory goes
/// away with the runtime.
#[test]
fn the_tmpfs_directory_is_cleared_at_start_and_removed_with_the_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let new_runtime = || {
        let mut config = RuntimeConfig::new(dir.path());
        config.max_instances = 4;
        Runtime::new(config, Network::new()).expect("runtime")
    };
    let first = new_runtime();
    let Some(shm) = first.tmpfs_dir() else {
        println!("SKIPPED: no tmpfs on this machine");
        return;
    };
    assert!(
        shm.is_dir(),
        "{} exists while the runtime runs",
        shm.display()
    );
    // A crash leaves a pod's secret behind: forget the runtime without dropping it.
    std::fs::create_dir_all(shm.join("pod-uid/files/secret")).expect("stale pod dir");
    std::fs::write(shm.join("pod-uid/files/secret/password"), b"hunter2").expect("stale secret");
    std::mem::forget(first);

    let second = new_runtime();
    assert_eq!(
        second.tmpfs_dir(),
        Some(shm.clone()),
        "same data directory, same tmpfs dir"
    );
    assert!(shm.is_dir());
    assert!(
        !shm.join("pod-uid").exists(),
        "the earlier run's pod directory is cleared at start"
    );
    drop(second);
    assert!(
        !shm.exists(),
        "{} is removed with the runtime",
        shm.display()
    );

    // A node killed for good (its data directory deleted) leaves its directory; the next node
    // to start on the machine removes it.
    let gone = tempfile::tempdir().expect("tempdir");
    let mut config = RuntimeConfig::new(gone.path());
    config.max_instances = 4;
    let killed = Runtime::new(config, Network::new()).expect("runtime");
    let orphan = killed.tmpfs_dir().expect("tmpfs");
    std::fs::create_dir_all(orphan.join("pod-uid")).expect("pod dir");
    std::mem::forget(killed);
    drop(gone);
    let third = new_runtime();
    assert!(
        !orphan.exists(),
        "{} of a node whose data directory is gone is removed",
        orphan.display()
    );
    assert!(shm.is_dir(), "the starting node's own directory is kept");
    drop(third);
}
