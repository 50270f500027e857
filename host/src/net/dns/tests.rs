//! Unit tests of the node's cluster DNS: answers built from a table made in the test, hickory
//! messages in and out; the UDP/TCP server with forwarding to a local test nameserver.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

use super::*;
use crate::net::table::Table;

fn table() -> Table {
    let t = Table::new("node-a");
    let svc = |v: serde_json::Value| -> Service { serde_json::from_value(v).unwrap() };
    let slice = |v: serde_json::Value| -> EndpointSlice { serde_json::from_value(v).unwrap() };
    t.apply_service(svc(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80}]}
    })));
    t.apply_service(svc(json!({
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"},
                 "ports": [{"name": "pg", "port": 5432}]}
    })));
    t.apply_slice(slice(json!({
        "metadata": {"name": "db-1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432}],
        "endpoints": [
            {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.2.7"], "hostname": "db-1", "conditions": {"ready": true}},
            {"addresses": ["10.244.2.9"], "hostname": "db-2", "conditions": {"ready": false}}
        ]
    })));
    t.apply_service(svc(json!({
        "metadata": {"name": "empty", "namespace": "shop"},
        "spec": {"clusterIP": "None", "selector": {"app": "none"}}
    })));
    t.apply_service(svc(json!({
        "metadata": {"name": "ext", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "api.example.com"}
    })));
    t.apply_service(svc(json!({
        "metadata": {"name": "alias", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "web.shop.svc.cluster.local"}
    })));
    t
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

fn ask(t: &Table, name: &str, qtype: RecordType) -> Message {
    match handle(t, &query(name, qtype), true) {
        Outcome::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
        other => panic!("{name}: {other:?}"),
    }
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn has_soa(m: &Message) -> bool {
    m.authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA && r.name.to_ascii() == "cluster.local.")
}

#[test]
fn a_service_name_is_its_cluster_ip() {
    let t = table();
    for name in [
        "web.shop.svc.cluster.local.",
        "WEB.Shop.svc.Cluster.Local.",
        "web.shop.svc.cluster.local",
    ] {
        let m = ask(&t, name, RecordType::A);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.metadata.authoritative);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 96, 0, 10)], "{name}");
        assert_eq!(m.answers[0].ttl, TTL);
        assert_eq!(m.queries.len(), 1);
    }
}

