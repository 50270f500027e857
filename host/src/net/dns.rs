//! The node's cluster DNS for Linux containers, served on the bridge gateway (UDP and TCP port
//! 53): Service and pod names under `cluster.local` answered from the Service routing table (the
//! same watch caches the router reads, no API call per query), every other name forwarded to the
//! node's own `/etc/resolv.conf` nameservers. Answers follow CoreDNS's `kubernetes` plugin:
//! `SVC.NS.svc.cluster.local` → the ClusterIP, or each ready endpoint of a headless Service;
//! `HOST.SVC.NS.svc.cluster.local` → the endpoint with that hostname (or dashed IP);
//! `A-B-C-D.NS.pod.cluster.local` → that IP; ExternalName → a CNAME; a name that does not exist
//! → NXDOMAIN with the zone's SOA; a name that exists without records of the asked type (AAAA of
//! an IPv4 Service) → NOERROR, empty, with the SOA. TTL [`TTL`] seconds, as CoreDNS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::table::{Compiled, Kind, Table};

/// The cluster domain (kubelet's `--cluster-domain` default).
pub(crate) const CLUSTER_DOMAIN: &str = "cluster.local";
/// The TTL of every cluster answer (CoreDNS's `kubernetes` plugin default: Services change, and
/// a short TTL keeps a container's cache close to the table).
pub(crate) const TTL: u32 = 5;
/// How long one upstream nameserver gets to answer a forwarded query.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TCP client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries answered at once (forwarded ones wait for their upstream); more are dropped, and
/// the client asks again.
const MAX_IN_FLIGHT: usize = 1024;
/// The EDNS payload size this server advertises.
const EDNS_PAYLOAD: u16 = 1232;
/// How many ExternalName aliases inside the cluster zone an answer follows.
const MAX_CHAIN: usize = 4;

/// What to do with a query.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Send this answer.
    Reply(Vec<u8>),
    /// Not a cluster name: ask the upstream nameservers (the parsed query, for a SERVFAIL).
    Forward(Box<Message>),
    /// Not a query (a response, a packet too short for a header): no answer.
    Drop,
}

/// Answers one DNS message from the table. `udp`: the answer must fit the client's UDP payload
/// size (else it is truncated, and the client asks again over TCP). Never panics on input:
/// garbage with a readable header is answered FORMERR, shorter garbage dropped.
pub(crate) fn handle(table: &Table, packet: &[u8], udp: bool) -> Outcome {
    let req = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => return formerr(packet),
    };
    if req.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    if req.metadata.op_code != OpCode::Query {
        return reply(error(&req, ResponseCode::NotImp), &req, udp);
    }
    let [query] = req.queries.as_slice() else {
        return reply(error(&req, ResponseCode::FormErr), &req, udp);
    };
    let labels = match lower_labels(query.name()) {
        Some(l) => l,
        None => return reply(error(&req, ResponseCode::FormErr), &req, udp),
    };
    if query.query_class() != DNSClass::IN || !in_zone(&labels) {
        return Outcome::Forward(Box::new(req));
    }
    let mut resp = response(&req);
    resp.metadata.authoritative = true;
    let mut qname = query.name().clone();
    qname.set_fqdn(true);
    let qtype = query.query_type();
    let mut found = lookup(table, &labels);
    let mut owner = qname;
    for _ in 0..MAX_CHAIN {
        let Found::Alias(target) = &found else { break };
        resp.answers.push(Record::from_rdata(
            owner.clone(),
            TTL,
            RData::CNAME(CNAME(target.clone())),
        ));
        // A CNAME answers every type; an alias of a cluster name is followed here.
        if qtype == RecordType::CNAME {
            break;
        }
        let Some(next) = lower_labels(target).filter(|l| in_zone(l)) else {
            break;
        };
        owner = target.clone();
        found = lookup(table, &next);
    }
    match found {
        Found::Alias(_) => {}
        Found::Missing if resp.answers.is_empty() => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            resp.authorities.push(soa(table));
        }
        Found::Missing => {}
        Found::Addresses(ips) => {
            for ip in ips {
                let rdata = match (ip, qtype) {
                    (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
                    (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
                    _ => continue,
                };
                resp.answers
                    .push(Record::from_rdata(owner.clone(), TTL, rdata));
            }
        }
        Found::Services(srvs) => {
            for (port, target, ip) in srvs {
                if matches!(qtype, RecordType::SRV | RecordType::ANY) {
                    resp.answers.push(Record::from_rdata(
                        owner.clone(),
                        TTL,
                        RData::SRV(SRV::new(0, 100, port, target.clone())),
                    ));
                    if let IpAddr::V4(v4) = ip {
                        resp.additionals
                            .push(Record::from_rdata(target, TTL, RData::A(A(v4))));
                    }
                }
            }
        }
        Found::Apex if qtype == RecordType::SOA => resp.answers.push(soa(table)),
        Found::Apex | Found::Empty => {}
    }
    if resp.answers.is_empty() && resp.metadata.response_code == ResponseCode::NoError {
        resp.authorities.push(soa(table));
    }
    reply(resp, &req, udp)
}

