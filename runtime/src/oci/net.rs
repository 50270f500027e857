//! The pod network on the host: the node's bridge, one network namespace per Linux pod with a
//! veth on the bridge, /32 addresses on the bridge, and sockets bound inside a namespace.
//!
//! Mechanism: iproute2's `ip`, executed (never linked), with each step's commands batched
//! through `ip -batch -` so a pod's network costs two short-lived processes: one in the host
//! namespace (`netns add`, the veth pair with its inner end created directly in the pod's
//! namespace as `eth0`, the host end on the bridge) and one `ip -n NAME` inside it (`lo` up,
//! the address, the default route via the gateway). Namespaces are exactly `ip netns`'s
//! (`/var/run/netns/NAME`, [`netns_path`]), so `ip netns exec` works on them while debugging,
//! and the multi-threaded node process never forks or changes its own namespace: only a
//! dedicated, short-lived std thread ever calls `setns` ([`run_in_netns`]), to create a socket
//! that then stays in the pod's namespace.
//!
//! Names: a namespace is `skiff-<pod id>` (or `skiff_<hash>` for an id that is not a plain
//! name, [`netns_name`]); its host veth is `skv` + a hash of the namespace name, so both can be
//! found again from the pod id alone after a node restart. Every name this module creates
//! starts with `skiff` or `skv`; it never touches other interfaces or namespaces.

use std::fs::File;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::spec::netns_path;

#[cfg(test)]
mod tests;

/// The directory `ip netns` keeps its namespaces in.
const NETNS_DIR: &str = "/var/run/netns";
/// The interface name inside every pod namespace.
const POD_IFNAME: &str = "eth0";
/// Prefix of a namespace named after a plain pod id.
const NETNS_PLAIN: &str = "skiff-";
/// Prefix of a namespace named after a hash of the pod id.
const NETNS_HASHED: &str = "skiff_";
/// Prefix of a host veth end.
const VETH_PREFIX: &str = "skv";
/// Longest interface name the kernel takes (`IFNAMSIZ` - 1).
const IFNAME_MAX: usize = 15;
/// Longest pod id used as is in a namespace name.
const PLAIN_ID_MAX: usize = 64;

/// Errors of the pod network: the failing step and `ip`'s or the kernel's message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// `ip` ran and failed.
    #[error("{step}: ip failed ({status}): {message}")]
    Ip {
        /// What was being done (names the bridge, namespace or address).
        step: String,
        /// The exit status.
        status: String,
        /// `ip`'s error output.
        message: String,
    },
    /// `ip` could not be run.
    #[error("{step}: running ip (is iproute2 installed?): {source}")]
    Spawn {
        /// What was being done.
        step: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// `ip` printed something this module does not understand.
    #[error("{step}: unexpected output from ip: {detail}")]
    Parse {
        /// What was being done.
        step: String,
        /// What was wrong.
        detail: String,
    },
    /// A file operation (listing `/var/run/netns`) failed.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A device of the bridge's name exists and cannot be adopted.
    #[error("bridge {name}: {detail}")]
    BridgeConflict {
        /// The bridge name.
        name: String,
        /// What is there instead.
        detail: String,
    },
    /// The pod's namespace exists with another address.
    #[error("pod network namespace {name}: {detail}")]
    NetnsConflict {
        /// The namespace name.
        name: String,
        /// What is there instead.
        detail: String,
    },
    /// An argument is out of range (a name too long, an address outside the pod CIDR).
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

/// The node's bridge: the pods' veths are its ports, and its address is the gateway of the
/// node's pod CIDR (the first address, which the node's pod IP pool never hands out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    name: String,
    gateway: Ipv4Addr,
    prefix_len: u8,
}

impl Bridge {
    /// A bridge name for a node (≤ 15 bytes, `skiff` + short hash of the node name).
    pub fn name_for(node: &str) -> String {
        format!("skiff{}", short_hash(node, IFNAME_MAX - "skiff".len()))
    }

