//! Tests of the pod network: names and address checks, and (as root) bridges and namespaces.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::*;

#[test]
fn bridge_names_fit_an_interface_name_and_differ_per_node() {
    let a = Bridge::name_for("node-a");
    assert!(a.starts_with("skiff") && a.len() <= IFNAME_MAX, "{a}");
    assert_eq!(a, Bridge::name_for("node-a"));
    assert_ne!(a, Bridge::name_for("node-b"));
    check_ifname(&a).unwrap();
}

#[test]
fn namespace_names_are_plain_for_a_uid_and_hashed_otherwise() {
    let uid = "3f0c1a9e-5b7d-4c2a-9e1f-0123456789ab";
    assert_eq!(netns_name(uid), format!("skiff-{uid}"));
    let odd = netns_name("default/web");
    assert!(odd.starts_with("skiff_") && !odd.contains('/'), "{odd}");
    assert_eq!(odd, netns_name("default/web"));
    assert_ne!(odd, netns_name("default/web2"));
    for id in ["", "a b", "ns/name", &"x".repeat(65)] {
        let name = netns_name(id);
        assert!(name.starts_with("skiff_"), "{id:?} -> {name}");
        assert!(is_pod_netns(&name));
    }
    assert!(is_pod_netns(&netns_name(uid)));
    // "." and ".." are names `ip netns` refuses, but only as a whole name.
    assert_eq!(netns_name(".."), "skiff-..");
    assert!(!is_pod_netns("cni-1234") && !is_pod_netns("skiff-") && !is_pod_netns("skiff-a/b"));
    // A plain id never takes the hashed form's prefix, so the two kinds cannot collide.
    assert!(netns_name("_x").starts_with("skiff_"));
}

#[test]
fn host_veths_are_15_bytes_and_follow_the_namespace() {
    let v = host_veth_name(&netns_name("pod-1"));
    assert_eq!(v.len(), IFNAME_MAX);
    assert!(v.starts_with("skv"));
    assert_eq!(v, host_veth_name(&netns_name("pod-1")));
    assert_ne!(v, host_veth_name(&netns_name("pod-2")));
}

#[test]
fn gateways_and_pod_ips_must_lie_in_the_pod_network() {
    let gw = Ipv4Addr::new(10, 244, 1, 1);
    check_gateway(gw, 24).unwrap();
    assert!(check_gateway(gw, 31).is_err());
    assert!(check_gateway(gw, 0).is_err());
    assert!(check_gateway(Ipv4Addr::new(10, 244, 1, 0), 24).is_err());
    assert!(check_gateway(Ipv4Addr::new(10, 244, 1, 255), 24).is_err());
    let bridge = Bridge {
        name: "skifftest".into(),
        gateway: gw,
        prefix_len: 24,
    };
    check_pod_ip(&bridge, Ipv4Addr::new(10, 244, 1, 2)).unwrap();
    check_pod_ip(&bridge, Ipv4Addr::new(10, 244, 1, 254)).unwrap();
    for bad in [
        [10, 244, 1, 1],
        [10, 244, 1, 0],
        [10, 244, 1, 255],
        [10, 244, 2, 5],
    ] {
        let err = check_pod_ip(&bridge, Ipv4Addr::from(bad)).unwrap_err();
        assert!(matches!(err, NetError::Invalid { .. }), "{err}");
    }
    assert!(bridge.check_extra(gw).is_err());
    bridge.check_extra(Ipv4Addr::new(10, 96, 0, 10)).unwrap();
}

