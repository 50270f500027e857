//! Two API servers on one etcd, sharing one data directory (started at the same moment, so they
//! must agree on one CA, one service-account key, one admin token), behind a loopback TCP load
//! balancer: a watch on one sees a write made on the other; kubectl and the Python client
//! through either see the same objects; Services created in parallel on both never share a
//! ClusterIP or a NodePort (in ranges small enough that a collision would be likely); a real
//! node runs a Deployment through the balancer. Then the server leading the controllers is
//! killed (SIGKILL) while clients write: the pods keep running and the node stays Ready, the
//! other server's controllers take the Lease and scale the Deployment, the `kubernetes`
//! Service's endpoints drop the dead server, and every write acknowledged before the kill is
//! there.
//!
//! Needs Debian's `etcd` (skipped, with `SKIPPED:`, unless `SKIFF_REQUIRE_TOOLS=1`).

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node as KNode, Pod, Service};
use kube::Api;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use skiff_testkit::lb::Balancer;
use skiff_tests::fixtures::{http_app, is_ready, phase};
use skiff_tests::{Node, Registry, Server, lost_config_maps, ok, tools, wait_for, wait_object};

/// How long a rollout, a takeover or a node may take.
const WAIT: Duration = Duration::from_secs(120);
/// Services created at once, half on each server.
const SERVICES: usize = 50;
/// Creates acknowledged before the kill.
const ACKED_BEFORE_KILL: usize = 200;
/// Creates acknowledged after the kill (through the balancer and the survivor) before the writers
/// stop.
const ACKED_AFTER_KILL: usize = 50;
/// The node-monitor grace period the servers are given (seconds).
const NODE_GRACE_SECONDS: i64 = 10;

/// Flags both servers get: the store, small allocation ranges (a /26 of ClusterIPs and 64
/// NodePorts for 50 Services), a node declared Unknown 10 s after its last renewal (so a node
/// that lost the API would show within the test), leader election as shipped.
fn server_args(etcd: &str) -> Vec<String> {
    let grace = NODE_GRACE_SECONDS.to_string();
    [
        "--etcd-servers",
        etcd,
        "--service-cluster-ip-range",
        "10.96.0.0/26",
        "--service-node-port-range",
        "30000-30063",
        "--node-monitor-grace-period",
        &grace,
    ]
    .map(str::to_string)
    .to_vec()
}

fn addr(server: &Server) -> SocketAddr {
    server
        .url
        .trim_start_matches("https://")
        .parse()
        .expect("a server URL is https://IP:PORT")
}

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

/// The ports of the servers the `default/kubernetes` Endpoints name (all on 127.0.0.1).
fn endpoint_ports(eps: Option<&Endpoints>) -> BTreeSet<u16> {
    eps.and_then(|e| e.subsets.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|s| Some(s.ports.as_ref()?.first()?.port as u16))
        .collect()
}

fn lease_holder(lease: Option<&Lease>) -> Option<String> {
    lease?.spec.as_ref()?.holder_identity.clone()
}