    /// Creates (or adopts, when it exists with this address) the bridge, up, with
    /// gateway/prefix.
    ///
    /// An existing bridge without the gateway address gets it; one holding another address of a
    /// network (not a /32) fails with [`NetError::BridgeConflict`], as does a device of this name
    /// that is not a bridge. /32 addresses (wasm pod IPs, ClusterIPs of a previous run) are kept.
    pub async fn ensure(name: &str, gateway: Ipv4Addr, prefix_len: u8) -> Result<Bridge, NetError> {
        check_ifname(name)?;
        check_gateway(gateway, prefix_len)?;
        let bridge = Bridge {
            name: name.to_owned(),
            gateway,
            prefix_len,
        };
        // Two tries: a bridge another task creates between the look-up and the creation is
        // adopted on the second.
        for attempt in 0..2 {
            let Some(link) = show_link(None, name, "addr").await? else {
                let created = ip_batch(
                    format!("creating bridge {name}"),
                    None,
                    vec![
                        format!("link add {name} type bridge"),
                        format!("addr add {gateway}/{prefix_len} dev {name}"),
                        format!("link set {name} up"),
                    ],
                )
                .await;
                match created {
                    Ok(()) => return Ok(bridge),
                    Err(e) if attempt == 0 && show_link(None, name, "addr").await?.is_some() => {
                        tracing::debug!(bridge = name, error = %e, "bridge appeared meanwhile");
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            bridge.adopt(&link).await?;
            return Ok(bridge);
        }
        Err(NetError::BridgeConflict {
            name: name.to_owned(),
            detail: "created and removed concurrently".to_owned(),
        })
    }

    /// Checks an existing device of the bridge's name and completes its configuration.
    async fn adopt(&self, link: &IpLink) -> Result<(), NetError> {
        let name = &self.name;
        let kind = link
            .linkinfo
            .as_ref()
            .and_then(|i| i.info_kind.as_deref())
            .unwrap_or("plain");
        if kind != "bridge" {
            return Err(NetError::BridgeConflict {
                name: name.clone(),
                detail: format!("the device exists and is a {kind} device, not a bridge"),
            });
        }
        let mut has_gateway = false;
        for (addr, len) in link.ipv4() {
            if addr == self.gateway && len == self.prefix_len {
                has_gateway = true;
            } else if len < 32 {
                return Err(NetError::BridgeConflict {
                    name: name.clone(),
                    detail: format!(
                        "it has address {addr}/{len}, not {}/{}",
                        self.gateway, self.prefix_len
                    ),
                });
            }
        }
        let mut lines = Vec::new();
        if !has_gateway {
            lines.push(format!(
                "addr add {}/{} dev {name}",
                self.gateway, self.prefix_len
            ));
        }
        if !link.flags.iter().any(|f| f == "UP") {
            lines.push(format!("link set {name} up"));
        }
        if !lines.is_empty() {
            ip_batch(format!("adopting bridge {name}"), None, lines).await?;
        }
        tracing::debug!(bridge = %name, "adopted the existing bridge");
        Ok(())
    }

    /// The bridge's interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bridge's address, the pods' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Prefix length of the node's pod CIDR.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Adds a /32 address on the bridge (a wasm pod IP, a ClusterIP); idempotent.
    ///
    /// Containers reach it: inside the pod CIDR the host answers ARP for it on the bridge,
    /// outside it the pods' default route leads to the gateway, the host.
    pub async fn add_address(&self, ip: Ipv4Addr) -> Result<(), NetError> {
        self.check_extra(ip)?;
        let name = &self.name;
        ip_batch(
            format!("adding address {ip}/32 to bridge {name}"),
            None,
            vec![format!("addr replace {ip}/32 dev {name}")],
        )
        .await
    }

    /// Removes a /32 address from the bridge; an address that is not there is Ok.
    pub async fn remove_address(&self, ip: Ipv4Addr) -> Result<(), NetError> {
        self.check_extra(ip)?;
        let name = &self.name;
        let removed = ip_batch(
            format!("removing address {ip}/32 from bridge {name}"),
            None,
            vec![format!("addr del {ip}/32 dev {name}")],
        )
        .await;
        match removed {
            Err(e) if is_missing(&e) => Ok(()),
            other => other,
        }
    }

    /// The /32 addresses on the bridge (all its IPv4 addresses but the gateway's).
    pub async fn addresses(&self) -> Result<Vec<Ipv4Addr>, NetError> {
        let Some(link) = show_link(None, &self.name, "addr").await? else {
            return Ok(Vec::new());
        };
        Ok(link
            .ipv4()
            .filter(|&(_, len)| len == 32)
            .map(|(addr, _)| addr)
            .collect())
    }

    fn check_extra(&self, ip: Ipv4Addr) -> Result<(), NetError> {
        if ip == self.gateway {
            return Err(NetError::Invalid {
                what: "address",
                detail: format!("{ip} is the gateway of bridge {}", self.name),
            });
        }
        Ok(())
    }

    /// Deletes the bridge (node shutdown) and every address on it; a missing bridge is Ok.
    ///
    /// Pods' veths still on it are left (detached): remove the pods first.
    pub async fn remove(self) -> Result<(), NetError> {
        let name = &self.name;
        let removed = ip_batch(
            format!("removing bridge {name}"),
            None,
            vec![format!("link del {name}")],
        )
        .await;
        match removed {
            Err(e) if is_missing(&e) => Ok(()),
            other => other,
        }
    }

    /// The pod namespaces ([`netns_name`]) whose host veth is a port of this bridge: the ones
    /// this node created, when several nodes share a machine.
    pub async fn pod_netns(&self) -> Result<Vec<String>, NetError> {
        let ports = ip_json::<Vec<IpLink>>(
            format!("listing the ports of bridge {}", self.name),
            None,
            &["link", "show", "master", &self.name],
        )
        .await?
        .unwrap_or_default();
        let mut names = list_pod_netns().await?;
        names.retain(|n| ports.iter().any(|p| p.ifname == host_veth_name(n)));
        Ok(names)
    }
}

/// A pod's network namespace on the node's bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetns {
    /// The namespace's name for `ip netns` ([`netns_name`]).
    pub name: String,
    /// `/var/run/netns/NAME`, what a container's config joins.
    pub path: PathBuf,
    /// The pod's address on `eth0` (with the bridge's prefix length).
    pub ip: Ipv4Addr,
    /// The host end of the veth pair, a port of the bridge.
    pub host_veth: String,
}

/// Namespace name for a pod id (unique, stable, valid for `ip netns`): `skiff-<id>` for an id
/// of at most 64 letters, digits, `.` and `-` (a pod uid), else `skiff_` and a hash of the id.
pub fn netns_name(pod_id: &str) -> String {
    let plain = !pod_id.is_empty()
        && pod_id.len() <= PLAIN_ID_MAX
        && pod_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if plain {
        format!("{NETNS_PLAIN}{pod_id}")
    } else {
        format!("{NETNS_HASHED}{}", short_hash(pod_id, 32))
    }
}

/// The host end of a pod namespace's veth pair: `skv` and a hash of the namespace name.
pub fn host_veth_name(netns: &str) -> String {
    format!(
        "{VETH_PREFIX}{}",
        short_hash(netns, IFNAME_MAX - VETH_PREFIX.len())
    )
}

/// Whether a namespace name is one [`netns_name`] makes.
fn is_pod_netns(name: &str) -> bool {
    (name.starts_with(NETNS_PLAIN) || name.starts_with(NETNS_HASHED))
        && name.len() > NETNS_PLAIN.len()
        && !name.contains('/')
}

/// Creates the pod's namespace, veth and addresses; if the namespace already exists with this
/// IP (a node restart re-adopting the pod) returns it as is (its veth put back on the bridge if
/// it came off). On failure removes what it created.
///
/// A namespace of this name left half-made (no address) is replaced; one with another address
/// fails with [`NetError::NetnsConflict`].
pub async fn create_pod_netns(
    bridge: &Bridge,
    pod_id: &str,
    ip: Ipv4Addr,
) -> Result<PodNetns, NetError> {
    check_pod_ip(bridge, ip)?;
    let name = netns_name(pod_id);
    let netns = PodNetns {
        path: netns_path(&name),
        host_veth: host_veth_name(&name),
        name,
        ip,
    };
    if exists(&netns.path).await {
        match adopt_pod_netns(bridge, &netns).await {
            Ok(true) => return Ok(netns),
            Ok(false) => {}
            Err(e @ NetError::NetnsConflict { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(netns = %netns.name, error = %e, "replacing a broken pod network namespace")
            }
        }
        remove_netns(&netns.name).await?;
    }
    if let Err(e) = setup_pod_netns(bridge, &netns).await {
        if let Err(cleanup) = remove_netns(&netns.name).await {
            tracing::warn!(netns = %netns.name, error = %cleanup, "cleaning up a failed pod network namespace");
        }
        return Err(e);
    }
    Ok(netns)
}

/// The two `ip` runs that make a pod's network.
async fn setup_pod_netns(bridge: &Bridge, netns: &PodNetns) -> Result<(), NetError> {
    let PodNetns {
        name,
        ip,
        host_veth,
        ..
    } = netns;
    let br = bridge.name();
    ip_batch(
        format!("creating network namespace {name} and veth {host_veth} on bridge {br}"),
        None,
        vec![
            format!("netns add {name}"),
            format!("link add {host_veth} type veth peer name {POD_IFNAME} netns {name}"),
            format!("link set {host_veth} master {br} up"),
        ],
    )
    .await?;
    let (gateway, len) = (bridge.gateway(), bridge.prefix_len());
    ip_batch(
        format!("configuring {POD_IFNAME} {ip}/{len} in network namespace {name}"),
        Some(name),
        vec![
            "link set lo up".to_owned(),
            format!("addr add {ip}/{len} dev {POD_IFNAME}"),
            format!("link set {POD_IFNAME} up"),
            format!("route add default via {gateway} dev {POD_IFNAME}"),
        ],
    )
    .await
}

/// `Ok(true)`: the existing namespace has the pod's address and its veth is on the bridge.
/// `Ok(false)`: it is half-made (no address), to be replaced.
async fn adopt_pod_netns(bridge: &Bridge, netns: &PodNetns) -> Result<bool, NetError> {
    let Some(link) = show_link(Some(&netns.name), POD_IFNAME, "addr").await? else {
        return Ok(false);
    };
    let addrs: Vec<_> = link.ipv4().collect();
    if addrs.is_empty() {
        return Ok(false);
    }
    if !addrs.contains(&(netns.ip, bridge.prefix_len())) {
        let have: Vec<String> = addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect();
        return Err(NetError::NetnsConflict {
            name: netns.name.clone(),
            detail: format!(
                "it exists with address {}, not {}/{}",
                have.join(", "),
                netns.ip,
                bridge.prefix_len()
            ),
        });
    }
    // The veth back on the bridge (a bridge recreated after a node restart has no ports).
    ip_batch(
        format!(
            "attaching veth {} to bridge {}",
            netns.host_veth,
            bridge.name()
        ),
        None,
        vec![format!(
            "link set {} master {} up",
            netns.host_veth,
            bridge.name()
        )],
    )
    .await?;
    tracing::debug!(netns = %netns.name, ip = %netns.ip, "adopted the existing pod network namespace");
    Ok(true)
}

/// Removes the namespace and its veth; a missing one is Ok.
pub async fn remove_pod_netns(pod_id: &str) -> Result<(), NetError> {
    remove_netns(&netns_name(pod_id)).await
}

/// Removes a pod namespace by name (one [`list_pod_netns`] returned) and its veth; a missing
/// one is Ok. Names that [`netns_name`] does not make are refused.
pub async fn remove_netns(name: &str) -> Result<(), NetError> {
    if !is_pod_netns(name) {
        return Err(NetError::Invalid {
            what: "pod network namespace name",
            detail: format!("{name:?} is not one this node creates"),
        });
    }
    let veth = host_veth_name(name);
    // The veth first: deleting one end deletes both at once, where a namespace's own devices
    // go only when the kernel frees it, after its last process. Both in one `ip` run when both
    // are there; each on its own (a missing one is fine) if that fails.
    let mut steps = Vec::new();
    if exists(&Path::new("/sys/class/net").join(&veth)).await {
        steps.push((format!("removing veth {veth}"), format!("link del {veth}")));
    }
    if exists(&netns_path(name)).await {
        steps.push((
            format!("removing network namespace {name}"),
            format!("netns del {name}"),
        ));
    }
    if steps.len() > 1 {
        let lines = steps.iter().map(|(_, line)| line.clone()).collect();
        let removed = ip_batch(format!("removing pod network {name}"), None, lines).await;
        match removed {
            Ok(()) => return Ok(()),
            Err(e) if !is_missing(&e) => return Err(e),
            Err(_) => {}
        }
    }
    for (step, line) in steps {
        match ip_batch(step, None, vec![line]).await {
            Err(e) if !is_missing(&e) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The pod namespaces on this machine (names [`netns_name`] makes, sorted), for cleanup at
/// start: the caller removes ([`remove_netns`]) those no live pod owns. Several nodes on one
/// machine see each other's: [`Bridge::pod_netns`] lists one node's.
pub async fn list_pod_netns() -> Result<Vec<String>, NetError> {
    let listed = tokio::task::spawn_blocking(|| -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(NETNS_DIR) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            if let Some(name) = entry?.file_name().to_str()
                && is_pod_netns(name)
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    })
    .await
    .map_err(|e| io::Error::other(e.to_string()))
    .and_then(|r| r);
    listed.map_err(|source| NetError::Io {
        step: format!("listing {NETNS_DIR}"),
        source,
    })
}

/// Runs `f` on a new, short-lived thread moved into the network namespace at `netns` (a
/// `/var/run/netns/NAME` or `/proc/PID/ns/net` path): sockets it creates belong to that
/// namespace for their whole life. The calling thread never changes namespace.
pub fn run_in_netns<T, F>(netns: &Path, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce() -> io::Result<T> + Send,
{
    let file = File::open(netns).map_err(|e| annotate(e, netns, "opening"))?;
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("skiff-netns".to_owned())
            .spawn_scoped(scope, move || {
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| annotate(e.into(), netns, "entering"))?;
                f()
            })?;
        thread
            .join()
            .map_err(|_| io::Error::other("the thread in the network namespace panicked"))?
    })
}

/// Binds a TCP listener inside a network namespace (the socket stays in that namespace after
/// the thread returns): how the node serves wasm containers on a Linux pod's IP and localhost.
/// The listener is blocking; set it non-blocking before handing it to tokio.
pub fn bind_tcp_in_netns(netns: &Path, addr: SocketAddr) -> io::Result<TcpListener> {
    run_in_netns(netns, || TcpListener::bind(addr))
}

/// Binds a UDP socket inside a network namespace, as [`bind_tcp_in_netns`].
pub fn bind_udp_in_netns(netns: &Path, addr: SocketAddr) -> io::Result<UdpSocket> {
    run_in_netns(netns, || UdpSocket::bind(addr))
}

fn annotate(e: io::Error, path: &Path, what: &str) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("{what} network namespace {}: {e}", path.display()),
    )
}

/// `ip -j [-d] LINK show` output, the fields used here.
#[derive(Debug, Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    linkinfo: Option<LinkInfo>,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Deserialize)]
struct LinkInfo {
    #[serde(default)]
    info_kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AddrInfo {
    family: String,
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    prefixlen: Option<u8>,
}

impl IpLink {
    /// The device's IPv4 addresses with their prefix lengths.
    fn ipv4(&self) -> impl Iterator<Item = (Ipv4Addr, u8)> + '_ {
        self.addr_info.iter().filter_map(|a| {
            if a.family != "inet" {
                return None;
            }
            Some((a.local.as_deref()?.parse().ok()?, a.prefixlen?))
        })
    }
}

/// One device with details and addresses (`object` is `addr` or `link`), `None` if it does not
/// exist; `netns` runs the look-up inside that namespace.
async fn show_link(
    netns: Option<&str>,
    dev: &str,
    object: &str,
) -> Result<Option<IpLink>, NetError> {
    let step = match netns {
        Some(ns) => format!("looking up {dev} in network namespace {ns}"),
        None => format!("looking up {dev}"),
    };
    let links =
        ip_json::<Vec<IpLink>>(step.clone(), netns, &["-d", object, "show", "dev", dev]).await;
    match links {
        Ok(Some(links)) => Ok(links.into_iter().find(|l| l.ifname == dev)),
        Ok(None) => Ok(None),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `ip -j ARGS` (in `netns` if given) and parses its output; `None` for empty output.
async fn ip_json<T: serde::de::DeserializeOwned>(
    step: String,
    netns: Option<&str>,
    args: &[&str],
) -> Result<Option<T>, NetError> {
    let mut argv: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        argv.extend(["-n".to_owned(), ns.to_owned()]);
    }
    argv.push("-j".to_owned());
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let out = run_ip(step.clone(), argv, None).await?;
    if out.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&out)
        .map(Some)
        .map_err(|e| NetError::Parse {
            step,
            detail: e.to_string(),
        })
}

/// Runs `ip [-n NETNS] -batch -` with these commands, stopping at the first that fails.
async fn ip_batch(step: String, netns: Option<&str>, lines: Vec<String>) -> Result<(), NetError> {
    let mut argv: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        argv.extend(["-n".to_owned(), ns.to_owned()]);
    }
    argv.extend(["-batch".to_owned(), "-".to_owned()]);
    let mut input = lines.join("\n");
    input.push('\n');
    run_ip(step, argv, Some(input)).await.map(|_| ())
}

