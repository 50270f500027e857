//! Linux containers beside wasm, end to end (issue 12's acceptance): one `skiff server`, a
//! `skiff registry` holding a busybox image built with umoci and pushed with skopeo
//! (`skiff_testkit::oci_image`) besides the wasm samples, and a real `skiff node --runtimes
//! wasm,oci`, driven with kubectl 1.32.
//!
//! Every test here needs root, the kernel (cgroups, network namespaces, a bridge) and the tools
//! runc, conmon, ip, umoci, skopeo and busybox-static: without root a test prints why and passes
//! (it checks nothing); a missing tool skips it the same way, or fails it under
//! `SKIFF_REQUIRE_TOOLS` (CI). Test names start with `root_` so nextest runs them one at a time,
//! and each cluster gets its own cluster CIDR and node name (from the test's name), so bridges
//! and addresses never clash.
//!
//! Names from containers: busybox's `nslookup` asks the node's cluster DNS itself (the static
//! busybox's libc does not resolve names for `nc`), then `nc` talks HTTP to the address (busybox
//! `wget` segfaults in such a root filesystem).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerStatus, Node as KNode, Pod};
use kube::Api;
use skiff_testkit::oci_image::{self, Escape, OciTools};
use skiff_tests::fixtures::url_encode;
use skiff_tests::{Cluster, Server, tools, wait_for, wait_object, wait_ready_file};

/// How long a pod may take to be what a test waits for.
const WAIT: Duration = Duration::from_secs(120);

/// Whether this process runs as root; prints why the test is skipped when not.
fn is_root(test: &str) -> bool {
    // /proc/self belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        eprintln!("SKIPPED {test}: Linux containers need root (cgroups, namespaces, a bridge)");
    }
    root
}

/// The tools every test here needs; `None` (skipped) when one is missing.
fn oci_tools(test: &str) -> Option<OciTools> {
    if !is_root(test) {
        return None;
    }
    for (tool, package) in [("runc", "runc"), ("conmon", "conmon"), ("ip", "iproute2")] {
        skiff_tools::system(tool, &format!("apt-get install {package}"))?;
    }
    Some(OciTools {
        umoci: tools::umoci()?,
        skopeo: tools::skopeo()?,
        busybox: tools::busybox()?,
    })
}

/// A number from 0 to 46 from the test's name, to pick its CIDRs (distinct for the tests here).
fn slot(test: &str) -> u32 {
    test.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    }) % 50
}

/// The cluster CIDR of a test, `10.2XX.0.0/16`: its node gets its pod CIDR from it (not with
/// `--pod-cidr`, which a restarted node could not register with again).
fn cluster_cidr(test: &str) -> String {
    format!("10.{}.0.0/16", 200 + slot(test))
}

/// A cluster for `test`: server (its own cluster CIDR), registry with the wasm samples and the
/// busybox image (`REGISTRY/e2e/busybox:1.0`), one node `node-oci` with `node_args` and the
/// test's pod CIDR. `None` when the test is skipped.
///
/// The node is named after the test (`oci-N`): its bridge is named after the node, so a bridge
/// left by another test never meets this one. Dropping the cluster stops its nodes with SIGTERM
/// first, so they remove their pods' containers, cgroups, namespaces, mounts and the bridge.
struct OciCluster {
    c: Cluster,
    tools: OciTools,
    busybox: String,
    node: String,
}

impl Drop for OciCluster {
    fn drop(&mut self) {
        for node in &self.c.nodes {
            if let Some(pid) = node.pid() {
                stop_gracefully(pid);
            }
        }
    }
}

/// Sends SIGTERM to process `pid` and waits (a minute at most) until it has exited.
fn stop_gracefully(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        // Gone, or a zombie its parent has not reaped yet.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let exited = state
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with('Z'));
        if exited {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("process {pid} did not stop within 60 s of SIGTERM");
}

