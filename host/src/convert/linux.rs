//! What only a Linux container reads from its Pod, decided as kubelet decides it: `command` and
//! `args` kept apart with `$(VAR)` expansion, the security context (pod and container level
//! merged), `tty`/`stdin`; and per pod the hostname, the pod network (gateway and prefix of the
//! node's pod CIDR) and `/etc/resolv.conf` from `dnsPolicy` and `dnsConfig`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_runtime::oci::SecurityOptions;
use skiff_runtime::{DnsConfig, LinuxContainer, PodNetwork};

use super::expand;

/// The cluster's DNS domain.
pub(crate) const CLUSTER_DOMAIN: &str = "cluster.local";
/// Kubelet's limits on what a resolv.conf may hold.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// A container's Linux part: command and args expanded apart, the merged security context.
/// Errors are messages for `CreateContainerConfigError`.
pub(crate) fn linux_container(
    pod: &Pod,
    c: &Container,
    vars: &HashMap<String, String>,
) -> Result<LinuxContainer, String> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|s| s.run_as_group));
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_sc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if non_root && run_as_user == Some(0) {
        // Kubelet's message for the same check.
        return Err("container's runAsUser breaks non-root policy".into());
    }
    let id = |v: Option<i64>, what: &str| -> Result<Option<u32>, String> {
        v.map(|n| u32::try_from(n).map_err(|_| format!("{what} {n} is not a valid id")))
            .transpose()
    };
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let security = SecurityOptions {
        read_only_root: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        add_capabilities: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        drop_capabilities: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        run_as_user: id(run_as_user, "runAsUser")?,
        run_as_group: id(run_as_group, "runAsGroup")?,
    };
    Ok(LinuxContainer {
        command: c
            .command
            .iter()
            .flatten()
            .map(|a| expand(a, vars))
            .collect(),
        args: c.args.iter().flatten().map(|a| expand(a, vars)).collect(),
        security,
        stdin: c.stdin.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
    })
}

/// What a Linux container asks for that the backend cannot give yet: a clear "not supported"
/// message instead of a container that silently runs without it.
pub(crate) fn unsupported(pod: &Pod, c: &Container) -> Option<String> {
    let spec = pod.spec.as_ref();
    if c.security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false)
    {
        return Some(format!(
            "container {}: privileged containers are not supported by this node",
            c.name
        ));
    }
    if spec.and_then(|s| s.host_network).unwrap_or(false)
        || spec.and_then(|s| s.host_pid).unwrap_or(false)
        || spec.and_then(|s| s.host_ipc).unwrap_or(false)
    {
        return Some(
            "host namespaces (hostNetwork, hostPID, hostIPC) are not supported by this node".into(),
        );
    }
    // What Pod Security admission lets through in a `privileged` namespace and this node cannot
    // honour: refused, never silently ignored.
    let name = &c.name;
    if let Some(p) = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.host_port.is_some_and(|h| h != 0))
    {
        return Some(format!(
            "container {name}: hostPort {} is not supported by this node",
            p.host_port.unwrap_or_default()
        ));
    }
    let csc = c.security_context.as_ref();
    let psc = spec.and_then(|s| s.security_context.as_ref());
    if csc
        .and_then(|s| s.proc_mount.as_deref())
        .is_some_and(|m| m != "Default")
    {
        return Some(format!(
            "container {name}: securityContext.procMount other than Default is not supported by this node"
        ));
    }
    if csc.and_then(|s| s.se_linux_options.as_ref()).is_some()
        || psc.and_then(|s| s.se_linux_options.as_ref()).is_some()
    {
        return Some(format!(
            "container {name}: seLinuxOptions are not supported by this node"
        ));
    }
    let localhost = |t: Option<&str>| t == Some("Localhost");
    if localhost(
        csc.and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str()),
    ) || localhost(
        psc.and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str()),
    ) {
        return Some(format!(
            "container {name}: Localhost seccomp profiles are not supported by this node"
        ));
    }
    if localhost(
        csc.and_then(|s| s.app_armor_profile.as_ref())
            .map(|p| p.type_.as_str()),
    ) || localhost(
        psc.and_then(|s| s.app_armor_profile.as_ref())
            .map(|p| p.type_.as_str()),
    ) {
        return Some(format!(
            "container {name}: Localhost AppArmor profiles are not supported by this node"
        ));
    }
    if psc
        .and_then(|s| s.sysctls.as_ref())
        .is_some_and(|v| !v.is_empty())
    {
        return Some("sysctls are not supported by this node".into());
    }
    if spec.and_then(|s| s.host_users) == Some(false) {
        return Some("user namespaces (hostUsers: false) are not supported by this node".into());
    }
    None
}

