//! Projected ServiceAccount tokens on the in-process tier: a real node on the wasm backend
//! asks the API for a pod-bound token, a guest reads `token`, `ca.crt` and `namespace` from
//! its `kube-api-access` volume, the token is rotated when the node's clock passes 80% of its
//! lifetime, a refused TokenRequest is a `FailedMount`, and neither a secret nor a token is
//! ever written under the node's data directory.
//!
//! The API's TokenRequest is stood in for by a route in front of the router, so the test
//! sees exactly what the node asks for and decides what is issued.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use skiff_api::{AppState, UserInfo};
use skiff_host::tokens::{Clock, ManualClock};
use skiff_host::{NodeConfig, NodeHandle, WasmImages};
use skiff_runtime::{Network, Runtime, RuntimeConfig, Runtimes, empty_body};
use skiff_store::{MemoryStore, Store};
use skiff_testkit::inproc::{TOKEN, client_over, wait_deleted, wait_event, wait_object};
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(60);
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// One TokenRequest the node made: namespace, ServiceAccount, and the request.
type Asked = (String, String, TokenRequest);

/// The stand-in for the API server's TokenRequest.
struct Issuer {
    clock: ManualClock,
    asked: Mutex<Vec<Asked>>,
    /// How many tokens were issued (woken on each).
    issued: watch::Sender<usize>,
}

async fn issue(
    State(issuer): State<Arc<Issuer>>,
    UrlPath((ns, sa)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(mut tr) = serde_json::from_slice::<TokenRequest>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    issuer
        .asked
        .lock()
        .unwrap()
        .push((ns.clone(), sa.clone(), tr.clone()));
    if sa == "ghost" {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "serviceaccounts \"ghost\" not found", "reason": "NotFound",
            "details": {"name": "ghost", "kind": "serviceaccounts"}, "code": 404
        });
        return (StatusCode::NOT_FOUND, axum::Json(status)).into_response();
    }
    let n = {
        let mut n = 0;
        issuer.issued.send_modify(|c| {
            *c += 1;
            n = *c;
        });
        n
    };
    let ttl = tr.spec.expiration_seconds.unwrap_or(3600);
    let expires = issuer
        .clock
        .now()
        .saturating_add(SignedDuration::from_secs(ttl))
        .unwrap();
    tr.status = Some(TokenRequestStatus {
        token: format!("issued-token-{n}-for-{ns}-{sa}"),
        expiration_timestamp: Time(expires),
    });
    (StatusCode::CREATED, axum::Json(tr)).into_response()
}

/// The API router on a memory store behind the TokenRequest stand-in, and an admin client.
async fn api(issuer: Arc<Issuer>) -> (Client, watch::Sender<bool>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (tx, rx) = watch::channel(false);
    let state =
        AppState::new(store, vec![(TOKEN.into(), UserInfo::admin("admin"))]).with_shutdown(rx);
    let router = axum::Router::new()
        .route(
            "/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
            post(issue),
        )
        .with_state(issuer)
        .fallback_service(skiff_api::app(Arc::new(state)));
    let client = client_over(router, TOKEN);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in ["default", "kube-system", "kube-node-lease", "team-a"] {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        namespaces
            .create(&PostParams::default(), &obj)
            .await
            .expect("a namespace");
    }
    (client, tx)
}

fn fileserver_image() -> String {
    // At run time: a test binary reused from a shared target directory must read this checkout.
    let path = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../samples/fileserver/server.wasm");
    let path = path.canonicalize().unwrap_or_else(|e| {
        panic!(
            "sample {} is missing ({e}); run samples/build.sh",
            path.display()
        )
    });
    format!("file://{}", path.display())
}

struct TestNode {
    network: Network,
    _handle: NodeHandle,
    dir: PathBuf,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn node(client: &Client, clock: &ManualClock) -> TestNode {
    let dir = std::env::temp_dir().join(format!(
        "skiff-projected-{}-{}",
        std::process::id(),
        Timestamp::now().as_nanosecond()
    ));
    let network = Network::new();
    let mut rt_config = RuntimeConfig::new(dir.join("runtime"));
    rt_config.max_instances = 64;
    let net = network.clone();
    let runtime = tokio::task::spawn_blocking(move || Runtime::new(rt_config, net))
        .await
        .unwrap()
        .expect("the wasm runtime");
    let images = WasmImages::new(dir.join("images"), None, None, true).expect("images");
    let mut runtimes = Runtimes::new();
    runtimes.add(Arc::new(runtime), Arc::new(images));
    let mut config = NodeConfig::new(
        "node-p",
        client.clone(),
        runtimes,
        network.clone(),
        "endpoint-token",
    );
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.pod_cidr = Some("10.244.9.0/24".into());
    config.token_clock = Some(Arc::new(clock.clone()));
    let handle = skiff_host::start(config).await.expect("the node starts");
    TestNode {
        network,
        _handle: handle,
        dir,
    }
}

/// A fileserver pod serving its `kube-api-access` volume (as the ServiceAccount admission
/// plugin writes it), with a secret volume beside it.
fn pod(name: &str, service_account: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": "node-p",
            "serviceAccountName": service_account,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "server", "image": fileserver_image(),
                "env": [{"name": "ROOT", "value": MOUNT}],
                "ports": [{"containerPort": 8080}],
                "volumeMounts": [
                    {"name": format!("kube-api-access-{service_account}"), "mountPath": MOUNT, "readOnly": true},
                    {"name": "creds", "mountPath": "/creds", "readOnly": true}
                ]
            }],
            "volumes": [
                {"name": format!("kube-api-access-{service_account}"), "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3600, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                    ]
                }},
                {"name": "creds", "secret": {"secretName": "creds"}}
            ]
        }
    }))
    .unwrap()
}