impl OciCluster {
    async fn start(test: &str, runtimes: &str) -> Option<OciCluster> {
        let tools = oci_tools(test)?;
        let cluster_cidr = cluster_cidr(test);
        let node = format!("oci-{}", slot(test));
        let c = Cluster::builder()
            .kubectl()
            .server_args(&["--cluster-cidr", &cluster_cidr])
            .push("hello-http/hello-http.wasm", "samples/hello-http:1.0")
            .push("frontend/frontend.wasm", "samples/frontend:1.0")
            .node(&node, &["--runtimes", runtimes])
            .start()
            .await?;
        let layout = oci_image::busybox(&tools).expect("the busybox image builds");
        let busybox = oci_image::push(
            &tools,
            &layout,
            &c.registry().addr,
            "e2e/busybox:1.0",
            Some(&c.registry().token),
        )
        .expect("skopeo pushes the busybox image");
        Some(OciCluster {
            c,
            tools,
            busybox,
            node,
        })
    }

    fn wasm(&self, name: &str) -> String {
        format!("{}/samples/{name}", self.c.registry().addr)
    }

    fn node(&self) -> &skiff_tests::Node {
        self.c.node(&self.node)
    }

    /// The node's data directory (`--data-dir`).
    fn data_dir(&self) -> PathBuf {
        self.node().dir.join("data")
    }

    async fn pod(&self, name: &str) -> Pod {
        self.c.pods("default").get(name).await.expect("get pod")
    }

    /// Waits until pod `name` is Running with every container ready.
    async fn running(&self, name: &str) -> Pod {
        wait_object(
            &self.c.pods("default"),
            name,
            "to run with every container ready",
            WAIT,
            |p: Option<&Pod>| p.is_some_and(skiff_tests::fixtures::is_ready),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", self.c.node_logs()))
        .expect("the pod exists")
    }

    /// Waits until `check` holds for the status of container `container` of pod `name`.
    async fn container_until(
        &self,
        name: &str,
        container: &str,
        what: &str,
        check: impl Fn(&ContainerStatus) -> bool,
    ) -> Pod {
        wait_object(
            &self.c.pods("default"),
            name,
            what,
            WAIT,
            |p: Option<&Pod>| p.and_then(|p| status_of(p, container)).is_some_and(&check),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", self.c.node_logs()))
        .expect("the pod exists")
    }

    /// Polls `kubectl logs POD -c CONTAINER` until it contains `needle`; returns the logs.
    async fn logs_until(&self, pod: &str, container: &str, needle: &str) -> String {
        wait_for(
            &format!("the logs of {pod}/{container} to contain {needle:?}"),
            WAIT,
            || async {
                let out = self.c.try_k(&["logs", pod, "-c", container]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.contains(needle).then_some(text)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", self.c.node_logs()))
    }
}

fn status_of<'a>(p: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == container)
}

fn uid_of(p: &Pod) -> String {
    p.metadata.uid.clone().expect("a pod has a uid")
}

/// A pod `name` of class `oci` with one busybox container `c` running `script` with `sh -c`,
/// `extra` YAML lines indented for the container (resources, ports), `restartPolicy`.
fn busybox_pod(image: &str, name: &str, script: &str, restart: &str, extra: &str) -> String {
    let script = serde_json::to_string(script).expect("a string");
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  runtimeClassName: oci
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: {image}
    command: ["sh", "-c", {script}]
{extra}"#
    )
}

/// A Service `name` port 80 to 8080 of the pods labelled `app: NAME`.
fn service(name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
"#
    )
}

/// A busybox script that GETs `/` of `host` (a cluster DNS name) port `port` and prints the
/// answer: `nslookup` for the address, then HTTP/1.0 over `nc` (stdin kept open until the
/// answer is in).
fn fetch_script(host: &str, port: u16) -> String {
    format!(
        "addr=$(nslookup {host} | awk '/^Address/ {{a=$NF}} END {{print a}}'); \
         echo resolved $addr; \
         (printf 'GET / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n'; sleep 3) | nc $addr {port}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn root_oci_busybox_httpd_and_wasm_pods_reach_each_other_through_services() {
    let test = "root_oci_busybox_httpd_and_wasm_pods_reach_each_other_through_services";
    let Some(o) = OciCluster::start(test, "wasm,oci").await else {
        return;
    };
    // The busybox web server behind Service `web`, the wasm hello pod behind Service `hello`,
    // and a wasm frontend that calls URLs.
    o.c.apply(&busybox_pod(
        &o.busybox,
        "web",
        "exec httpd -f -p 8080 -h /www",
        "Always",
        "    ports: [{containerPort: 8080}]\n    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n",
    ));
    o.c.apply(&service("web"));
    let hello = o.wasm("hello-http:1.0");
    let frontend = o.wasm("frontend:1.0");
    o.c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hello, labels: {{app: hello}}}}
spec:
  containers: [{{name: app, image: {hello}, ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: fe}}
spec:
  containers:
  - name: app
    image: {frontend}
    ports: [{{containerPort: 8080}}]
    env: [{{name: POD_NAME, value: fe}}]
"#
    ));
    o.c.apply(&service("hello"));
    let web = o.running("web").await;
    o.running("hello").await;
    o.running("fe").await;
    assert!(
        status_of(&web, "c")
            .is_some_and(|s| s.state.as_ref().is_some_and(|st| st.running.is_some())),
        "{web:?}"
    );

