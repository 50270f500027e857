//! End-to-end tests of hostile wasm guests on a real node (`skiff server`, `skiff registry` and
//! `skiff node` processes): unbounded recursion, huge and growing tables, a log flood, an
//! outgoing request loop, an HTTP fork bomb and a handler that never reads its request body.
//! Each is contained in its own pod with the reason reported (the container's terminated or
//! waiting reason, or a Warning Event while it keeps running), and a well-behaved neighbour pod
//! keeps answering throughout: its latency and the node's resident memory are printed for each
//! case (figures, not assertions).
//!
//! The `skiff` binary comes from `skiff_tests::skiff_bin()` (build it first:
//! `cargo build -p skiff`).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ContainerStateTerminated;
use skiff_tests::fixtures::phase;
use skiff_tests::pods::{POD_WAIT, container, container_log, create_pod, wait_pod};
use skiff_tests::{Cluster, wait_for};

const NODE: &str = "node-1";

/// The node's guest limits for these tests: small enough that every case hits its limit at
/// once (the defaults are in RELIABILITY.md).
const LIMITS: &[&str] = &[
    "--container-log-rate",
    "64Ki",
    "--max-instances-per-pod",
    "8",
    "--outgoing-request-rate",
    "50",
    "--pod-request-timeout",
    "3s",
];

async fn cluster() -> Cluster {
    Cluster::builder()
        .registry()
        .node(NODE, LIMITS)
        .start()
        .await
        .expect("no external tools are needed")
}

/// Waits for the pod's container to terminate; returns its terminated state.
async fn terminated(c: &Cluster, name: &str) -> ContainerStateTerminated {
    wait_pod(c, NODE, name, "a terminated container", |p| {
        container(p, "c")?.state?.terminated
    })
    .await
}

/// Creates pod `name` bound to the node with `spec` (YAML lines indented by two spaces).
async fn create(c: &Cluster, name: &str, spec: &str) {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: NODE\n  {spec}\n"
    );
    create_pod(c, NODE, &yaml).await;
}

/// The log of the pod's container `c`.
fn log_of(c: &Cluster, pod: &str) -> String {
    container_log(c, NODE, pod, "c", "")
}