/// What a cluster name is.
#[derive(Debug)]
enum Found {
    /// A name with these addresses (A and AAAA records).
    Addresses(Vec<IpAddr>),
    /// An alias (an ExternalName Service).
    Alias(Name),
    /// The zone's apex (`cluster.local`): its SOA.
    Apex,
    /// A name that exists with no records (`svc.cluster.local`, a namespace).
    Empty,
    /// A named port's SRV records: (port, target name, its address).
    Services(Vec<(u16, Name, IpAddr)>),
    /// No such name.
    Missing,
}

/// The labels of `name`, lowercase; `None` for a label that is not text.
fn lower_labels(name: &Name) -> Option<Vec<String>> {
    name.iter()
        .map(|l| std::str::from_utf8(l).ok().map(str::to_ascii_lowercase))
        .collect()
}

/// True for `cluster.local` and the names under it.
fn in_zone(labels: &[String]) -> bool {
    let zone: Vec<&str> = CLUSTER_DOMAIN.split('.').collect();
    labels.len() >= zone.len()
        && labels[labels.len() - zone.len()..]
            .iter()
            .zip(&zone)
            .all(|(a, b)| a == b)
}

/// Finds a name of the cluster zone (given as lowercase labels, zone included).
fn lookup(table: &Table, labels: &[String]) -> Found {
    let zone_len = CLUSTER_DOMAIN.split('.').count();
    let rest: Vec<&str> = labels[..labels.len() - zone_len]
        .iter()
        .map(String::as_str)
        .collect();
    match rest.as_slice() {
        [] => Found::Apex,
        ["svc"] => Found::Empty,
        [ns, "svc"] if table.has_namespace(ns) => Found::Empty,
        [svc, ns, "svc"] => match table.get(ns, svc) {
            Some(s) => service(&s),
            None => Found::Missing,
        },
        [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
            match table.get(ns, svc) {
                Some(s) if *proto == "_tcp" => srv(&s, &port[1..]),
                Some(_) => Found::Empty,
                None => Found::Missing,
            }
        }
        [host, svc, ns, "svc"] => match table.get(ns, svc) {
            Some(s) if s.headless() => endpoint(&s, host),
            _ => Found::Missing,
        },
        // CoreDNS's `pods insecure` (kubeadm's default): the name is the address.
        [dashed, _ns, "pod"] => match dashed_ip(dashed) {
            Some(ip) => Found::Addresses(vec![IpAddr::V4(ip)]),
            None => Found::Missing,
        },
        _ => Found::Missing,
    }
}

/// The records of a Service's own name.
fn service(svc: &Compiled) -> Found {
    if let Kind::ExternalName(ext) = &svc.kind {
        let mut ext = ext.trim_end_matches('.').to_string();
        ext.push('.');
        return match Name::from_ascii(&ext) {
            Ok(n) => Found::Alias(n),
            Err(_) => Found::Empty,
        };
    }
    if let Some(ip) = svc.cluster_ip {
        return Found::Addresses(vec![ip]);
    }
    let ips: Vec<IpAddr> = svc
        .endpoints
        .iter()
        .filter(|e| e.ready)
        .map(|e| e.ip)
        .collect();
    if ips.is_empty() {
        // CoreDNS: a headless Service without ready endpoints has no name.
        Found::Missing
    } else {
        Found::Addresses(ips)
    }
}

/// The endpoint `host` of a headless Service: by its hostname (a StatefulSet pod), else by its
/// dashed IP (`10-244-1-5`), as CoreDNS names endpoints.
fn endpoint(svc: &Compiled, host: &str) -> Found {
    let by_name = svc
        .endpoints
        .iter()
        .find(|e| e.hostname.as_deref() == Some(host));
    let ep = by_name.or_else(|| {
        let ip = dashed_ip(host)?;
        svc.endpoints.iter().find(|e| e.ip == IpAddr::V4(ip))
    });
    match ep {
        Some(e) => Found::Addresses(vec![e.ip]),
        None => Found::Missing,
    }
}