#[test]
fn interface_names_are_checked() {
    check_ifname("skiff0").unwrap();
    for bad in [
        "",
        "a-name-longer-than-15",
        "a b",
        "a/b",
        "x\nlink del eth0",
    ] {
        assert!(check_ifname(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn ip_json_output_is_read() {
    // `ip -j -d addr show dev X` on iproute2 6.1, trimmed.
    let out = r#"[{"ifindex":5,"ifname":"skexp0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
        "mtu":1500,"linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0}},
        "addr_info":[{"family":"inet","local":"10.231.7.1","prefixlen":24,"scope":"global"},
        {"family":"inet","local":"10.231.7.9","prefixlen":32,"scope":"global"},
        {"family":"inet6","local":"fe80::ec2b:7fff:fe94:37b5","prefixlen":64,"scope":"link"}]}]"#;
    let links: Vec<IpLink> = serde_json::from_str(out).unwrap();
    let link = &links[0];
    assert_eq!(link.ifname, "skexp0");
    assert_eq!(
        link.linkinfo.as_ref().unwrap().info_kind.as_deref(),
        Some("bridge")
    );
    assert!(link.flags.iter().any(|f| f == "UP"));
    assert_eq!(
        link.ipv4().collect::<Vec<_>>(),
        vec![
            (Ipv4Addr::new(10, 231, 7, 1), 24),
            (Ipv4Addr::new(10, 231, 7, 9), 32)
        ]
    );
}

#[test]
fn missing_things_are_told_from_failures() {
    let ip = |message: &str| NetError::Ip {
        step: "s".into(),
        status: "exit status: 1".into(),
        message: message.into(),
    };
    assert!(is_missing(&ip("Cannot find device \"skv0\"")));
    assert!(is_missing(&ip("Device \"skiff1\" does not exist.")));
    assert!(is_missing(&ip(
        "RTNETLINK answers: Cannot assign requested address"
    )));
    assert!(!is_missing(&ip(
        "RTNETLINK answers: Operation not permitted"
    )));
}

#[tokio::test]
async fn removing_a_namespace_this_node_did_not_name_is_refused() {
    let err = remove_netns("cni-1234").await.unwrap_err();
    assert!(matches!(err, NetError::Invalid { .. }), "{err}");
}

// ---- as root: real bridges, namespaces and veths ----

/// Whether the test can touch the kernel's network; prints why not.
fn can_run(test: &str) -> bool {
    // `/proc/self` is owned by the process's effective uid.
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root {
        eprintln!("SKIPPED: {test}: bridges and network namespaces need root");
        return false;
    }
    skiff_tools::system("ip", "apt-get install iproute2").is_some()
}

/// A bridge, pod ids and a private /24 unique to one test, all removed on drop (even when the
/// test fails) with the interfaces and namespaces they name.
struct Scope {
    bridge: String,
    /// The /24's third octet: the test's network is 10.237.N.0/24.
    n: u8,
    pods: Vec<String>,
}

impl Scope {
    fn new(test: &str) -> Scope {
        let tag = format!("{test}-{}", std::process::id());
        let n = Sha256::digest(test.as_bytes())[0];
        let scope = Scope {
            bridge: Bridge::name_for(&tag),
            n,
            pods: Vec::new(),
        };
        scope.cleanup();
        scope
    }

    fn gateway(&self) -> Ipv4Addr {
        self.ip(1)
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 237, self.n, host)
    }

    /// A pod id unique to this test run, remembered for cleanup.
    fn pod(&mut self, name: &str) -> String {
        let id = format!("nettest-{}-{}-{name}", std::process::id(), self.bridge);
        self.pods.push(id.clone());
        id
    }

    fn cleanup(&self) {
        let mut lines = Vec::new();
        for pod in &self.pods {
            let ns = netns_name(pod);
            lines.push(format!("link del {}", host_veth_name(&ns)));
            lines.push(format!("netns del {ns}"));
        }
        lines.push(format!("link del {}", self.bridge));
        // `-force`: every line is tried; the ones naming what is already gone fail harmlessly.
        let child = Command::new("ip")
            .args(["-force", "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = child {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all((lines.join("\n") + "\n").as_bytes());
            }
            let _ = child.wait();
        }
    }

    /// Asserts that nothing of this test is left: no veth, bridge, namespace or address.
    fn assert_gone(&self, extra_addrs: &[Ipv4Addr]) {
        let links = output(&["-o", "link"]);
        let netns = output(&["netns", "list"]);
        let addrs = output(&["-o", "addr"]);
        assert!(!links.contains(&self.bridge), "bridge left: {links}");
        for pod in &self.pods {
            let ns = netns_name(pod);
            assert!(!netns.contains(&ns), "namespace {ns} left: {netns}");
            let veth = host_veth_name(&ns);
            assert!(!links.contains(&veth), "veth {veth} left: {links}");
        }
        for a in extra_addrs.iter().chain([&self.gateway()]) {
            assert!(
                !addrs.contains(&format!(" {a}/")),
                "address {a} left: {addrs}"
            );
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends a line over a fresh connection from `client` to the listener and reads it back on the
/// accepted side: the two can talk.
fn exchange(listener: &TcpListener, client: io::Result<TcpStream>, what: &str) {
    let mut client = client.unwrap_or_else(|e| panic!("{what}: connect: {e}"));
    client.write_all(what.as_bytes()).unwrap();
    drop(client);
    let (mut conn, _) = listener
        .accept()
        .unwrap_or_else(|e| panic!("{what}: accept: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert_eq!(got, what);
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(10))
}

#[tokio::test]
async fn root_net_pods_containers_and_bridge_addresses_reach_each_other() {
    let test = "root_net_pods_containers_and_bridge_addresses_reach_each_other";
    if !can_run(test) {
        return;
    }
    let mut scope = Scope::new(test);
    let (pod_a, pod_b) = (scope.pod("a"), scope.pod("b"));
    let bridge = Bridge::ensure(&scope.bridge, scope.gateway(), 24)
        .await
        .unwrap();
    // Ensuring again adopts it; another network on the same name is refused.
    assert_eq!(
        Bridge::ensure(&scope.bridge, scope.gateway(), 24)
            .await
            .unwrap(),
        bridge
    );
    let other = Bridge::ensure(&scope.bridge, Ipv4Addr::new(10, 237, scope.n, 129), 25).await;
    assert!(
        matches!(other, Err(NetError::BridgeConflict { .. })),
        "{other:?}"
    );

    let a = create_pod_netns(&bridge, &pod_a, scope.ip(2))
        .await
        .unwrap();
    let b = create_pod_netns(&bridge, &pod_b, scope.ip(3))
        .await
        .unwrap();
    assert_eq!(a.path, netns_path(&a.name));
    assert_eq!(a.host_veth, host_veth_name(&a.name));
    // Again: the same namespace, as is; with another address: refused.
    assert_eq!(
        create_pod_netns(&bridge, &pod_a, scope.ip(2))
            .await
            .unwrap(),
        a
    );
    let moved = create_pod_netns(&bridge, &pod_a, scope.ip(9)).await;
    assert!(
        matches!(moved, Err(NetError::NetnsConflict { .. })),
        "{moved:?}"
    );
    let mut ours = bridge.pod_netns().await.unwrap();
    ours.sort();
    let mut want = vec![a.name.clone(), b.name.clone()];
    want.sort();
    assert_eq!(ours, want);
    let all = list_pod_netns().await.unwrap();
    assert!(want.iter().all(|n| all.contains(n)), "{all:?}");

    // The host reaches a listener bound in pod A's namespace at A's IP.
    let in_a = bind_tcp_in_netns(&a.path, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).unwrap();
    let port = in_a.local_addr().unwrap().port();
    exchange(&in_a, connect((a.ip, port).into()), "host to pod A");
    // Pod B reaches it, from a socket made in B's namespace.
    let from_b = run_in_netns(&b.path, || connect((a.ip, port).into()));
    exchange(&in_a, from_b, "pod B to pod A");
    // A's localhost is A's own: its listener answers on 127.0.0.1 inside A.
    let from_a = run_in_netns(&a.path, || connect((Ipv4Addr::LOCALHOST, port).into()));
    exchange(&in_a, from_a, "pod A to its own localhost");

    // A /32 on the bridge (a wasm pod IP inside the pod CIDR, a ClusterIP outside it) with a
    // host listener on it is reached from inside pod A.
    let wasm_ip = scope.ip(200);
    let cluster_ip = Ipv4Addr::new(10, 238, scope.n, 10);
    for ip in [wasm_ip, cluster_ip] {
        bridge.add_address(ip).await.unwrap();
        bridge.add_address(ip).await.unwrap();
        let on_host = TcpListener::bind((ip, 0)).unwrap();
        let addr = on_host.local_addr().unwrap();
        let from_a = run_in_netns(&a.path, || connect(addr));
        exchange(&on_host, from_a, &format!("pod A to {ip} on the bridge"));
    }
    let mut extra = bridge.addresses().await.unwrap();
    extra.sort();
    assert_eq!(extra, vec![wasm_ip, cluster_ip]);
    assert!(bridge.add_address(bridge.gateway()).await.is_err());

    // A UDP socket bound in a namespace belongs to it: a datagram from the host to A's IP
    // arrives.
    let udp = bind_udp_in_netns(&a.path, SocketAddr::from((a.ip, 0))).unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let sender = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    sender.send_to(b"dgram", udp.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 16];
    let (len, _) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"dgram");

    bridge.remove_address(wasm_ip).await.unwrap();
    bridge.remove_address(wasm_ip).await.unwrap();
    assert_eq!(bridge.addresses().await.unwrap(), vec![cluster_ip]);

    drop((in_a, udp));
    remove_pod_netns(&pod_a).await.unwrap();
    remove_pod_netns(&pod_a).await.unwrap();
    remove_pod_netns(&pod_b).await.unwrap();
    bridge.clone().remove().await.unwrap();
    bridge.remove().await.unwrap();
    scope.assert_gone(&[wasm_ip, cluster_ip]);
}

#[tokio::test]
async fn root_net_a_restarted_node_readopts_namespaces_and_replaces_broken_ones() {
    let test = "root_net_a_restarted_node_readopts_namespaces_and_replaces_broken_ones";
    if !can_run(test) {
        return;
    }
    let mut scope = Scope::new(test);
    let (pod_a, pod_half) = (scope.pod("a"), scope.pod("half"));
    let bridge = Bridge::ensure(&scope.bridge, scope.gateway(), 24)
        .await
        .unwrap();
    let a = create_pod_netns(&bridge, &pod_a, scope.ip(2))
        .await
        .unwrap();
    let in_a = bind_tcp_in_netns(&a.path, SocketAddr::from((a.ip, 0))).unwrap();
    let addr = in_a.local_addr().unwrap();

    // The node goes and its bridge with it; the pod's namespace lives on. A new bridge of the
    // same name, and creating the pod's network again, put the veth back on it.
    bridge.clone().remove().await.unwrap();
    let bridge = Bridge::ensure(&scope.bridge, scope.gateway(), 24)
        .await
        .unwrap();
    assert_eq!(
        create_pod_netns(&bridge, &pod_a, scope.ip(2))
            .await
            .unwrap(),
        a
    );
    exchange(&in_a, connect(addr), "host to a re-adopted pod");

    // A namespace left without its veth and address (a create cut short) is made anew.
    let half = netns_name(&pod_half);
    output(&["netns", "add", &half]);
    let made = create_pod_netns(&bridge, &pod_half, scope.ip(3))
        .await
        .unwrap();
    let in_half = bind_tcp_in_netns(&made.path, SocketAddr::from((made.ip, 0))).unwrap();
    let half_addr = in_half.local_addr().unwrap();
    exchange(&in_half, connect(half_addr), "host to a replaced namespace");

    // Removal by the listed name, as a node's cleanup at start does.
    for name in bridge.pod_netns().await.unwrap() {
        remove_netns(&name).await.unwrap();
    }
    assert!(bridge.pod_netns().await.unwrap().is_empty());
    drop((in_a, in_half));
    bridge.remove().await.unwrap();
    scope.assert_gone(&[]);
}

#[tokio::test]
async fn root_net_pod_network_setup_time() {
    let test = "root_net_pod_network_setup_time";
    if !can_run(test) {
        return;
    }
    let mut scope = Scope::new(test);
    let bridge = Bridge::ensure(&scope.bridge, scope.gateway(), 24)
        .await
        .unwrap();
    let ids: Vec<String> = (0..9).map(|i| scope.pod(&format!("t{i}"))).collect();
    let mut create = Vec::new();
    let mut remove = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let ip = scope.ip(10 + u8::try_from(i).unwrap());
        let started = Instant::now();
        create_pod_netns(&bridge, id, ip).await.unwrap();
        create.push(started.elapsed());
    }
    for id in &ids {
        let started = Instant::now();
        remove_pod_netns(id).await.unwrap();
        remove.push(started.elapsed());
    }
    create.sort();
    remove.sort();
    eprintln!(
        "create_pod_netns: median {:?} (min {:?}, max {:?}); remove_pod_netns: median {:?}, over {} pods",
        create[create.len() / 2],
        create[0],
        create[create.len() - 1],
        remove[remove.len() / 2],
        ids.len()
    );
    bridge.remove().await.unwrap();
    scope.assert_gone(&[]);
}

#[tokio::test]
async fn root_net_a_failed_create_leaves_nothing() {
    let test = "root_net_a_failed_create_leaves_nothing";
    if !can_run(test) {
        return;
    }
    let mut scope = Scope::new(test);
    let pod = scope.pod("a");
    let bridge = Bridge::ensure(&scope.bridge, scope.gateway(), 24)
        .await
        .unwrap();
    // The bridge goes under the node's feet: putting the veth on it fails half-way.
    bridge.clone().remove().await.unwrap();
    let err = create_pod_netns(&bridge, &pod, scope.ip(2))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Ip { .. }), "{err}");
    assert!(err.to_string().contains(&scope.bridge), "{err}");
    scope.assert_gone(&[]);
}
