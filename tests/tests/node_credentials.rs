//! Nodes' own credentials end to end: a node joining with a bootstrap token from `skiff token
//! create` gets a `system:node:NAME` certificate through an auto-approved CSR (and an expired
//! bootstrap token authenticates nobody); nodes with minted kubeconfigs run pods; the node
//! endpoint refuses the admin's and users' tokens on every path, while `kubectl logs` (the API
//! server's credential) and a Service call from one node's pod to another node's pod (the nodes'
//! `skiff-node` tokens on `/endpoints`) work. The server runs `--authorization-mode Node,RBAC`,
//! so the default bindings of bootstrappers and nodes are what lets all this happen.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Pod;
use skiff_tests::fixtures::{answering_pod, is_ready, url_encode};
use skiff_tests::{Cluster, Node, ok, skiff_bin, wait_for, wait_object};

/// How long a pod, a node or a route may take to be what a test waits for.
const WAIT: Duration = Duration::from_secs(120);

fn image(c: &Cluster) -> String {
    format!("{}/samples/frontend:1.0", c.registry().addr)
}

/// A frontend pod `name` labelled `app: APP` on `node`, serving 8080.
fn frontend_pod(c: &Cluster, name: &str, app: &str, node: &str) {
    let image = image(c);
    c.apply_in(
        "default",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  nodeName: {node}
  containers:
  - name: app
    image: {image}
    ports: [{{containerPort: 8080}}]
    env:
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    readinessProbe:
      httpGet: {{path: /, port: 8080}}
      periodSeconds: 1
"#
        ),
    );
}

async fn wait_ready(c: &Cluster, name: &str) -> Pod {
    wait_object(
        &c.pods("default"),
        name,
        "to be Ready",
        WAIT,
        |p: Option<&Pod>| p.is_some_and(is_ready),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()))
    .expect("the pod is there")
}

/// `skiff token create` with the admin kubeconfig: the token it prints.
fn token_create(c: &Cluster, args: &[&str]) -> String {
    let out = Command::new(skiff_bin())
        .args(["token", "create", "--kubeconfig"])
        .arg(&c.server.kubeconfig)
        .args(args)
        .output()
        .expect("skiff token create runs");
    ok(&out).trim().to_string()
}

/// A kubeconfig for the cluster with a bearer token.
fn token_kubeconfig(c: &Cluster, token: &str, path: &Path) {
    let ca = std::fs::read_to_string(c.server.dir.join("pki/ca.crt")).expect("the CA");
    let text = skiff_api::pki::kubeconfig(&c.server.url, &ca, "bootstrap", token);
    std::fs::write(path, text).expect("writing a kubeconfig");
}