/// The names of the `default` ConfigMaps labelled `ha=seen`, through the Python client with
/// each kubeconfig: one line per kubeconfig.
fn python_names(python: &std::path::Path, kubeconfigs: &[&std::path::Path]) -> Vec<String> {
    let script = r#"
import sys
from kubernetes import client, config
for path in sys.argv[1:]:
    api = client.CoreV1Api(config.new_client_from_config(path))
    items = api.list_namespaced_config_map("default", label_selector="ha=seen").items
    print(" ".join(sorted(c.metadata.name for c in items)))
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(kubeconfigs)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_etcd_survive_losing_one() {
    if skiff_testkit::etcd::available().is_none() {
        return;
    }
    let (Some(kubectl), Some(python)) = (tools::kubectl_132(), tools::python()) else {
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("skiff-e2e-ha-")
        .tempdir()
        .unwrap();
    let etcd = skiff_testkit::etcd::Etcd::start(&tmp.path().join("etcd")).expect("etcd starts");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();

    // Both servers start at the same moment on one empty data directory.
    let args = server_args(&etcd.endpoint());
    let starts: Vec<_> = ["server-1", "server-2"]
        .into_iter()
        .map(|name| {
            let (data, args) = (data.clone(), args.clone());
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Server::start_in(&data, name, &args)
            })
        })
        .collect();
    let mut servers: Vec<Server> = starts
        .into_iter()
        .map(|t| t.join().unwrap().expect("a server starts"))
        .collect();
    // Each server alone; one admin token, one CA for both.
    let via: Vec<Server> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| s.through(&s.url, &format!("via-{i}")).unwrap())
        .collect();
    let clients = [
        via[0].client().await.unwrap(),
        via[1].client().await.unwrap(),
    ];

    // The server whose controllers lead is the one to kill; the balancer sends every
    // connection to it first, so the node and the clients behind it must fail over.
    let leases: Api<Lease> = Api::namespaced(clients[0].clone(), "kube-system");
    let identities: Vec<String> = servers
        .iter()
        .map(|s| format!("skiff-server@{}", s.url))
        .collect();
    let leader = wait_for("a controller leader", WAIT, || async {
        let lease = leases.get_opt(skiff_controllers::leader::NAME).await.ok()?;
        let holder = lease_holder(lease.as_ref())?;
        identities.iter().position(|i| *i == holder)
    })
    .await
    .unwrap();
    let survivor = 1 - leader;
    let lb = Balancer::start(&[addr(&servers[leader]), addr(&servers[survivor])]).unwrap();
    let front = servers[0].through(&lb.url(), "front").unwrap();
    let front_client = front.client().await.unwrap();

    // A watch on one server sees a write made on the other, both ways.
    for (watcher, writer) in [(0, 1), (1, 0)] {
        let name = format!("from-{writer}");
        let watched: Api<ConfigMap> = Api::namespaced(clients[watcher].clone(), "default");
        let rv = watched
            .list(&ListParams::default().limit(1))
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        let mut events = watched
            .watch(&WatchParams::default().labels("ha=seen"), &rv)
            .await
            .unwrap()
            .boxed();
        Api::<ConfigMap>::namespaced(clients[writer].clone(), "default")
            .create(
                &PostParams::default(),
                &config_map(&name, json!({"ha": "seen"})),
            )
            .await
            .unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = events.try_next().await.unwrap() {
                if let WatchEvent::Added(cm) = event {
                    return cm.metadata.name;
                }
            }
            None
        })
        .await
        .expect("the watch on one server sees the other's write in time");
        assert_eq!(seen.as_deref(), Some(name.as_str()));
    }

    // kubectl and the Python client through either server (and the balancer) see the same.
    let mut listings = BTreeSet::new();
    for server in via.iter().chain([&front]) {
        let out = ok(&server
            .kubectl(
                &kubectl,
                &["get", "configmaps", "-l", "ha=seen", "-o", "name"],
            )
            .unwrap());
        listings.insert(out);
    }
    assert_eq!(
        listings.into_iter().collect::<Vec<_>>(),
        ["configmap/from-0\nconfigmap/from-1\n"]
    );
    let lines = python_names(&python, &[&via[0].kubeconfig, &via[1].kubeconfig]);
    assert_eq!(lines, ["from-0 from-1", "from-0 from-1"]);

    // 50 NodePort Services at once, half on each server: no ClusterIP, no NodePort twice.
    let creates = (0..SERVICES).map(|i| {
        let api: Api<Service> = Api::namespaced(clients[i % 2].clone(), "default");
        async move {
            let svc: Service = serde_json::from_value(json!({
                "metadata": {"name": format!("svc-{i}")},
                "spec": {"type": "NodePort", "selector": {"app": "none"},
                    "ports": [{"port": 80, "targetPort": 8080}]},
            }))
            .unwrap();
            api.create(&PostParams::default(), &svc).await
        }
    });
    let created = futures::future::join_all(creates).await;
    let (mut ips, mut ports) = (HashSet::new(), HashSet::new());
    for (i, svc) in created.into_iter().enumerate() {
        let svc = svc.unwrap_or_else(|e| panic!("svc-{i}: {e}"));
        let spec = svc.spec.unwrap();
        let ip = spec.cluster_ip.unwrap();
        let port = spec.ports.unwrap()[0].node_port.unwrap();
        assert!(ips.insert(ip.clone()), "ClusterIP {ip} handed out twice");
        assert!(ports.insert(port), "NodePort {port} handed out twice");
    }
    // As stored (and as the other server reads them).
    let stored = Api::<Service>::namespaced(clients[1].clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    let stored_ips: HashSet<String> = stored
        .items
        .iter()
        .filter_map(|s| s.spec.as_ref()?.cluster_ip.clone())
        .collect();
    assert_eq!(
        stored_ips.len(),
        stored.items.len(),
        "stored ClusterIPs are distinct"
    );

    // A real node and a Deployment of two pods, both through the balancer.
    let registry = Registry::start().expect("skiff registry starts");
    let image = registry
        .push(
            &skiff_tests::repo_root().join("samples/hello-http/hello-http.wasm"),
            "samples/hello-http:1.0",
        )
        .unwrap();
    let node = Node::start(&front, "ha-node").expect("skiff node starts");
    let node_ready = |n: Option<&KNode>| {
        n.and_then(|n| n.status.as_ref()?.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let nodes: Api<KNode> = Api::all(front_client.clone());
    wait_object(&nodes, "ha-node", "to be Ready", WAIT, node_ready)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", node.log()));
    let out = front
        .kubectl_stdin(
            &kubectl,
            &["apply", "-f", "-"],
            Some(&http_app("web", &image, 2, "", false)),
        )
        .unwrap();
    ok(&out);
    let rollout = ["rollout", "status", "deployment/web", "--timeout=180s"];
    ok(&front.kubectl(&kubectl, &rollout).unwrap());
    let pods: Api<Pod> = Api::namespaced(front_client.clone(), "default");
    let running = |pods: &[Pod]| -> BTreeSet<String> {
        pods.iter()
            .filter(|p| phase(p) == Some("Running") && is_ready(p))
            .filter_map(|p| p.metadata.uid.clone())
            .collect()
    };
    let web = ListParams::default().labels("app=web");
    let before = running(&pods.list(&web).await.unwrap().items);
    assert_eq!(before.len(), 2);

    // The kubernetes Service's endpoints name both servers.
    let ports: BTreeSet<u16> = servers.iter().map(|s| addr(s).port()).collect();
    let endpoints: Api<Endpoints> = Api::namespaced(clients[0].clone(), "default");
    wait_object(
        &endpoints,
        "kubernetes",
        "to name both servers",
        WAIT,
        |e| endpoint_ports(e) == ports,
    )
    .await
    .unwrap();

    // Still the leader (it renews every 2 s), and what the balancer reaches first.
    let still = leases.get(skiff_controllers::leader::NAME).await.unwrap();
    assert_eq!(
        lease_holder(Some(&still)).as_deref(),
        Some(identities[leader].as_str())
    );
    assert!(lb.forwarded_to(addr(&servers[leader])) > 0);

    // Writers: two on each server directly, two through the balancer; each keeps the names
    // it was told were created.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let writer_clients = [
        clients[0].clone(),
        clients[0].clone(),
        clients[1].clone(),
        clients[1].clone(),
        front_client.clone(),
        front_client.clone(),
    ];
    let writers: Vec<_> = writer_clients
        .into_iter()
        .enumerate()
        .map(|(w, client)| {
            let (stop, acked_so_far) = (stop.clone(), acked_so_far.clone());
            tokio::spawn(async move {
                let api: Api<ConfigMap> = Api::namespaced(client, "default");
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w{w}-{i}");
                    match api
                        .create(
                            &PostParams::default(),
                            &config_map(&name, json!({"ha": "written"})),
                        )
                        .await
                    {
                        Ok(_) => {
                            acked.push(name);
                            acked_so_far.fetch_add(1, Ordering::Relaxed);
                        }
                        // Unknown outcome (the server died mid-request): not acknowledged.
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                acked
            })
        })
        .collect();
    wait_for("the writers' first creates", WAIT, || async {
        (acked_so_far.load(Ordering::Relaxed) >= ACKED_BEFORE_KILL).then_some(())
    })
    .await
    .unwrap();
    servers[leader].kill();
    let killed_at = jiff::Timestamp::now();
    let acked_at_kill = acked_so_far.load(Ordering::Relaxed);
    // The writers through the balancer and the survivor go on after the kill: wait for more
    // acknowledged creates.
    wait_for("creates acknowledged after the kill", WAIT, || async {
        (acked_so_far.load(Ordering::Relaxed) >= acked_at_kill + ACKED_AFTER_KILL).then_some(())
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(acknowledged.len() >= acked_at_kill);

    // The survivor's controllers take the Lease.
    let survivor_client = clients[survivor].clone();
    let leases: Api<Lease> = Api::namespaced(survivor_client.clone(), "kube-system");
    let identity = identities[survivor].clone();
    wait_object(
        &leases,
        skiff_controllers::leader::NAME,
        "the surviving server's controllers to lead",
        WAIT,
        |l| lease_holder(l).as_deref() == Some(identity.as_str()),
    )
    .await
    .unwrap();

    // Every acknowledged write is there.
    let written = Api::<ConfigMap>::namespaced(survivor_client.clone(), "default");
    let (lost, _) = lost_config_maps(
        &written,
        &ListParams::default().labels("ha=written"),
        &acknowledged,
    )
    .await
    .unwrap();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );

    // The node renews its Lease through the balancer past the node grace period (10 s) after
    // the kill; then it is still Ready and the same pods run.
    let past_grace = killed_at + jiff::SignedDuration::from_secs(NODE_GRACE_SECONDS);
    let node_leases: Api<Lease> = Api::namespaced(survivor_client.clone(), "kube-node-lease");
    wait_object(
        &node_leases,
        "ha-node",
        "a renewal later than the node grace period after the kill",
        WAIT,
        |l| {
            l.and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
                .is_some_and(|t| t.0 > past_grace)
        },
    )
    .await
    .unwrap();
    let nodes: Api<KNode> = Api::all(survivor_client.clone());
    assert!(
        node_ready(nodes.get_opt("ha-node").await.unwrap().as_ref()),
        "the node renews through the balancer\n{}",
        node.log()
    );
    let pods_now: Api<Pod> = Api::namespaced(survivor_client.clone(), "default");
    assert_eq!(
        running(&pods_now.list(&web).await.unwrap().items),
        before,
        "the pods run on"
    );

    // The killed server leaves the kubernetes Service's endpoints (its record expires).
    let endpoints: Api<Endpoints> = Api::namespaced(survivor_client.clone(), "default");
    let survivor_port = BTreeSet::from([addr(&servers[survivor]).port()]);
    wait_object(
        &endpoints,
        "kubernetes",
        "to name the survivor only",
        WAIT,
        |e| endpoint_ports(e) == survivor_port,
    )
    .await
    .unwrap();

    // The controllers reconcile: kubectl through the balancer scales the Deployment.
    ok(&front
        .kubectl(&kubectl, &["scale", "deployment/web", "--replicas=3"])
        .unwrap());
    ok(&front.kubectl(&kubectl, &rollout).unwrap());
    let deployments: Api<Deployment> = Api::namespaced(survivor_client.clone(), "default");
    wait_object(&deployments, "web", "3 ready replicas", WAIT, |d| {
        d.and_then(|d| d.status.as_ref()?.ready_replicas) == Some(3)
    })
    .await
    .unwrap();
    let after = running(&pods_now.list(&web).await.unwrap().items);
    assert_eq!(after.len(), 3);
    assert!(before.is_subset(&after), "the first pods are kept");
    assert!(
        lb.forwarded_to(addr(&servers[survivor])) > 0,
        "the balancer failed over"
    );
    println!(
        "{} creates acknowledged ({acked_at_kill} before the kill), none lost; \
         connections through the balancer: {} to the killed server, {} to the survivor",
        acknowledged.len(),
        lb.forwarded_to(addr(&servers[leader])),
        lb.forwarded_to(addr(&servers[survivor]))
    );
    drop(node);
    drop(registry);
    drop(etcd);
}