    // wasm -> container, by Service name.
    let answer = wait_for("the frontend to reach busybox httpd", WAIT, || async {
        let (status, body) = o
            .node()
            .get(&format!(
                "/proxy/default/fe/8080/call?url={}",
                url_encode("http://web/")
            ))
            .ok()?;
        (status == 200 && body.contains(oci_image::INDEX_HTML)).then_some(body)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", o.c.node_logs()));
    assert!(answer.starts_with("upstream: 200"), "{answer}");

    // container -> wasm, by Service name (cluster DNS on the node), seen in `kubectl logs`.
    o.c.apply(&busybox_pod(
        &o.busybox,
        "client",
        &fetch_script("hello.default.svc.cluster.local", 80),
        "Never",
        "",
    ));
    let logs = o.logs_until("client", "c", "Hello from Skiff!").await;
    assert!(logs.contains("resolved 10."), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn root_oci_a_wasm_and_a_busybox_container_share_localhost() {
    let test = "root_oci_a_wasm_and_a_busybox_container_share_localhost";
    let Some(o) = OciCluster::start(test, "wasm,oci").await else {
        return;
    };
    let hello = o.wasm("hello-http:1.0");
    let script = "until (printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 1) | nc 127.0.0.1 8080 > /tmp/answer; \
                  grep -q 'Hello from Skiff' /tmp/answer; do sleep 1; done; \
                  cat /tmp/answer; echo reached localhost; exec sleep 3600";
    let script = serde_json::to_string(script).unwrap();
    o.c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: mixed}}
spec:
  runtimeClassName: oci
  terminationGracePeriodSeconds: 2
  containers:
  - {{name: web, image: {hello}, ports: [{{containerPort: 8080}}]}}
  - name: probe
    image: {busybox}
    command: ["sh", "-c", {script}]
"#,
        busybox = o.busybox
    ));
    o.running("mixed").await;
    let logs = o.logs_until("mixed", "probe", "reached localhost").await;
    assert!(logs.contains("Hello from Skiff!"), "{logs}");
}

/// The cgroup directories of pod `uid` on this machine: `/sys/fs/cgroup/*/skiff/UID` (v1) and
/// `/sys/fs/cgroup/skiff/UID` (v2).
fn pod_cgroups(uid: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut found = Vec::new();
    let direct = root.join("skiff").join(uid);
    if direct.exists() {
        found.push(direct);
    }
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let dir = entry.path().join("skiff").join(uid);
        if dir.exists() {
            found.push(dir);
        }
    }
    found
}