/// `kubectl --kubeconfig FILE ARGS`, its output whatever the exit status.
fn kubectl_as(c: &Cluster, kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(c.kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `GET path` on `addr` over HTTP/1.0 with the given headers: the status and body.
fn raw_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("the node endpoint accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("sending");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A node joins with `skiff token create` and a bootstrap kubeconfig: its kubeconfig holds
/// `system:node:NAME` in `system:nodes`, `kubectl get csr` shows the request approved and
/// issued, it runs a pod whose logs kubectl reads; an expired bootstrap token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joins_with_a_bootstrap_token_and_gets_its_own_certificate() {
    let Some(mut c) = Cluster::builder()
        .server_args(&["--authorization-mode", "Node,RBAC"])
        .kubectl()
        .push("frontend/frontend.wasm", "samples/frontend:1.0")
        .start()
        .await
    else {
        return;
    };
    let token = token_create(&c, &["--ttl", "1h", "--description", "e2e joiner"]);
    let (id, _) = token.split_once('.').expect("a token is ID.SECRET");
    assert!(
        id.len() == 6 && token.len() == 23,
        "kubeadm's token form: {token}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap.kubeconfig");
    token_kubeconfig(&c, &token, &bootstrap);
    let (whoami_ok, whoami) = kubectl_as(&c, &bootstrap, &["auth", "whoami"]);
    assert!(whoami_ok, "{whoami}");
    assert!(
        whoami.contains(&format!("system:bootstrap:{id}")),
        "{whoami}"
    );
    assert!(
        whoami.contains("system:bootstrappers:skiff:default-node-token"),
        "{whoami}"
    );

    c.add_bootstrapping_node("joiner", &bootstrap).await;
    let node: &Node = c.node("joiner");
    let (mine_ok, mine) = kubectl_as(&c, &node.kubeconfig, &["auth", "whoami"]);
    assert!(mine_ok, "{mine}");
    assert!(mine.contains("system:node:joiner"), "{mine}");
    assert!(mine.contains("system:nodes"), "{mine}");
    let text = std::fs::read_to_string(&node.kubeconfig).unwrap();
    assert!(text.contains("client-certificate-data"), "{text}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&node.kubeconfig)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let csrs = c.k(&["get", "csr"]);
    let row = csrs
        .lines()
        .find(|l| l.contains("kubernetes.io/kube-apiserver-client-kubelet"))
        .unwrap_or_else(|| panic!("no node CSR in\n{csrs}"));
    assert!(row.contains(&format!("system:bootstrap:{id}")), "{row}");
    assert!(row.contains("Approved,Issued"), "{row}");

    frontend_pod(&c, "on-joiner", "joined", "joiner");
    wait_ready(&c, "on-joiner").await;
    let logs = c.try_k(&["logs", "on-joiner"]);
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );

    // An expired token authenticates nobody.
    let expired = "a1b2c3.0123456789abcdef";
    let out = c.try_k_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Secret
metadata: {name: bootstrap-token-a1b2c3, namespace: kube-system}
type: bootstrap.kubernetes.io/token
stringData:
  token-id: a1b2c3
  token-secret: 0123456789abcdef
  expiration: "2020-01-01T00:00:00Z"
  usage-bootstrap-authentication: "true"
  auth-extra-groups: system:bootstrappers:skiff:default-node-token
"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stale = dir.path().join("expired.kubeconfig");
    token_kubeconfig(&c, expired, &stale);
    let (refused_ok, refused) = kubectl_as(&c, &stale, &["get", "--raw", "/api"]);
    assert!(!refused_ok, "{refused}");
    assert!(refused.contains("Unauthorized"), "{refused}");
    c.shutdown().await;
}

/// Two nodes with minted kubeconfigs: the node endpoint answers the API server (kubectl logs)
/// and, on `/endpoints`, the other node (a Service call across nodes), and refuses the admin's
/// token, a ServiceAccount's token and a `skiff-node` token bound to no Node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_node_endpoint_admits_the_api_server_and_other_nodes_only() {
    let Some(c) = Cluster::builder()
        .server_args(&["--authorization-mode", "Node,RBAC"])
        .kubectl()
        .push("frontend/frontend.wasm", "samples/frontend:1.0")
        .loopback_zones(&["a", "b"])
        .start()
        .await
    else {
        return;
    };
    let (first, second) = (&c.nodes[0], &c.nodes[1]);
    frontend_pod(&c, "caller", "caller", &first.name);
    frontend_pod(&c, "backend", "backend", &second.name);
    c.k(&["create", "service", "clusterip", "backend", "--tcp=80:8080"]);
    wait_ready(&c, "caller").await;
    let backend = wait_ready(&c, "backend").await;
    let backend_ip = backend
        .status
        .and_then(|s| s.pod_ip)
        .expect("the backend has an IP");

    // The API server's credential: kubectl logs and the harness's node calls.
    let logs = c.try_k(&["logs", "caller"]);
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    // A pod on the first node reaches the backend on the second through /endpoints.
    let url = format!(
        "/proxy/default/caller/8080/call?url={}",
        url_encode("http://backend/")
    );
    let mut last = String::new();
    let reached = wait_for("the caller to reach the backend", WAIT, || {
        let answer = first.get(&url);
        last = format!("{answer:?}");
        async move {
            match answer {
                Ok((200, body)) => body
                    .strip_prefix("upstream: 200\n")
                    .map(|rest| answering_pod(rest).to_string()),
                _ => None,
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}; last answer {last}\n{}", c.node_logs()));
    assert_eq!(reached, "backend");

    let admin = c.server.token().expect("the admin token");
    let sa = c.k(&["create", "token", "default"]).trim().to_string();
    let unbound = c
        .k(&[
            "create",
            "token",
            "skiff-node",
            "-n",
            "kube-system",
            "--audience",
            skiff_meta::names::NODE_ENDPOINT_AUDIENCE,
        ])
        .trim()
        .to_string();
    let logs_path = "/containerLogs/default/backend/app";
    let endpoint_path = format!("/endpoints/{backend_ip}/8080/");
    for (who, token) in [
        ("the admin", admin.as_str()),
        ("a ServiceAccount", sa.as_str()),
        ("an unbound skiff-node token", unbound.as_str()),
    ] {
        let bearer = format!("Bearer {token}");
        // A token for another audience is not valid here (401); a valid one of a caller
        // the path is not for is refused (403).
        let (status, body) = raw_get(&second.addr, logs_path, &[("Authorization", &bearer)]);
        assert!(
            status == 401 || status == 403,
            "{who} on {logs_path}: {status} {body}"
        );
        let (status, body) = raw_get(
            &second.addr,
            &endpoint_path,
            &[("skiff-node-authorization", &bearer)],
        );
        assert!(
            status == 401 || status == 403,
            "{who} on {endpoint_path}: {status} {body}"
        );
    }
    let (status, body) = raw_get(
        &second.addr,
        logs_path,
        &[("Authorization", &format!("Bearer {admin}"))],
    );
    assert_eq!(status, 403, "the admin on {logs_path}: {body}");
    assert!(body.contains("user=admin"), "{body}");
    let (status, _) = raw_get(&second.addr, logs_path, &[]);
    assert_eq!(status, 401);
    let (status, _) = raw_get(
        &second.addr,
        &endpoint_path,
        &[("skiff-node-authorization", "Bearer not-a-token")],
    );
    assert_eq!(status, 401);
    let (status, body) = second
        .request(logs_path, Some(&second.token))
        .expect("the node endpoint answers");
    assert_eq!(status, 200, "{body}");
    c.shutdown().await;
}

/// A node renews its client certificate before it ends, as kubelet's certificate manager: a
/// certificate of one minute (backdated five, so already past 70% of its lifetime) is replaced
/// through a CSR the node makes as itself, the kubeconfig is rewritten, and the node keeps
/// working — its Lease renewed — after the first certificate has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_renews_its_client_certificate_before_it_ends() {
    let Some(mut c) = Cluster::builder().kubectl().start().await else {
        return;
    };
    let first_end = jiff::Timestamp::now() + Duration::from_secs(60);
    c.add_node_with_certificate_valid_for("renewer", Duration::from_secs(60))
        .await;
    let kubeconfig = c.node("renewer").kubeconfig.clone();
    let certificate = |path: &Path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("client-certificate-data:"))
            .map(|v| v.trim().to_string())
    };
    // The node may renew before it is even Ready (its certificate starts past 70% of its
    // lifetime): wait for the CSR it made as itself to be issued, then for its kubeconfig to
    // hold exactly that certificate.
    let csrs: kube::Api<CertificateSigningRequest> = kube::Api::all(c.client.clone());
    let issued = wait_for("the node's renewal CSR to be issued", WAIT, || {
        let csrs = csrs.clone();
        async move {
            csrs.list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|r| {
                    r.spec.signer_name == "kubernetes.io/kube-apiserver-client-kubelet"
                        && r.spec.username.as_deref() == Some("system:node:renewer")
                })
                .find_map(|r| r.status?.certificate.filter(|cert| !cert.0.is_empty()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
    // A kubeconfig's `client-certificate-data` is the PEM certificate in standard base64.
    let issued = base64::engine::general_purpose::STANDARD.encode(&issued.0);
    wait_for("the node to write the issued certificate", WAIT, || {
        let written = certificate(&kubeconfig).filter(|cert| *cert == issued);
        async move { written.map(|_| ()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));

    // Past the first certificate's end the node still renews its Lease.
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(c.client.clone(), "kube-node-lease");
    wait_object(
        &leases,
        "renewer",
        "a renewal after the first certificate ended",
        WAIT,
        |l| {
            l.and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
                .is_some_and(|t| t.0.as_second() > first_end.as_second() + 1)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
    let (ok, who) = kubectl_as(&c, &kubeconfig, &["auth", "whoami"]);
    assert!(ok, "{who}");
    assert!(who.contains("system:node:renewer"), "{who}");
    c.shutdown().await;
}