/// SRV records of a Service's named TCP port `_NAME._tcp.SVC.NS.svc.cluster.local`, as CoreDNS:
/// the Service's own name and port for a ClusterIP, each ready endpoint (its hostname, else its
/// dashed address, under the Service) and its port for a headless Service.
fn srv(svc: &Compiled, port_name: &str) -> Found {
    let Some(port) = svc.port_named(port_name) else {
        return Found::Missing;
    };
    let name = |host: Option<String>| {
        let mut n = format!("{}.{}.svc.{CLUSTER_DOMAIN}.", svc.name, svc.namespace);
        if let Some(h) = host {
            n = format!("{h}.{n}");
        }
        Name::from_ascii(n).ok()
    };
    if let Some(ip) = svc.cluster_ip {
        return match name(None) {
            Some(n) => Found::Services(vec![(port.port, n, ip)]),
            None => Found::Missing,
        };
    }
    let srvs: Vec<(u16, Name, IpAddr)> = port
        .ready
        .iter()
        .filter_map(|t| {
            let e = &svc.endpoints[t.ep];
            let host = e
                .hostname
                .clone()
                .unwrap_or_else(|| e.ip.to_string().replace(['.', ':'], "-"));
            Some((t.port, name(Some(host))?, e.ip))
        })
        .collect();
    if srvs.is_empty() {
        Found::Missing
    } else {
        Found::Services(srvs)
    }
}

/// `10-244-1-5` → 10.244.1.5.
fn dashed_ip(s: &str) -> Option<Ipv4Addr> {
    s.replace('-', ".").parse().ok()
}

/// The zone's SOA record (for the authority section of NXDOMAIN and empty answers).
fn soa(table: &Table) -> Record {
    let zone = Name::from_ascii(format!("{CLUSTER_DOMAIN}.")).unwrap_or_else(|_| Name::root());
    let mname =
        Name::from_ascii(format!("ns.dns.{CLUSTER_DOMAIN}.")).unwrap_or_else(|_| zone.clone());
    let rname =
        Name::from_ascii(format!("hostmaster.{CLUSTER_DOMAIN}.")).unwrap_or_else(|_| zone.clone());
    // The serial moves with the table (CoreDNS uses the time of the last change).
    let serial = *table.changes().borrow() as u32;
    Record::from_rdata(
        zone,
        TTL,
        RData::SOA(SOA::new(mname, rname, serial, 7200, 1800, 86400, TTL)),
    )
}

/// An empty response to `req`: its id, flags and question (and EDNS if it used EDNS).
fn response(req: &Message) -> Message {
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata = Metadata::response_from_request(&req.metadata);
    resp.metadata.recursion_available = true;
    resp.queries = req.queries.clone();
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        resp.edns = Some(edns);
    }
    resp
}

/// An error response to `req`.
pub(crate) fn error(req: &Message, code: ResponseCode) -> Message {
    let mut resp = response(req);
    resp.metadata.response_code = code;
    resp
}

/// FORMERR for a message that does not parse, when its header can be read and it is a query.
fn formerr(packet: &[u8]) -> Outcome {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return Outcome::Drop;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    match Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec() {
        Ok(v) => Outcome::Reply(v),
        Err(_) => Outcome::Drop,
    }
}

/// Encodes `resp`; over UDP an answer larger than the client takes goes out truncated (TC set,
/// no records).
fn reply(resp: Message, req: &Message, udp: bool) -> Outcome {
    encode(resp, req, udp).map_or(Outcome::Drop, Outcome::Reply)
}

fn encode(mut resp: Message, req: &Message, udp: bool) -> Option<Vec<u8>> {
    let bytes = resp.to_vec().ok()?;
    let limit = if udp {
        usize::from(req.max_payload().min(EDNS_PAYLOAD))
    } else {
        usize::from(u16::MAX)
    };
    if bytes.len() <= limit {
        return Some(bytes);
    }
    resp.answers.clear();
    resp.authorities.clear();
    resp.additionals.clear();
    resp.metadata.truncation = true;
    resp.to_vec().ok()
}