/// Runs `ip` on a blocking thread, returning its standard output.
async fn run_ip(
    step: String,
    argv: Vec<String>,
    stdin: Option<String>,
) -> Result<String, NetError> {
    let step2 = step.clone();
    let ran = tokio::task::spawn_blocking(move || -> io::Result<std::process::Output> {
        let mut child = Command::new("ip")
            .args(&argv)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())?;
        }
        child.wait_with_output()
    })
    .await
    .map_err(|e| io::Error::other(e.to_string()))
    .and_then(|r| r);
    let out = ran.map_err(|source| NetError::Spawn {
        step: step2,
        source,
    })?;
    if !out.status.success() {
        return Err(NetError::Ip {
            step,
            status: out.status.to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `ip` failed because the device, address or namespace is not there.
fn is_missing(e: &NetError) -> bool {
    let NetError::Ip { message, .. } = e else {
        return false;
    };
    [
        "Cannot find device",
        "does not exist",
        "No such file or directory",
        "Cannot assign requested address",
        "Address not found",
    ]
    .iter()
    .any(|m| message.contains(m))
}

async fn exists(path: &Path) -> bool {
    tokio::fs::try_exists(path).await.unwrap_or(false)
}

/// `len` hex digits of the SHA-256 of `s`.
fn short_hash(s: &str, len: usize) -> String {
    let mut hex = hex::encode(Sha256::digest(s.as_bytes()));
    hex.truncate(len);
    hex
}

fn check_ifname(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(NetError::Invalid {
            what: "interface name",
            detail: format!("{name:?}: 1 to {IFNAME_MAX} letters, digits, '-', '_' or '.'"),
        })
    }
}

/// The network and broadcast addresses of `ip/prefix_len`.
fn network_bounds(ip: Ipv4Addr, prefix_len: u8) -> (u32, u32) {
    let mask = u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix_len)))
        .unwrap_or(0);
    let net = u32::from(ip) & mask;
    (net, net | !mask)
}