/// The pod's hostname: `spec.hostname`, else the pod's name (kubelet truncates to 63).
pub(crate) fn hostname(pod: &Pod) -> String {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let mut h: String = name.chars().take(63).collect();
    // Kubelet trims what the cut leaves at the end that a hostname cannot end with.
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

/// The node's pod network as a Linux backend needs it: the first address of the pod CIDR as
/// gateway (the bridge's address) and its prefix length. `None` for a CIDR that is not IPv4.
pub(crate) fn pod_network(cidr: &str) -> Option<PodNetwork> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix_len: u8 = len.parse().ok().filter(|l| (8..=30).contains(l))?;
    let mask = u32::MAX << (32 - u32::from(prefix_len));
    Some(PodNetwork {
        gateway: Ipv4Addr::from((u32::from(addr) & mask) + 1),
        prefix_len,
    })
}

/// A resolv.conf's nameservers, search domains and options (kubelet's `--resolv-conf` read).
pub(crate) fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut out = DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                    out.nameservers.push(ip);
                }
            }
            // The last `search` (or `domain`) line wins, as in the resolver.
            Some("search") | Some("domain") => {
                out.searches = words.map(|w| w.trim_end_matches('.').to_string()).collect();
            }
            Some("options") => out.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    out
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// Options by name: a later one replaces an earlier one of the same name (kubelet's
/// `mergeDNSOptions`).
fn merge_option(options: &mut Vec<String>, option: String) {
    let name = option.split(':').next().unwrap_or_default().to_string();
    match options
        .iter_mut()
        .find(|o| o.split(':').next() == Some(name.as_str()))
    {
        Some(o) => *o = option,
        None => options.push(option),
    }
}