#[test]
fn a_headless_service_is_its_ready_endpoints_and_hostnames_name_pods() {
    let t = table();
    let m = ask(&t, "db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        a_records(&m),
        vec![Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 2, 7)]
    );
    let m = ask(&t, "db-1.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 244, 2, 7)]);
    // CoreDNS also names an endpoint by its dashed address.
    let m = ask(&t, "10-244-1-5.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 244, 1, 5)]);
    let m = ask(&t, "db-9.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // A ClusterIP Service has no per-pod names.
    let m = ask(&t, "x.web.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Without a ready endpoint a headless Service has no name (as CoreDNS).
    let m = ask(&t, "empty.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(has_soa(&m));
}

#[test]
fn a_name_that_does_not_exist_is_nxdomain_with_the_soa() {
    let t = table();
    for name in [
        "nope.shop.svc.cluster.local.",
        "web.other.svc.cluster.local.",
        "google.com.shop.svc.cluster.local.",
        "a.b.c.d.e.svc.cluster.local.",
        "whatever.cluster.local.",
        "nope.svc.cluster.local.",
    ] {
        let m = ask(&t, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(m.answers.is_empty(), "{name}");
        assert!(has_soa(&m), "{name}: {m:?}");
        assert!(m.metadata.authoritative);
    }
}

#[test]
fn aaaa_of_a_cluster_name_is_empty_noerror() {
    let t = table();
    for name in ["web.shop.svc.cluster.local.", "db.shop.svc.cluster.local."] {
        let m = ask(&t, name, RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.answers.is_empty(), "{name}");
        assert!(has_soa(&m), "{name}");
    }
    // A namespace and the zone exist without records; the zone answers its SOA.
    let m = ask(&t, "shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let m = ask(&t, "cluster.local.", RecordType::SOA);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
}

#[test]
fn external_name_is_a_cname_and_a_cluster_alias_is_followed() {
    let t = table();
    let m = ask(&t, "ext.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
    match &m.answers[0].data {
        RData::CNAME(c) => assert_eq!(c.0.to_ascii(), "api.example.com."),
        other => panic!("{other:?}"),
    }
    let m = ask(&t, "alias.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.answers.len(), 2, "{m:?}");
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(m.answers[1].name.to_ascii(), "web.shop.svc.cluster.local.");
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 96, 0, 10)]);
}

#[test]
fn pod_names_are_their_dashed_addresses() {
    let t = table();
    let m = ask(&t, "10-244-1-5.shop.pod.cluster.local.", RecordType::A);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 244, 1, 5)]);
    let m = ask(&t, "not-an-ip.shop.pod.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn other_names_are_forwarded() {
    let t = table();
    for name in ["example.com.", "localhost.", "cluster.local.example.com."] {
        assert!(
            matches!(
                handle(&t, &query(name, RecordType::A), true),
                Outcome::Forward(_)
            ),
            "{name}"
        );
    }
}

#[test]
fn garbage_is_formerr_or_dropped_never_a_panic() {
    let t = table();
    // Too short for a header: dropped.
    for p in [&b""[..], b"\x01", b"\x12\x34\x01\x00\x00"] {
        assert!(matches!(handle(&t, p, true), Outcome::Drop));
    }
    // A readable header over nonsense: FORMERR with the query's id.
    let mut p = query("web.shop.svc.cluster.local.", RecordType::A);
    p.truncate(20);
    let Outcome::Reply(bytes) = handle(&t, &p, true) else {
        panic!("no FORMERR")
    };
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(&bytes[..2], &p[..2]);
    // A response is never answered (no reflection loops).
    let mut resp = Message::response(7, OpCode::Query);
    resp.add_query(Query::query(
        Name::from_ascii("web.shop.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    assert!(matches!(
        handle(&t, &resp.to_vec().unwrap(), true),
        Outcome::Drop
    ));
    // No question, or two: FORMERR.
    let none = Message::query();
    let Outcome::Reply(bytes) = handle(&t, &none.to_vec().unwrap(), true) else {
        panic!("no answer")
    };
    assert_eq!(
        Message::from_vec(&bytes).unwrap().metadata.response_code,
        ResponseCode::FormErr
    );
    // Every prefix and some bit flips of a valid query: no panic.
    let good = query("db.shop.svc.cluster.local.", RecordType::A);
    for n in 0..good.len() {
        let _ = handle(&t, &good[..n], true);
        let mut flipped = good.clone();
        flipped[n] ^= 0xff;
        let _ = handle(&t, &flipped, true);
    }
}

#[test]
fn a_big_answer_over_udp_is_truncated() {
    let t = Table::new("node-a");
    let eps: Vec<serde_json::Value> = (0..100)
        .map(|i| json!({"addresses": [format!("10.244.{}.{}", i / 200, 1 + i % 200)]}))
        .collect();
    t.apply_service(
        serde_json::from_value(json!({
            "metadata": {"name": "big", "namespace": "ns"},
            "spec": {"clusterIP": "None", "selector": {"app": "big"}}
        }))
        .unwrap(),
    );
    t.apply_slice(
        serde_json::from_value(json!({
            "metadata": {"name": "big-1", "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": "big"}},
            "addressType": "IPv4",
            "endpoints": eps
        }))
        .unwrap(),
    );
    let q = query("big.ns.svc.cluster.local.", RecordType::A);
    let Outcome::Reply(udp) = handle(&t, &q, true) else {
        panic!()
    };
    let m = Message::from_vec(&udp).unwrap();
    assert!(udp.len() <= 512);
    assert!(m.metadata.truncation);
    let Outcome::Reply(tcp) = handle(&t, &q, false) else {
        panic!()
    };
    assert_eq!(a_records(&Message::from_vec(&tcp).unwrap()).len(), 100);
}

#[test]
fn upstreams_come_from_resolv_conf_without_this_server() {
    let conf = "# comment\nnameserver 127.0.0.53\nnameserver 10.244.1.1\nsearch x\nnameserver fe80::1%eth0\n";
    let got = upstreams(conf, &["10.244.1.1".parse().unwrap()]);
    assert_eq!(
        got,
        vec![
            "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
            "[fe80::1]:53".parse().unwrap()
        ]
    );
}

/// A local test nameserver that answers every A query with 192.0.2.1.
async fn test_upstream(addr: IpAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let sock = UdpSocket::bind((addr, 0)).await.unwrap();
    let local = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(req.metadata.id, OpCode::Query);
            resp.queries = req.queries.clone();
            resp.add_answer(Record::from_rdata(
                req.queries[0].name().clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
            let _ = sock.send_to(&resp.to_vec().unwrap(), from).await;
        }
    });
    (local, task)
}

#[tokio::test]
async fn the_server_answers_over_udp_and_tcp_and_forwards_other_names() {
    let table = Arc::new(table());
    let (up, up_task) = test_upstream(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))).await;
    // The forward port is the test server's (real ones are on 53).
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let (stop, stop_rx) = watch::channel(false);
    let server = DnsServer::start(table, udp, tcp, vec![up], stop_rx);

    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(udp_addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut udp_ask = async |name: &str| {
        client.send(&query(name, RecordType::A)).await.unwrap();
        let n = client.recv(&mut buf).await.unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    };
    let m = udp_ask("web.shop.svc.cluster.local.").await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 96, 0, 10)]);
    let m = udp_ask("example.com.").await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 1)]);

    let mut stream = TcpStream::connect(tcp_addr).await.unwrap();
    for _ in 0..2 {
        write_framed(
            &mut stream,
            &query("db.shop.svc.cluster.local.", RecordType::A),
        )
        .await
        .unwrap();
        let answer = read_framed(&mut stream).await.unwrap().unwrap();
        assert_eq!(a_records(&Message::from_vec(&answer).unwrap()).len(), 2);
    }
    stop.send(true).unwrap();
    server.stopped().await;
    up_task.abort();
}

