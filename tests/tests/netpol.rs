//! NetworkPolicy end to end: one `skiff server`, a registry and two real `skiff node`
//! processes (zones a and b, each on its own loopback address). Namespaces `team-a` and
//! `team-b`; frontend sample pods (samples/frontend) call out with `/call?url=` from inside a
//! pod, reached through their node's endpoint. team-b runs `web` pods on both nodes (so calls
//! are delivered in-process and through the other node), each serving ports 8080 and 9090,
//! behind the Services `local` (the pod on the caller's node) and `remote` (the other one).
//!
//! Policies apply within one watch event: each change is waited for by polling the call with a
//! deadline.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use skiff_tests::fixtures::{is_ready, url_encode};
use skiff_tests::{Cluster, Node, wait_for, wait_object};

/// How long a pod or a policy change may take to be what a test waits for.
const WAIT: Duration = Duration::from_secs(120);

async fn cluster() -> Option<Cluster> {
    Cluster::builder()
        .kubectl()
        .push("frontend/frontend.wasm", "samples/frontend:1.0")
        .loopback_zones(&["a", "b"])
        .start()
        .await
}

/// A frontend pod `ns/name` on `node` with `labels` (YAML flow map), serving 8080 (`http`)
/// and 9090 (`metrics`).
fn frontend(c: &Cluster, ns: &str, name: &str, node: &str, labels: &str) {
    let image = format!("{}/samples/frontend:1.0", c.registry().addr);
    c.apply_in(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {labels}}}
spec:
  nodeName: {node}
  containers:
  - name: app
    image: {image}
    ports: [{{name: http, containerPort: 8080}}, {{name: metrics, containerPort: 9090}}]
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

async fn ready_ip(c: &Cluster, ns: &str, name: &str) -> String {
    let pod = wait_object(&c.pods(ns), name, "to be Ready", WAIT, |p: Option<&Pod>| {
        p.is_some_and(is_ready)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.node_logs()));
    pod.and_then(|p| p.status)
        .and_then(|s| s.pod_ip)
        .expect("a Ready pod has an IP")
}

/// What a frontend's `/call` saw.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The upstream answered 200.
    Ok,
    /// The outgoing request failed with a refused connection.
    Refused,
    /// Anything else (status and body).
    Other(u16, String),
}

/// Has frontend pod `ns/pod` (on `node`) GET `url`.
fn call(node: &Node, ns: &str, pod: &str, url: &str) -> Outcome {
    let (status, body) = node
        .get(&format!(
            "/proxy/{ns}/{pod}/8080/call?url={}",
            url_encode(url)
        ))
        .unwrap_or_else(|e| panic!("the node endpoint of {} answers: {e:#}", node.name));
    if status == 200 && body.starts_with("upstream: 200\n") {
        Outcome::Ok
    } else if status == 502 && body.contains("ConnectionRefused") {
        Outcome::Refused
    } else {
        Outcome::Other(status, body)
    }
}