/// The nameservers of a `resolv.conf` (port 53), without `exclude` (this server's own
/// address: a node whose resolver is itself must not forward to itself).
pub(crate) fn upstreams(resolv_conf: &str, exclude: &[IpAddr]) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            let ip: IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            (!exclude.contains(&ip)).then_some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Asks `upstream` nameservers in turn (UDP, or TCP when `tcp`), each for at most
/// [`FORWARD_TIMEOUT`]: the first answer, or SERVFAIL.
async fn forward(
    req: &Message,
    packet: &[u8],
    upstream: &[SocketAddr],
    tcp: bool,
) -> Option<Vec<u8>> {
    for server in upstream {
        let asked = if tcp {
            tokio::time::timeout(FORWARD_TIMEOUT, forward_tcp(packet, *server)).await
        } else {
            tokio::time::timeout(FORWARD_TIMEOUT, forward_udp(packet, *server)).await
        };
        match asked {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(e)) => tracing::debug!(%server, error = %e, "forwarding a DNS query"),
            Err(_) => tracing::debug!(%server, "a forwarded DNS query timed out"),
        }
    }
    encode(error(req, ResponseCode::ServFail), req, !tcp)
}

async fn forward_udp(packet: &[u8], server: SocketAddr) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(server).await?;
    sock.send(packet).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Only the answer to this query (same id) counts.
        if n >= 12 && buf[..2] == packet[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(packet: &[u8], server: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    write_framed(&mut stream, packet).await?;
    read_framed(&mut stream)
        .await?
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no answer"))
}

async fn write_framed(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "message too long"))?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out).await
}

/// One length-prefixed message; `None` at a clean end of stream.
async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut msg).await?;
    Ok(Some(msg))
}

/// The cluster DNS server: what a query needs.
struct Resolver {
    table: Arc<Table>,
    upstream: Vec<SocketAddr>,
}

impl Resolver {
    async fn answer(&self, packet: &[u8], tcp: bool) -> Option<Vec<u8>> {
        match handle(&self.table, packet, !tcp) {
            Outcome::Reply(v) => Some(v),
            Outcome::Drop => None,
            Outcome::Forward(req) => forward(&req, packet, &self.upstream, tcp).await,
        }
    }
}

/// The running DNS server (UDP and TCP). Stops when its shutdown turns true or it is dropped.
pub(crate) struct DnsServer {
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Serves cluster DNS on `udp` and `tcp` (both bound by the caller: the bridge gateway's
    /// port 53 on a node) from `table`, forwarding other names to `upstream`.
    pub(crate) fn start(
        table: Arc<Table>,
        udp: UdpSocket,
        tcp: TcpListener,
        upstream: Vec<SocketAddr>,
        shutdown: watch::Receiver<bool>,
    ) -> DnsServer {
        let resolver = Arc::new(Resolver { table, upstream });
        let tasks = vec![
            tokio::spawn(serve_udp(resolver.clone(), udp, shutdown.clone())),
            tokio::spawn(serve_tcp(resolver, tcp, shutdown)),
        ];
        DnsServer { tasks }
    }

    /// Waits until both servers have stopped (after the shutdown turned true).
    pub(crate) async fn stopped(mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn serve_udp(resolver: Arc<Resolver>, sock: UdpSocket, mut stop: watch::Receiver<bool>) {
    let sock = Arc::new(sock);
    let mut queries = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        while queries.try_join_next().is_some() {}
        let (n, from) = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = sock.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // An ICMP error of an earlier send and the like: keep serving.
                    tracing::debug!(error = %e, "receiving a DNS query");
                    continue;
                }
            },
        };
        if queries.len() >= MAX_IN_FLIGHT {
            continue;
        }
        let packet = buf[..n].to_vec();
        let resolver = resolver.clone();
        let sock = sock.clone();
        queries.spawn(async move {
            if let Some(answer) = resolver.answer(&packet, false).await
                && let Err(e) = sock.send_to(&answer, from).await
            {
                tracing::debug!(client = %from, error = %e, "sending a DNS answer");
            }
        });
    }
}

async fn serve_tcp(
    resolver: Arc<Resolver>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        let (mut stream, from) = match accepted {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a DNS connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if conns.len() >= MAX_IN_FLIGHT {
            continue;
        }
        let resolver = resolver.clone();
        conns.spawn(async move {
            loop {
                let msg = match tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
                    Ok(Ok(Some(m))) => m,
                    Ok(Ok(None)) | Err(_) => return,
                    Ok(Err(e)) => {
                        tracing::debug!(client = %from, error = %e, "reading a DNS query");
                        return;
                    }
                };
                let Some(answer) = resolver.answer(&msg, true).await else {
                    return;
                };
                if write_framed(&mut stream, &answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