/// Waits for a Warning Event with `reason` about pod `name`; returns its message.
async fn warning(c: &Cluster, name: &str, reason: &str) -> String {
    wait_for(
        &format!("a {reason} event about {name}"),
        POD_WAIT,
        || async {
            c.events_about("default", name)
                .await
                .into_iter()
                .find_map(|e| {
                    (e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning"))
                        .then(|| e.message.unwrap_or_default())
                })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\nnode log:\n{}", c.node(NODE).log()))
}

/// The node process's resident memory in MiB (from /proc), if it can be read.
fn node_rss_mib(c: &Cluster) -> Option<u64> {
    let pid = c.node(NODE).pid()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// Asks the neighbour pod 20 times (it must answer each) and prints the latencies and the
/// node's memory next to `case`.
fn neighbour_answers(c: &Cluster, case: &str) {
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (code, body) = c
            .node(NODE)
            .get("/proxy/default/hello/8080/")
            .expect("the neighbour answers");
        times.push(t.elapsed());
        assert_eq!(
            (code, body.as_str()),
            (200, "Hello from Skiff!\n"),
            "{case}"
        );
    }
    times.sort();
    println!(
        "{case:<22} neighbour GET p50 {:>7.2?}  max {:>7.2?}  node RSS {} MiB",
        times[times.len() / 2],
        times[times.len() - 1],
        node_rss_mib(c).map_or("?".to_string(), |m| m.to_string())
    );
}

/// POSTs `/stall` on the abuse pod through the node endpoint with a 256 MiB body sent as fast
/// as the connection takes it; returns the response's status line and the bytes the node took.
fn post_stall(addr: &str, token: &str) -> (String, u64) {
    const BODY: u64 = 256 << 20;
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "POST /proxy/default/abuse/8080/stall HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {BODY}\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .expect("head sent");
    let mut writer = stream.try_clone().expect("a second handle");
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0u64;
        while sent < BODY {
            match writer.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n as u64,
            }
        }
        sent
    });
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let sent = sender.join().expect("the sender ends");
    (String::from_utf8_lossy(&head).trim().to_string(), sent)
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_guests_are_contained_per_pod_with_the_reason_reported() {
    let c = cluster().await;
    let hello = c.push("hello-http/hello-http.wasm", "samples/hello-http:1.0");
    let recurse = c.push("testdata/recurse.wasm", "testdata/recurse:1.0");
    let table_grow = c.push("testdata/table-grow.wasm", "testdata/table-grow:1.0");
    let huge_table = c.push("testdata/huge-table.wasm", "testdata/huge-table:1.0");
    let log_flood = c.push("testdata/log-flood.wasm", "testdata/log-flood:1.0");
    let request_loop = c.push("testdata/request-loop.wasm", "testdata/request-loop:1.0");
    let abuse = c.push("testdata/abuse-http.wasm", "testdata/abuse-http:1.0");

    create(
        &c,
        "hello",
        &format!("containers: [{{name: c, image: {hello}, ports: [{{containerPort: 8080}}]}}]"),
    )
    .await;
    wait_pod(&c, NODE, "hello", "Running", |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await;
    neighbour_answers(&c, "idle");

    // Unbounded recursion: the engine's wasm stack limit traps it.
    let never = "restartPolicy: Never\n  containers:";
    create(
        &c,
        "recurse",
        &format!("{never} [{{name: c, image: {recurse}}}]"),
    )
    .await;
    let t = terminated(&c, "recurse").await;
    assert_eq!(t.reason.as_deref(), Some("StackOverflow"), "{t:?}");
    assert!(
        t.message
            .as_deref()
            .unwrap_or("")
            .contains("call stack exhausted"),
        "{t:?}"
    );
    neighbour_answers(&c, "recursion");

    // A table grown without end: the node's table element limit ends the run.
    create(
        &c,
        "table-grow",
        &format!("{never} [{{name: c, image: {table_grow}}}]"),
    )
    .await;
    let t = terminated(&c, "table-grow").await;
    assert_eq!(t.reason.as_deref(), Some("TableLimitExceeded"), "{t:?}");
    assert!(
        t.message.as_deref().unwrap_or("").contains("table limit"),
        "{t:?}"
    );
    neighbour_answers(&c, "growing table");

    // A table declared too large: refused when the container is created.
    create(
        &c,
        "huge-table",
        &format!("containers: [{{name: c, image: {huge_table}}}]"),
    )
    .await;
    let w = wait_pod(&c, NODE, "huge-table", "CreateContainerError", |p| {
        let w = container(p, "c")?.state?.waiting?;
        (w.reason.as_deref() == Some("CreateContainerError")).then_some(w)
    })
    .await;
    let msg = w.message.unwrap_or_default();
    assert!(msg.contains("100000000"), "{msg}");
    neighbour_answers(&c, "declared huge table");

    // Logs as fast as it can: the rate limit drops the excess and says so, in the log and in
    // an Event; the container keeps running.
    create(
        &c,
        "log-flood",
        &format!("containers: [{{name: c, image: {log_flood}}}]"),
    )
    .await;
    let msg = warning(&c, "log-flood", "LogRateLimited").await;
    assert!(msg.contains("65536 bytes/s"), "{msg}");
    let log = log_of(&c, "log-flood");
    assert!(
        log.contains("[skiff] log rate limit of 65536 bytes/s exceeded"),
        "{}",
        &log[..log.len().min(2000)]
    );
    neighbour_answers(&c, "log flood");

    // Outgoing requests in a tight loop, at the neighbour itself (a pod's loopback is its own,
    // so the flood goes to the neighbour's pod IP, served in-process): paced to the pod's rate.
    let hello_ip = wait_pod(&c, NODE, "hello", "a pod IP", |p| {
        p.status.as_ref()?.pod_ip.clone()
    })
    .await;
    create(
        &c,
        "request-loop",
        &format!(
            "containers: [{{name: c, image: {request_loop}, args: [\"http://{hello_ip}:8080/\"]}}]"
        ),
    )
    .await;
    let msg = warning(&c, "request-loop", "OutgoingRequestsThrottled").await;
    assert!(msg.contains("50 per second"), "{msg}");
    neighbour_answers(&c, "outgoing request loop");
    // Its pace: the time from its 100th to its 200th request (the guest logs every 100th).
    let at = |n: u64| {
        let c = &c;
        async move {
            wait_for(&format!("{n} requests sent"), POD_WAIT, || async move {
                let log = log_of(c, "request-loop");
                log.contains(&format!("request-loop: {n} requests"))
                    .then(Instant::now)
            })
            .await
            .expect("the loop goes on")
        }
    };
    let t100 = at(100).await;
    let t200 = at(200).await;
    println!(
        "{:<22} the loop sent about {:.0} requests/s (limit 50)",
        "",
        100.0 / (t200 - t100).as_secs_f64()
    );
    let log = log_of(&c, "request-loop");
    assert!(!log.contains("failed"), "{log}");

    // An HTTP fork bomb: every request calls itself twice; the pod's instance cap answers 503
    // past 8 instances, so the bomb ends and the neighbour is not starved.
    create(
        &c,
        "abuse",
        &format!("containers: [{{name: c, image: {abuse}, ports: [{{containerPort: 8080}}]}}]"),
    )
    .await;
    wait_pod(&c, NODE, "abuse", "Running", |p| {
        (phase(p) == Some("Running")).then_some(())
    })
    .await;
    let node = c.node(NODE);
    let (code, body) = node
        .get("/proxy/default/abuse/8080/bomb")
        .expect("the bomb's root answers");
    println!("{:<22} fork bomb root answered {code}: {}", "", body.trim());
    let msg = warning(&c, "abuse", "InstanceLimitExceeded").await;
    assert!(msg.contains("8 instances"), "{msg}");
    neighbour_answers(&c, "fork bomb");

    // A handler that never reads its 256 MiB request body nor answers: the body is not
    // buffered (the sender is held back), and the deadline kills the instance with a 504.
    let rss_before = node_rss_mib(&c);
    let (addr, token) = (node.addr.clone(), node.token.clone());
    let (status, sent) = tokio::task::spawn_blocking(move || post_stall(&addr, &token))
        .await
        .expect("the client ends");
    println!(
        "{:<22} stalled request: {status:?} after the node took {} MiB of the 256 MiB body; node RSS {:?} -> {:?} MiB",
        "",
        sent >> 20,
        rss_before,
        node_rss_mib(&c)
    );
    assert!(status.contains(" 504 "), "{status}");
    let msg = warning(&c, "abuse", "RequestTimeout").await;
    assert!(msg.contains("504"), "{msg}");
    neighbour_answers(&c, "unread request body");

    // After all of it the abuse pod still serves well-behaved requests.
    let (code, body) = node.get("/proxy/default/abuse/8080/").expect("answers");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}