fn check_gateway(gateway: Ipv4Addr, prefix_len: u8) -> Result<(), NetError> {
    if !(1..=30).contains(&prefix_len) {
        return Err(NetError::Invalid {
            what: "pod network prefix length",
            detail: format!("/{prefix_len}: must be 1 to 30"),
        });
    }
    let (net, broadcast) = network_bounds(gateway, prefix_len);
    let g = u32::from(gateway);
    if g == net || g == broadcast {
        return Err(NetError::Invalid {
            what: "gateway",
            detail: format!("{gateway} is the network or broadcast address of /{prefix_len}"),
        });
    }
    Ok(())
}

fn check_pod_ip(bridge: &Bridge, ip: Ipv4Addr) -> Result<(), NetError> {
    let (net, broadcast) = network_bounds(bridge.gateway, bridge.prefix_len);
    let i = u32::from(ip);
    let cidr = format!("{}/{}", Ipv4Addr::from(net), bridge.prefix_len);
    if i <= net || i >= broadcast {
        return Err(NetError::Invalid {
            what: "pod IP",
            detail: format!("{ip} is not a host address of the pod network {cidr}"),
        });
    }
    if ip == bridge.gateway {
        return Err(NetError::Invalid {
            what: "pod IP",
            detail: format!("{ip} is the gateway of {cidr}"),
        });
    }
    Ok(())
}