/// The pod's resolv.conf as kubelet writes it. `cluster_dns` is the node's DNS address (the
/// bridge gateway); `host` is the node's own resolv.conf. Errors are messages for the sandbox.
pub(crate) fn dns_config(
    pod: &Pod,
    cluster_dns: Option<IpAddr>,
    host: &DnsConfig,
) -> Result<DnsConfig, String> {
    let spec = pod.spec.as_ref();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        "Default" | "None" => false,
        other => return Err(format!("unsupported dnsPolicy {other:?}")),
    };
    let mut out = if policy == "None" {
        DnsConfig::default()
    } else if let (true, Some(server)) = (cluster_first, cluster_dns) {
        // ClusterFirst: the cluster's DNS, the namespace's search path before the node's.
        let mut searches = vec![
            format!("{ns}.svc.{CLUSTER_DOMAIN}"),
            format!("svc.{CLUSTER_DOMAIN}"),
            CLUSTER_DOMAIN.to_string(),
        ];
        for s in &host.searches {
            push_unique(&mut searches, s.clone());
        }
        DnsConfig {
            nameservers: vec![server],
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        // Default (or ClusterFirst without a cluster DNS, as kubelet falls back): the node's.
        host.clone()
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        for n in extra.nameservers.iter().flatten() {
            let ip: IpAddr = n
                .parse()
                .map_err(|_| format!("dnsConfig nameserver {n:?} is not an IP address"))?;
            push_unique(&mut out.nameservers, ip);
        }
        for s in extra.searches.iter().flatten() {
            push_unique(&mut out.searches, s.clone());
        }
        for o in extra.options.iter().flatten() {
            let Some(name) = o.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let option = match o.value.as_deref() {
                Some(v) if !v.is_empty() => format!("{name}:{v}"),
                _ => name.to_string(),
            };
            merge_option(&mut out.options, option);
        }
    }
    if policy == "None" && out.nameservers.is_empty() {
        return Err("dnsPolicy None needs at least one dnsConfig nameserver".into());
    }
    out.nameservers.truncate(MAX_NAMESERVERS);
    out.searches.truncate(MAX_SEARCHES);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("valid pod yaml")
    }

    fn host() -> DnsConfig {
        parse_resolv_conf(
            "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54 ; second\n\
             search corp.example.\noptions edns0 ndots:1\n",
        )
    }

    fn gw() -> Option<IpAddr> {
        Some(IpAddr::from([10, 244, 0, 1]))
    }

    #[test]
    fn resolv_conf_is_read_as_the_resolver_reads_it() {
        let h = host();
        assert_eq!(
            h.nameservers,
            vec![IpAddr::from([192, 0, 2, 53]), IpAddr::from([192, 0, 2, 54])]
        );
        assert_eq!(h.searches, vec!["corp.example"]);
        assert_eq!(h.options, vec!["edns0", "ndots:1"]);
        assert_eq!(
            parse_resolv_conf("search a b\ndomain c\n").searches,
            vec!["c"]
        );
    }

    #[test]
    fn cluster_first_uses_the_node_dns_and_the_namespace_search_path() {
        let p = pod("metadata: {name: p, namespace: shop}\nspec: {containers: []}");
        let d = dns_config(&p, gw(), &host()).expect("dns");
        assert_eq!(d.nameservers, vec![IpAddr::from([10, 244, 0, 1])]);
        assert_eq!(
            d.searches,
            vec![
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(d.options, vec!["ndots:5"]);
        assert_eq!(
            d.resolv_conf(),
            "nameserver 10.244.0.1\nsearch shop.svc.cluster.local svc.cluster.local \
             cluster.local corp.example\noptions ndots:5\n"
        );
        // Without a cluster DNS, kubelet falls back to the node's resolver.
        assert_eq!(dns_config(&p, None, &host()).expect("dns"), host());
    }

    #[test]
    fn default_policy_copies_the_node_resolver_and_none_takes_only_dns_config() {
        let p = pod("metadata: {name: p}\nspec: {dnsPolicy: Default, containers: []}");
        assert_eq!(dns_config(&p, gw(), &host()).expect("dns"), host());
        let p = pod(r#"
metadata: {name: p}
spec:
  dnsPolicy: None
  dnsConfig: {nameservers: [1.1.1.1], searches: [a.example], options: [{name: ndots, value: "2"}]}
  containers: []
"#);
        let d = dns_config(&p, gw(), &host()).expect("dns");
        assert_eq!(d.nameservers, vec![IpAddr::from([1, 1, 1, 1])]);
        assert_eq!(d.searches, vec!["a.example"]);
        assert_eq!(d.options, vec!["ndots:2"]);
        let empty = pod("metadata: {name: p}\nspec: {dnsPolicy: None, containers: []}");
        assert!(dns_config(&empty, gw(), &host()).is_err());
        let bad = pod("metadata: {name: p}\nspec: {dnsPolicy: Other, containers: []}");
        assert!(dns_config(&bad, gw(), &host()).is_err());
    }

    #[test]
    fn dns_config_merges_into_cluster_first_as_kubelet_does() {
        let p = pod(r#"
metadata: {name: p, namespace: ns}
spec:
  dnsConfig:
    nameservers: [10.244.0.1, 8.8.8.8, 9.9.9.9, 1.1.1.1]
    searches: [cluster.local, extra.example]
    options: [{name: ndots, value: "1"}, {name: edns0}, {name: ""}]
  containers: []
"#);
        let d = dns_config(&p, gw(), &DnsConfig::default()).expect("dns");
        // Duplicates dropped, then at most three nameservers.
        assert_eq!(
            d.nameservers,
            vec![
                IpAddr::from([10, 244, 0, 1]),
                IpAddr::from([8, 8, 8, 8]),
                IpAddr::from([9, 9, 9, 9])
            ]
        );
        assert_eq!(
            d.searches,
            vec![
                "ns.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "extra.example"
            ]
        );
        // The pod's ndots replaces the default one.
        assert_eq!(d.options, vec!["ndots:1", "edns0"]);
        let bad = pod("metadata: {name: p}\nspec: {dnsConfig: {nameservers: [x]}, containers: []}");
        assert!(dns_config(&bad, gw(), &host()).is_err());
    }

    #[test]
    fn host_network_cluster_first_falls_back_unless_with_host_net() {
        let p = pod("metadata: {name: p}\nspec: {hostNetwork: true, containers: []}");
        assert_eq!(dns_config(&p, gw(), &host()).expect("dns"), host());
        let p = pod(
            "metadata: {name: p}\nspec: {hostNetwork: true, dnsPolicy: ClusterFirstWithHostNet, containers: []}",
        );
        assert_eq!(
            dns_config(&p, gw(), &host()).expect("dns").nameservers,
            vec![IpAddr::from([10, 244, 0, 1])]
        );
    }

    #[test]
    fn hostname_is_spec_hostname_or_the_pod_name() {
        let p = pod("metadata: {name: web-0}\nspec: {hostname: db, containers: []}");
        assert_eq!(hostname(&p), "db");
        let p = pod("metadata: {name: web-0}\nspec: {containers: []}");
        assert_eq!(hostname(&p), "web-0");
        let long = format!(
            "metadata: {{name: {}-x}}\nspec: {{containers: []}}",
            "a".repeat(62)
        );
        assert_eq!(hostname(&pod(&long)), "a".repeat(62));
    }

    #[test]
    fn the_pod_network_is_the_first_address_of_the_cidr() {
        assert_eq!(
            pod_network("10.244.3.0/24"),
            Some(PodNetwork {
                gateway: Ipv4Addr::new(10, 244, 3, 1),
                prefix_len: 24
            })
        );
        assert_eq!(
            pod_network("10.244.3.77/20").map(|n| n.gateway),
            Some(Ipv4Addr::new(10, 244, 0, 1))
        );
        assert_eq!(pod_network("fd00::/64"), None);
        assert_eq!(pod_network("<none>"), None);
    }

    #[test]
    fn command_and_args_stay_apart_and_expand() {
        let p = pod(r#"
metadata: {name: p}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "echo $(GREETING) $$(GREETING)"]
    args: ["$(GREETING)", "$(MISSING)"]
    tty: true
"#);
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let vars = HashMap::from([("GREETING".to_string(), "hi".to_string())]);
        let l = linux_container(&p, c, &vars).expect("linux");
        assert_eq!(l.command, vec!["sh", "-c", "echo hi $(GREETING)"]);
        assert_eq!(l.args, vec!["hi", "$(MISSING)"]);
        assert!(l.tty);
        assert!(!l.stdin);
    }

    #[test]
    fn security_contexts_merge_container_over_pod() {
        let p = pod(r#"
metadata: {name: p}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 3000, runAsNonRoot: true}
  containers:
  - name: a
    image: x
    securityContext:
      runAsUser: 2000
      readOnlyRootFilesystem: true
      capabilities: {add: [NET_ADMIN], drop: [ALL]}
  - name: b
    image: x
  - name: root
    image: x
    securityContext: {runAsUser: 0}
  - name: priv
    image: x
    securityContext: {privileged: true}
"#);
        let cs = &p.spec.as_ref().expect("spec").containers;
        let vars = HashMap::new();
        let a = linux_container(&p, &cs[0], &vars).expect("a").security;
        assert_eq!(a.run_as_user, Some(2000));
        assert_eq!(a.run_as_group, Some(3000));
        assert!(a.read_only_root);
        assert_eq!(a.add_capabilities, vec!["NET_ADMIN"]);
        assert_eq!(a.drop_capabilities, vec!["ALL"]);
        let b = linux_container(&p, &cs[1], &vars).expect("b").security;
        assert_eq!(b.run_as_user, Some(1000));
        assert!(!b.read_only_root);
        assert!(b.add_capabilities.is_empty());
        let root = linux_container(&p, &cs[2], &vars).expect_err("non-root policy");
        assert!(root.contains("non-root"), "{root}");
        assert!(unsupported(&p, &cs[3]).is_some());
        assert!(unsupported(&p, &cs[0]).is_none());
    }

    #[test]
    fn what_the_node_cannot_honour_is_refused() {
        let cases = [
            ("hostNetwork: true", "", "host namespaces"),
            (
                "",
                "ports: [{containerPort: 80, hostPort: 8080}]",
                "hostPort 8080",
            ),
            ("", "securityContext: {procMount: Unmasked}", "procMount"),
            (
                "securityContext: {seLinuxOptions: {level: s0}}",
                "",
                "seLinuxOptions",
            ),
            (
                "",
                "securityContext: {seccompProfile: {type: Localhost, localhostProfile: p.json}}",
                "seccomp",
            ),
            (
                "securityContext: {appArmorProfile: {type: Localhost, localhostProfile: p}}",
                "",
                "AppArmor",
            ),
            (
                "securityContext: {sysctls: [{name: net.core.somaxconn, value: '1024'}]}",
                "",
                "sysctls",
            ),
            ("hostUsers: false", "", "hostUsers"),
        ];
        for (pod_field, container_field, want) in cases {
            let p = pod(&format!(
                "metadata: {{name: p}}\nspec:\n  {pod_field}\n  containers:\n  - name: c\n    image: x\n    {container_field}\n"
            ));
            let c = &p.spec.as_ref().expect("spec").containers[0];
            let why = unsupported(&p, c).unwrap_or_default();
            assert!(why.contains(want), "{pod_field} {container_field}: {why:?}");
        }
        let p = pod(
            "metadata: {name: p}\nspec:\n  securityContext: {seccompProfile: {type: RuntimeDefault}}\n  containers: [{name: c, image: x, ports: [{containerPort: 80}]}]\n",
        );
        assert_eq!(
            unsupported(&p, &p.spec.as_ref().expect("spec").containers[0]),
            None
        );
    }
}