async fn get(network: &Network, ip: IpAddr, path: &str) -> (u16, String) {
    let req = http::Request::get(format!("http://{ip}:8080{path}"))
        .body(empty_body())
        .unwrap();
    let resp = network.send(None, req).await.expect("a response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_reads_its_projected_token_which_rotates_and_never_touches_the_disk() {
    let clock = ManualClock::new(Timestamp::now());
    let issuer = Arc::new(Issuer {
        clock: clock.clone(),
        asked: Mutex::new(Vec::new()),
        issued: watch::Sender::new(0),
    });
    let (client, _shutdown) = api(issuer.clone()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB-test-ca\n-----END CERTIFICATE-----\n";
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": ca}}),
    )
    .unwrap();
    match cms.create(&PostParams::default(), &cm).await {
        Ok(_) => {}
        // Made by the ServiceAccount admission plugin already.
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating kube-root-ca.crt: {e}"),
    }
    let secret_value = "s3cr3t-value-projected-test";
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team-a");
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "creds"}, "stringData": {"password": secret_value}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let node = node(&client, &clock).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "team-a");
    let created = pods
        .create(&PostParams::default(), &pod("reader", "default"))
        .await
        .unwrap();
    let running = wait_object(&pods, "reader", DEADLINE, |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await
    .expect("the pod runs");
    let ip: IpAddr = running.status.unwrap().pod_ip.unwrap().parse().unwrap();

    // What the node asked for: kubelet's request, bound to this pod.
    {
        let asked = issuer.asked.lock().unwrap();
        assert_eq!(asked.len(), 1, "one token for one source: {asked:?}");
        let (ns, sa, tr) = &asked[0];
        assert_eq!((ns.as_str(), sa.as_str()), ("team-a", "default"));
        assert!(tr.spec.audiences.is_empty(), "the server's own audiences");
        assert_eq!(tr.spec.expiration_seconds, Some(3600));
        let bound = tr.spec.bound_object_ref.as_ref().expect("bound to the pod");
        assert_eq!(bound.kind.as_deref(), Some("Pod"));
        assert_eq!(bound.api_version.as_deref(), Some("v1"));
        assert_eq!(bound.name.as_deref(), Some("reader"));
        assert_eq!(bound.uid, created.metadata.uid);
    }

    // The guest reads the three files of the default volume.
    let first = "issued-token-1-for-team-a-default";
    assert_eq!(get(&node.network, ip, "/token").await, (200, first.into()));
    assert_eq!(get(&node.network, ip, "/ca.crt").await, (200, ca.into()));
    assert_eq!(
        get(&node.network, ip, "/namespace").await,
        (200, "team-a".into())
    );

    // Neither the secret nor the token is on the node's disk.
    assert_eq!(
        files_containing(&node.dir, secret_value.as_bytes()),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        files_containing(&node.dir, first.as_bytes()),
        Vec::<PathBuf>::new()
    );

    // 80% of the hour later the node asks again, and the file changes in the running pod.
    let mut issued = issuer.issued.subscribe();
    clock.advance(SignedDuration::from_mins(49));
    tokio::time::timeout(DEADLINE, issued.wait_for(|n| *n >= 2))
        .await
        .expect("the token is rotated before the deadline")
        .unwrap();
    let second = "issued-token-2-for-team-a-default";
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = get(&node.network, ip, "/token").await;
        assert_eq!(status, 200, "{body}");
        if body == second {
            break;
        }
        assert_eq!(body, first, "the old token until the swap");
        assert!(
            tokio::time::Instant::now() < until,
            "the rotated token never reaches the volume"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        files_containing(&node.dir, second.as_bytes()),
        Vec::<PathBuf>::new()
    );

    // A ServiceAccount the server refuses: FailedMount with its message, the pod waits.
    pods.create(&PostParams::default(), &pod("orphan", "ghost"))
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "team-a");
    let message = wait_event(&events, "orphan", "FailedMount", DEADLINE)
        .await
        .expect("a FailedMount event for the refused token");
    assert_eq!(
        message,
        "MountVolume.SetUp failed for volume \"kube-api-access-ghost\" : failed to fetch token: \
         serviceaccounts \"ghost\" not found"
    );
    let waiting = wait_object(&pods, "orphan", DEADLINE, |p| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .and_then(|c| c.state.as_ref()?.waiting.as_ref())
            .is_some_and(|w| w.reason.as_deref() == Some("ContainerCreating"))
    })
    .await
    .expect("the container waits in ContainerCreating");
    assert_eq!(
        waiting.status.unwrap().phase.as_deref(),
        Some("Pending"),
        "never run without its token"
    );

    for name in ["reader", "orphan"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
        wait_deleted(&pods, name, DEADLINE)
            .await
            .expect("the pod is deleted");
    }
}