/// Polls the call until it has `want`'s outcome (a policy change converges within a watch
/// event, which the test cannot watch); fails with the last outcome.
async fn until(c: &Cluster, node: &Node, ns: &str, pod: &str, url: &str, want: Outcome) {
    let mut last = None;
    let what = format!("{ns}/{pod} calling {url} to be {want:?}");
    let found = wait_for(&what, WAIT, || {
        let got = call(node, ns, pod, url);
        let done = got == want;
        last = Some(got);
        async move { done.then_some(()) }
    })
    .await;
    if let Err(e) = found {
        panic!("{e:#}; last outcome: {last:?}\n{}", c.node_logs());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn default_deny_blocks_other_namespaces_and_an_allowed_namespace_reaches_one_port() {
    let Some(c) = cluster().await else {
        return;
    };
    let (here, there) = (&c.nodes[0], &c.nodes[1]);
    for ns in ["team-a", "team-b"] {
        c.k(&["create", "namespace", ns]);
    }
    frontend(&c, "team-a", "caller", &here.name, "{role: caller}");
    frontend(&c, "team-b", "caller-b", &there.name, "{role: caller}");
    frontend(&c, "team-b", "web-here", &here.name, "{app: web, at: here}");
    frontend(
        &c,
        "team-b",
        "web-there",
        &there.name,
        "{app: web, at: there}",
    );
    c.apply_in(
        "team-b",
        r#"
apiVersion: v1
kind: Service
metadata: {name: local}
spec:
  selector: {app: web, at: here}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: metrics, port: 90, targetPort: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: remote}
spec:
  selector: {app: web, at: there}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: metrics, port: 90, targetPort: 9090}]
"#,
    );
    ready_ip(&c, "team-a", "caller").await;
    ready_ip(&c, "team-b", "caller-b").await;
    let web_here = ready_ip(&c, "team-b", "web-here").await;
    ready_ip(&c, "team-b", "web-there").await;

    let local = "http://local.team-b/";
    let local_metrics = "http://local.team-b:90/";
    let remote = "http://remote.team-b/";
    let remote_metrics = "http://remote.team-b:90/";
    let pod_http = format!("http://{web_here}:8080/");
    let pod_metrics = format!("http://{web_here}:9090/");
    let call_a = |url: &str| call(here, "team-a", "caller", url);
    let call_b = |url: &str| call(there, "team-b", "caller-b", url);

    // Before any policy, team-a reaches team-b's Services and pods on every port.
    until(&c, here, "team-a", "caller", remote, Outcome::Ok).await;
    until(&c, here, "team-a", "caller", local, Outcome::Ok).await;
    for url in [
        remote_metrics,
        local_metrics,
        pod_http.as_str(),
        pod_metrics.as_str(),
    ] {
        assert_eq!(call_a(url), Outcome::Ok, "{url}");
    }
    until(&c, there, "team-b", "caller-b", remote, Outcome::Ok).await;

    // Default deny in team-b: every call into team-b fails with a refused connection, in
    // process (the pod on the caller's node) and through the other node, by Service and by
    // pod IP; team-b's own pods are denied too.
    c.apply_in(
        "team-b",
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"#,
    );
    until(&c, here, "team-a", "caller", remote, Outcome::Refused).await;
    for url in [
        local,
        local_metrics,
        remote_metrics,
        pod_http.as_str(),
        pod_metrics.as_str(),
    ] {
        assert_eq!(call_a(url), Outcome::Refused, "{url}");
    }
    until(&c, there, "team-b", "caller-b", remote, Outcome::Refused).await;
    assert_eq!(call_b(local), Outcome::Refused);

    // Allowing namespace team-a on port 8080: exactly that gets through.
    c.apply_in(
        "team-b",
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-team-a-on-8080}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: team-a}}
    ports:
    - {protocol: TCP, port: 8080}
"#,
    );
    until(&c, here, "team-a", "caller", remote, Outcome::Ok).await;
    assert_eq!(call_a(local), Outcome::Ok);
    assert_eq!(call_a(&pod_http), Outcome::Ok);
    for url in [local_metrics, remote_metrics, pod_metrics.as_str()] {
        assert_eq!(
            call_a(url),
            Outcome::Refused,
            "another port of the same pod: {url}"
        );
    }
    assert_eq!(call_b(remote), Outcome::Refused, "team-b is not team-a");

    // Deleting the policies restores access.
    c.k(&[
        "delete",
        "networkpolicy",
        "-n",
        "team-b",
        "default-deny",
        "from-team-a-on-8080",
    ]);
    until(&c, here, "team-a", "caller", remote_metrics, Outcome::Ok).await;
    for url in [
        local,
        local_metrics,
        remote,
        pod_http.as_str(),
        pod_metrics.as_str(),
    ] {
        assert_eq!(call_a(url), Outcome::Ok, "{url}");
    }
    until(&c, there, "team-b", "caller-b", remote, Outcome::Ok).await;
}