/// Which cgroup layout this machine has (printed by the tests that read cgroups).
fn cgroup_layout() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2 (unified)"
    } else {
        "v1 (hybrid or legacy)"
    }
}

/// Nanoseconds of CPU the pod `uid` used: `cpuacct.usage` (v1) or `cpu.stat` `usage_usec` (v2).
fn pod_cpu_ns(uid: &str) -> Option<u64> {
    let v1 = Path::new("/sys/fs/cgroup/cpuacct/skiff")
        .join(uid)
        .join("cpuacct.usage");
    if let Ok(text) = std::fs::read_to_string(&v1) {
        return text.trim().parse().ok();
    }
    let stat =
        std::fs::read_to_string(Path::new("/sys/fs/cgroup/skiff").join(uid).join("cpu.stat"))
            .ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|us| us * 1000)
}

#[tokio::test(flavor = "multi_thread")]
async fn root_oci_memory_and_cpu_limits_hold() {
    let test = "root_oci_memory_and_cpu_limits_hold";
    let Some(o) = OciCluster::start(test, "wasm,oci").await else {
        return;
    };
    // Memory: a shell doubling a string until the 32Mi limit OOM-kills it.
    o.c.apply(&busybox_pod(
        &o.busybox,
        "hog",
        "echo start; x=0123456789abcdef; while true; do x=$x$x; done",
        "Never",
        "    resources: {limits: {memory: 32Mi}}\n",
    ));
    let hog = o
        .container_until("hog", "c", "to be OOMKilled", |s| {
            let reason = |t: Option<&k8s_openapi::api::core::v1::ContainerStateTerminated>| {
                t.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
            };
            reason(s.state.as_ref().and_then(|st| st.terminated.as_ref()))
                || reason(s.last_state.as_ref().and_then(|st| st.terminated.as_ref()))
        })
        .await;
    eprintln!("memory limit: {:?}", status_of(&hog, "c"));

    // CPU: a busy loop under 200m, measured from the pod's cgroup over two seconds.
    o.c.apply(&busybox_pod(
        &o.busybox,
        "spin",
        "while :; do :; done",
        "Always",
        "    resources: {limits: {cpu: 200m}}\n",
    ));
    let spin = o.running("spin").await;
    let uid = uid_of(&spin);
    let before = pod_cpu_ns(&uid).unwrap_or_else(|| {
        panic!(
            "no cpu usage for pod {uid} in {:?} ({})",
            pod_cgroups(&uid),
            cgroup_layout()
        )
    });
    let start = Instant::now();
    // A measurement window, not a wait for a condition: the busy loop runs meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pod_cpu_ns(&uid).expect("cpu usage");
    let share = (after - before) as f64 / start.elapsed().as_nanos() as f64;
    eprintln!(
        "cpu limit 200m: the busy loop used {:.1}% of one cpu (cgroup {})",
        share * 100.0,
        cgroup_layout()
    );
    assert!(
        (0.10..=0.35).contains(&share),
        "a busy loop under a 200m limit used {:.1}% of one cpu",
        share * 100.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn root_oci_kubectl_exec_returns_the_exit_code_and_logs_show_output() {
    let test = "root_oci_kubectl_exec_returns_the_exit_code_and_logs_show_output";
    let Some(o) = OciCluster::start(test, "wasm,oci").await else {
        return;
    };
    o.c.apply(&busybox_pod(
        &o.busybox,
        "shell",
        "echo hello from busybox; exec sleep 3600",
        "Always",
        "",
    ));
    o.running("shell").await;
    o.logs_until("shell", "c", "hello from busybox").await;
    let out =
        o.c.try_k(&["exec", "shell", "--", "sh", "-c", "echo hi; exit 7"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "kubectl exec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}

/// A `skiff node` process this test starts itself (to restart one on its data directory, or to
/// run one as another user); killed on drop.
struct NodeProcess {
    child: Child,
    log: PathBuf,
    /// The node endpoint, `IP:PORT`.
    addr: String,
}

impl NodeProcess {
    /// Starts `skiff node --name NAME --data-dir DATA` against `server` with `args`, through
    /// `wrapper` (e.g. setpriv) when given, logging to `log`; waits for its ready file.
    fn start(
        skiff: &Path,
        kubeconfig: &Path,
        name: &str,
        data: &Path,
        log: &Path,
        wrapper: &[&str],
        args: &[&str],
    ) -> NodeProcess {
        let ready = data.with_extension("ready");
        let _ = std::fs::remove_file(&ready);
        let out = std::fs::File::create(log).expect("a node log");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(skiff);
                c
            }
            None => Command::new(skiff),
        };
        cmd.arg("node")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--name", name, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--ready-file")
            .arg(&ready)
            .args(args)
            .env("SKIFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let mut child = cmd.spawn().expect("skiff node starts");
        let ready = match wait_ready_file(&ready, &mut child, Duration::from_secs(120)) {
            Ok(ready) => ready,
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "the node did not come up: {e:#}\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        };
        NodeProcess {
            child,
            log: log.to_path_buf(),
            addr: ready
                .get("nodeEndpoint")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        stop_gracefully(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- node log ---\n{}", self.log());
        }
    }
}

/// `runc state` of container `id` under the node's runtime root: its pid while it runs.
fn runc_pid(data: &Path, id: &str) -> Option<i64> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(data.join("oci/runtime"))
        .args(["state", id])
        .output()
        .ok()?;
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    (state["status"] == "running").then(|| state["pid"].as_i64())?
}

#[tokio::test(flavor = "multi_thread")]
async fn root_oci_a_restarted_node_readopts_its_running_container() {
    let test = "root_oci_a_restarted_node_readopts_its_running_container";
    let Some(mut o) = OciCluster::start(test, "wasm,oci").await else {
        return;
    };
    // Runs until SIGUSR1, then exits 3.
    o.c.apply(&busybox_pod(
        &o.busybox,
        "durable",
        "trap 'exit 3' USR1; echo up; while :; do sleep 0.2; done",
        "Never",
        "",
    ));
    let pod = o.running("durable").await;
    let uid = uid_of(&pod);
    let restarts = status_of(&pod, "c").map(|s| s.restart_count);
    let data = o.data_dir();
    let id = format!("{uid}-c");
    let pid = runc_pid(&data, &id).expect("runc knows the running container");

    // kill -9 of the node, then the same node again on its data directory.
    let name = o.node.clone();
    o.c.node_mut(&name).kill();
    assert_eq!(
        runc_pid(&data, &id),
        Some(pid),
        "the container outlives its node"
    );
    let node = NodeProcess::start(
        &skiff_tests::skiff_bin(),
        &o.node().kubeconfig,
        &name,
        &data,
        &o.node().dir.join("node-again.log"),
        &[],
        &["--runtimes", "wasm,oci"],
    );
    // The Node names the new process's endpoint once the restarted node has registered.
    let port = node
        .addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<i32>().ok());
    let nodes: Api<KNode> = Api::all(o.c.client.clone());
    wait_object(
        &nodes,
        &name,
        "to name the restarted node's endpoint",
        WAIT,
        |n: Option<&KNode>| {
            n.and_then(|n| {
                n.status
                    .as_ref()?
                    .daemon_endpoints
                    .as_ref()?
                    .kubelet_endpoint
                    .as_ref()
            })
            .is_some_and(|e| Some(e.port) == port)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", node.log()));
    // The restarted node has reported the pod (it owns its status again): still Running, the
    // same process, no restart.
    let again = o.running("durable").await;
    assert_eq!(runc_pid(&data, &id), Some(pid), "the same process runs on");
    assert_eq!(status_of(&again, "c").map(|s| s.restart_count), restarts);
    assert_eq!(
        again.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );

    // Let it exit: the restarted node reports its exit code.
    let killed = Command::new("kill")
        .args(["-USR1", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let done = o
        .container_until("durable", "c", "to exit 3", |s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 3)
        })
        .await;
    assert_eq!(
        done.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed"),
        "{:?}",
        done.status
    );
    drop(node);
}

/// Host veth interfaces (`ip -o link show type veth`), by name.
fn veths() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "type", "veth"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Network namespaces (`ip netns list`), by name.
fn netns_names() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Mount points under `dir` (`/proc/self/mountinfo`).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(dir.as_ref()))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn root_oci_deleting_a_pod_leaves_nothing_behind() {
    let test = "root_oci_deleting_a_pod_leaves_nothing_behind";
    let Some(o) = OciCluster::start(test, "wasm,oci").await else {
        return;
    };
    let veths_before = veths();
    let netns_before = netns_names();
    o.c.apply(&busybox_pod(
        &o.busybox,
        "brief",
        "exec sleep 3600",
        "Always",
        "",
    ));
    let pod = o.running("brief").await;
    let uid = uid_of(&pod);
    let data = o.data_dir();
    let new_veths: Vec<String> = veths()
        .into_iter()
        .filter(|v| !veths_before.contains(v))
        .collect();
    let new_netns: Vec<String> = netns_names()
        .into_iter()
        .filter(|n| !netns_before.contains(n))
        .collect();
    assert!(
        !pod_cgroups(&uid).is_empty(),
        "the running pod has cgroups ({})",
        cgroup_layout()
    );
    assert_eq!(new_veths.len(), 1, "one veth for the pod: {new_veths:?}");
    assert_eq!(
        new_netns.len(),
        1,
        "one namespace for the pod: {new_netns:?}"
    );

    o.c.k(&["delete", "pod", "brief", "--wait=true", "--timeout=60s"]);
    // The API object goes once the node has torn the pod down; check the host right away.
    wait_for(
        "the pod's host objects to go",
        Duration::from_secs(30),
        || async {
            (pod_cgroups(&uid).is_empty()
                && veths().iter().all(|v| !new_veths.contains(v))
                && netns_names().iter().all(|n| !new_netns.contains(n))
                && mounts_under(&data).is_empty())
            .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}: cgroups {:?}, veths {:?}, namespaces {:?}, mounts {:?}\n{}",
            pod_cgroups(&uid),
            veths(),
            netns_names(),
            mounts_under(&data),
            o.c.node_logs()
        )
    });
}

/// The reason a container waits with, if it waits.
fn waiting(p: &Pod, container: &str) -> Option<(String, String)> {
    let w = status_of(p, container)?.state.as_ref()?.waiting.as_ref()?;
    Some((
        w.reason.clone().unwrap_or_default(),
        w.message.clone().unwrap_or_default(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn root_oci_bad_images_are_refused() {
    let test = "root_oci_bad_images_are_refused";
    let Some(o) = OciCluster::start(test, "wasm,oci").await else {
        return;
    };
    let work = tempfile::Builder::new()
        .prefix("skiff-oci-bad-")
        .tempdir()
        .unwrap();
    let registry = &o.c.registry().addr;
    let token = Some(o.c.registry().token.as_str());

    // An image that does not exist: ErrImagePull, then ImagePullBackOff.
    o.c.apply(&busybox_pod(
        &format!("{registry}/e2e/nothing:1.0"),
        "absent",
        "true",
        "Always",
        "",
    ));
    o.container_until("absent", "c", "to fail pulling", |s| {
        s.state
            .as_ref()
            .and_then(|st| st.waiting.as_ref())
            .is_some_and(|w| w.reason.as_deref() == Some("ErrImagePull"))
    })
    .await;
    o.container_until("absent", "c", "to back off pulling", |s| {
        s.state
            .as_ref()
            .and_then(|st| st.waiting.as_ref())
            .is_some_and(|w| w.reason.as_deref() == Some("ImagePullBackOff"))
    })
    .await;

    // A layer whose stored blob no longer matches its digest: refused, naming the digest.
    let tampered = oci_image::layout_of_layers(
        &work.path().join("tampered"),
        "1.0",
        &[oci_image::raw_tar(&[oci_image::Entry::File(
            "tampered".into(),
            format!("{test}\n").into_bytes(),
        )])
        .unwrap()],
        &oci_image::ImageSettings::busybox(),
    )
    .unwrap();
    let image = oci_image::push(&o.tools, &tampered, registry, "e2e/tampered:1.0", token)
        .expect("push the image");
    // skopeo compressed the layer on the way in: tamper with the blob the registry holds.
    let layer = oci_image::pushed_layers(&o.tools, &image).expect("the pushed manifest")[0].clone();
    oci_image::tamper_registry_blob(&o.c.registry().dir.join("data"), &layer)
        .expect("tamper with the stored layer");
    o.c.apply(&busybox_pod(&image, "tampered", "true", "Always", ""));
    let pod = o
        .container_until("tampered", "c", "to be refused its layer", |s| {
            s.state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .is_some_and(|w| {
                    matches!(
                        w.reason.as_deref(),
                        Some("ErrImagePull" | "ImagePullBackOff")
                    ) && w.message.as_deref().is_some_and(|m| m.contains(&layer))
                })
        })
        .await;
    eprintln!("tampered layer: {:?}", waiting(&pod, "c"));

    // An entrypoint that does not exist: CreateContainerError (or RunContainerError) with the
    // runtime's message.
    let missing = oci_image::missing_entrypoint(&o.tools, &work.path().join("missing")).unwrap();
    let image = oci_image::push(&o.tools, &missing, registry, "e2e/missing:1.0", token)
        .expect("push the image");
    o.c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: missing}}
spec:
  runtimeClassName: oci
  restartPolicy: Never
  containers: [{{name: c, image: {image}}}]
"#
    ));
    let pod = o
        .container_until("missing", "c", "to fail creating or starting", |s| {
            let waiting = s.state.as_ref().and_then(|st| st.waiting.as_ref());
            let terminated = s.state.as_ref().and_then(|st| st.terminated.as_ref());
            let named = |m: Option<&String>| m.is_some_and(|m| m.contains("no-such-entrypoint"));
            waiting.is_some_and(|w| {
                matches!(
                    w.reason.as_deref(),
                    Some("CreateContainerError" | "RunContainerError")
                ) && named(w.message.as_ref())
            }) || terminated.is_some_and(|t| {
                matches!(
                    t.reason.as_deref(),
                    Some("CreateContainerError" | "RunContainerError" | "StartError")
                ) && named(t.message.as_ref())
            })
        })
        .await;
    eprintln!("missing entrypoint: {:?}", status_of(&pod, "c"));

    // Layers escaping the root: refused, nothing written outside.
    let outside = work.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // The refusal names the offending entry (not some other fault of the layer).
    for (escape, name, entry) in [
        (Escape::DotDot, "dotdot", "outside/dotdot"),
        (Escape::AbsoluteSymlink, "symlink", "link/symlink"),
    ] {
        let layout = oci_image::escaping(&work.path().join(name), "1.0", &outside, escape).unwrap();
        let image = oci_image::push(
            &o.tools,
            &layout,
            registry,
            &format!("e2e/escape-{name}:1.0"),
            token,
        )
        .expect("push the image");
        o.c.apply(&busybox_pod(
            &image,
            &format!("escape-{name}"),
            "true",
            "Never",
            "",
        ));
        let pod = o
            .container_until(&format!("escape-{name}"), "c", "to be refused", |s| {
                s.state
                    .as_ref()
                    .and_then(|st| st.waiting.as_ref())
                    .is_some_and(|w| {
                        matches!(
                            w.reason.as_deref(),
                            Some(
                                "ErrImagePull"
                                    | "ImagePullBackOff"
                                    | "CreateContainerError"
                                    | "CreateContainerConfigError"
                            )
                        ) && w.message.as_deref().is_some_and(|m| m.contains(entry))
                    })
            })
            .await;
        eprintln!("escaping layer ({name}): {:?}", waiting(&pod, "c"));
        let victim = oci_image::escape_victim(&outside, escape);
        assert!(!victim.exists(), "{} was written", victim.display());
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing is written outside the image store"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn root_oci_pod_on_a_wasm_only_node_stays_pending() {
    let test = "root_oci_pod_on_a_wasm_only_node_stays_pending";
    let Some(o) = OciCluster::start(test, "wasm").await else {
        return;
    };
    o.c.apply(&busybox_pod(&o.busybox, "nowhere", "true", "Never", ""));
    let reason = wait_for(
        "a FailedScheduling event naming the runtime",
        WAIT,
        || async {
            o.c.events_about("default", "nowhere")
                .await
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
                .filter_map(|e| e.message)
                .find(|m| m.contains("oci"))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", o.c.node_logs()));
    eprintln!("FailedScheduling: {reason}");
    let pod = o.pod("nowhere").await;
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );
    assert!(
        skiff_tests::node_of(&pod).is_empty(),
        "the pod is not bound"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn root_oci_a_node_not_run_as_root_says_why_it_has_no_oci() {
    let test = "root_oci_a_node_not_run_as_root_says_why_it_has_no_oci";
    if oci_tools(test).is_none() {
        return;
    }
    let Some(setpriv) = skiff_tools::system("setpriv", "apt-get install util-linux") else {
        return;
    };
    let cluster_cidr = cluster_cidr(test);
    let server = Server::start_with(&["--cluster-cidr", &cluster_cidr]).expect("server starts");
    let client = server.client().await.expect("a client");
    // Everything the unprivileged node reads or writes lives in a directory it owns: the
    // binary (the build's directory may not be readable to it), the kubeconfig, its data.
    let work = tempfile::Builder::new()
        .prefix("skiff-oci-nobody-")
        .tempdir()
        .unwrap();
    let skiff = work.path().join("skiff");
    std::fs::copy(skiff_tests::skiff_bin(), &skiff).unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    skiff_tests::mint_node_kubeconfig(&server, "node-nobody", &kubeconfig).unwrap();
    std::fs::create_dir_all(work.path().join("data")).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(work.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let node = NodeProcess::start(
        &skiff,
        &kubeconfig,
        "node-nobody",
        &work.path().join("data"),
        &work.path().join("node.log"),
        &[
            setpriv.to_str().unwrap(),
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &[],
    );
    let nodes: Api<KNode> = Api::all(client);
    let n = wait_object(
        &nodes,
        "node-nobody",
        "to say why it runs no Linux containers",
        WAIT,
        |n: Option<&KNode>| {
            n.and_then(|n| n.status.as_ref()?.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_.to_ascii_lowercase().contains("oci") && c.status == "False"
                    })
                })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", node.log()))
    .expect("the node exists");
    let condition = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_.to_ascii_lowercase().contains("oci"))
        })
        .cloned()
        .expect("the condition");
    eprintln!("node condition: {condition:?}");
    let said = format!(
        "{} {}",
        condition.reason.unwrap_or_default(),
        condition.message.unwrap_or_default()
    )
    .to_ascii_lowercase();
    assert!(said.contains("root"), "the condition says why: {said}");
    let log = node.log();
    assert!(
        log.lines()
            .map(str::to_ascii_lowercase)
            .any(|l| (l.contains("oci") || l.contains("linux containers")) && l.contains("root")),
        "the node's log says why it has no oci:\n{log}"
    );
    let runtimes = n
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("skiff.dev/runtime"))
        .cloned()
        .unwrap_or_default();
    assert!(!runtimes.contains("oci"), "runtime label {runtimes:?}");
}