#[tokio::test]
async fn a_name_no_upstream_answers_is_servfail() {
    let table = Arc::new(table());
    // A bound socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let packet = query("example.com.", RecordType::A);
    let req = Message::from_vec(&packet).unwrap();
    let answer = forward(&req, &packet, &[silent.local_addr().unwrap()], false)
        .await
        .unwrap();
    let m = Message::from_vec(&answer).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.metadata.id, req.metadata.id);
    // No upstream at all: SERVFAIL at once.
    let resolver = Resolver {
        table,
        upstream: vec![],
    };
    let answer = resolver.answer(&packet, false).await.unwrap();
    assert_eq!(
        Message::from_vec(&answer).unwrap().metadata.response_code,
        ResponseCode::ServFail
    );
}

#[test]
fn named_ports_have_srv_records() {
    let t = table();
    let m = ask(
        &t,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(m.answers.len(), 1, "{m:?}");
    match &m.answers[0].data {
        RData::SRV(s) => {
            assert_eq!(s.port, 80);
            assert_eq!(s.target.to_ascii(), "web.shop.svc.cluster.local.");
        }
        other => panic!("{other:?}"),
    }
    // A headless Service: one per ready endpoint, named by its hostname, with its address.
    let m = ask(&t, "_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV);
    let mut targets: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(format!("{} {}", s.target.to_ascii(), s.port)),
            _ => None,
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "db-0.db.shop.svc.cluster.local. 5432",
            "db-1.db.shop.svc.cluster.local. 5432"
        ]
    );
    assert_eq!(m.additionals.len(), 2);
    let m = ask(
        &t,
        "_nope._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}
