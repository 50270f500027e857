//! The NetworkPolicy decision against Kubernetes' own examples (the NetworkPolicy concept page
//! and its recipes): default deny, namespaces, pod and namespace selectors together, ipBlock
//! with except, named ports, endPort, egress and the defaulting of `policyTypes`.

use std::collections::HashSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::{Cidr, Policies};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pod(ns: &str, name: &str, ip: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"containers": [{
            "name": "app",
            "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "metrics", "containerPort": 9090},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"}
            ]
        }]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    }))
    .unwrap()
}

fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec
    }))
    .unwrap()
}

const A_WEB: &str = "10.244.1.10";
const A_DB: &str = "10.244.1.11";
const B_WEB: &str = "10.244.2.10";
const B_API: &str = "10.244.2.11";
const C_MON: &str = "10.244.3.10";
const OUTSIDE: &str = "192.0.2.7";

/// Namespaces team-a (`team: a`), team-b (`team: b`) and monitoring (`purpose: monitoring`),
/// with web/db, web/api and mon pods.
fn cluster() -> Policies {
    let p = Policies::default();
    p.apply_namespace(&namespace("team-a", json!({"team": "a"})));
    p.apply_namespace(&namespace("team-b", json!({"team": "b"})));
    p.apply_namespace(&namespace("monitoring", json!({"purpose": "monitoring"})));
    p.apply_pod(&pod("team-a", "web", A_WEB, json!({"app": "web"})));
    p.apply_pod(&pod("team-a", "db", A_DB, json!({"app": "db"})));
    p.apply_pod(&pod("team-b", "web", B_WEB, json!({"app": "web"})));
    p.apply_pod(&pod(
        "team-b",
        "api",
        B_API,
        json!({"app": "api", "role": "frontend"}),
    ));
    p.apply_pod(&pod("monitoring", "mon", C_MON, json!({"app": "mon"})));
    p
}

fn allowed(p: &Policies, from: &str, to: &str, port: u16) -> bool {
    p.check(Some(ip(from)), ip(to), port).is_ok()
}

#[test]
fn without_policies_everything_is_allowed_and_the_table_is_inactive() {
    let p = cluster();
    assert!(!p.is_active());
    assert!(allowed(&p, A_WEB, B_WEB, 8080));
    assert!(allowed(&p, OUTSIDE, B_WEB, 1));
    assert!(p.check_named(Some(ip(A_WEB)), "example.com", 80).is_ok());
}

#[test]
fn default_deny_ingress_isolates_every_pod_of_its_namespace_only() {
    let p = cluster();
    p.apply_policy(&policy(
        "team-b",
        "default-deny-ingress",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    ));
    assert!(p.is_active());
    assert!(!allowed(&p, A_WEB, B_WEB, 8080));
    assert!(!allowed(&p, B_API, B_WEB, 8080), "its own namespace too");
    assert!(!allowed(&p, OUTSIDE, B_API, 8080));
    // Egress of team-b and ingress elsewhere are not affected.
    assert!(allowed(&p, B_WEB, A_WEB, 8080));
    assert!(allowed(&p, C_MON, A_DB, 5432));
    // The node itself always reaches its pods.
    assert!(p.check(None, ip(B_WEB), 8080).is_ok());
    let err = p.check(Some(ip(A_WEB)), ip(B_WEB), 8080).unwrap_err();
    assert!(
        err.0
            .contains("ingress to 10.244.2.10:8080 (pod team-b/web)")
            && err.0.contains("(pod team-a/web)"),
        "{err}"
    );
    // Deleting it restores access.
    p.delete_policy("team-b", "default-deny-ingress");
    assert!(!p.is_active());
    assert!(allowed(&p, A_WEB, B_WEB, 8080));
}

#[test]
fn policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() {
    let p = cluster();
    // No policyTypes and no egress rules: Ingress only (allow-all egress stays).
    p.apply_policy(&policy("team-a", "in", json!({"podSelector": {}})));
    assert!(!allowed(&p, B_WEB, A_WEB, 8080));
    assert!(allowed(&p, A_WEB, B_WEB, 8080));
    // Egress rules make it Egress too: only what they allow goes out.
    p.apply_policy(&policy(
        "team-a",
        "in",
        json!({"podSelector": {}, "ingress": [{}], "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]}),
    ));
    assert!(!allowed(&p, A_WEB, B_WEB, 8080));
    assert!(allowed(&p, A_WEB, A_DB, 5432));
    // Ingress is still isolated, and nothing allows it: A_WEB -> A_DB is allowed out of web
    // but not into db.
    p.apply_policy(&policy(
        "team-a",
        "in",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "egress": [{}]}),
    ));
    assert!(
        allowed(&p, A_WEB, B_WEB, 8080),
        "an empty egress rule allows all"
    );
    assert!(!allowed(&p, B_WEB, A_WEB, 8080));
    assert!(allowed(&p, B_WEB, A_DB, 8080), "db is not selected");
}

#[test]
fn default_deny_egress_and_allow_all_egress() {
    let p = cluster();
    p.apply_policy(&policy(
        "team-a",
        "default-deny-egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    ));
    assert!(!allowed(&p, A_WEB, B_WEB, 8080));
    assert!(!allowed(&p, A_WEB, OUTSIDE, 443));
    assert!(p.check_named(Some(ip(A_WEB)), "example.com", 80).is_err());
    assert!(allowed(&p, B_WEB, A_WEB, 8080), "ingress is not isolated");
    let err = p.check(Some(ip(A_WEB)), ip(B_WEB), 8080).unwrap_err();
    assert!(
        err.0
            .starts_with("network policy: egress from 10.244.1.10 (pod team-a/web)"),
        "{err}"
    );
    p.apply_policy(&policy(
        "team-a",
        "allow-all-egress",
        json!({"podSelector": {}, "egress": [{}], "policyTypes": ["Egress"]}),
    ));
    assert!(allowed(&p, A_WEB, B_WEB, 8080));
    assert!(p.check_named(Some(ip(A_WEB)), "example.com", 80).is_ok());
}

#[test]
fn allow_from_a_namespace_by_label_and_by_its_name() {
    let p = cluster();
    p.apply_policy(&policy(
        "team-b",
        "from-team-a",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]}),
    ));
    assert!(allowed(&p, A_WEB, B_WEB, 8080));
    assert!(allowed(&p, A_DB, B_API, 1234));
    assert!(!allowed(&p, C_MON, B_WEB, 8080));
    assert!(!allowed(&p, B_API, B_WEB, 8080));
    assert!(
        !allowed(&p, OUTSIDE, B_WEB, 8080),
        "outside addresses match ipBlock only"
    );
    // kubernetes.io/metadata.name matches a namespace even before it is seen.
    p.apply_policy(&policy(
        "team-b",
        "from-team-a",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "late"}}}]}]}),
    ));
    p.apply_pod(&pod("late", "x", "10.244.9.9", json!({})));
    assert!(allowed(&p, "10.244.9.9", B_WEB, 8080));
    assert!(!allowed(&p, A_WEB, B_WEB, 8080));
    // A namespace's labels follow its updates.
    p.apply_policy(&policy(
        "team-b",
        "from-team-a",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]}),
    ));
    p.apply_namespace(&namespace("team-a", json!({"team": "z"})));
    assert!(!allowed(&p, A_WEB, B_WEB, 8080));
}

#[test]
fn pod_and_namespace_selector_in_one_peer_is_an_and_in_two_peers_an_or() {
    let p = cluster();
    // One peer: pods labelled app=mon in namespaces labelled purpose=monitoring.
    p.apply_policy(&policy(
        "team-b",
        "and",
        json!({"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"purpose": "monitoring"}},
             "podSelector": {"matchLabels": {"app": "mon"}}}
        ]}]}),
    ));
    assert!(allowed(&p, C_MON, B_API, 8080));
    p.apply_pod(&pod(
        "monitoring",
        "other",
        "10.244.3.11",
        json!({"app": "other"}),
    ));
    assert!(!allowed(&p, "10.244.3.11", B_API, 8080));
    p.apply_pod(&pod("team-a", "mon", "10.244.1.12", json!({"app": "mon"})));
    assert!(!allowed(&p, "10.244.1.12", B_API, 8080));
    // Only web of team-b is unselected.
    assert!(allowed(&p, A_WEB, B_WEB, 8080));
    // Two peers: either.
    p.apply_policy(&policy(
        "team-b",
        "and",
        json!({"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"purpose": "monitoring"}}},
            {"podSelector": {"matchLabels": {"app": "mon"}}}
        ]}]}),
    ));
    assert!(allowed(&p, "10.244.3.11", B_API, 8080));
    assert!(
        !allowed(&p, "10.244.1.12", B_API, 8080),
        "a podSelector alone means the policy's namespace"
    );
    // A podSelector alone: pods of the policy's own namespace.
    p.apply_policy(&policy(
        "team-b",
        "and",
        json!({"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{"from": [
            {"podSelector": {"matchLabels": {"app": "web"}}}
        ]}]}),
    ));
    assert!(allowed(&p, B_WEB, B_API, 8080));
    assert!(!allowed(&p, A_WEB, B_API, 8080));
    // matchExpressions select too.
    p.apply_policy(&policy(
        "team-b",
        "and",
        json!({"podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["frontend"]}]},
               "policyTypes": ["Ingress"]}),
    ));
    assert!(!allowed(&p, B_WEB, B_API, 8080));
    assert!(allowed(&p, B_API, B_WEB, 8080));
}

#[test]
fn ip_block_with_except_matches_addresses_not_pods_selectors() {
    let p = cluster();
    p.apply_policy(&policy(
        "team-b",
        "cidr",
        json!({"podSelector": {}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}},
            {"ipBlock": {"cidr": "10.244.1.0/24"}}
        ]}]}),
    ));
    assert!(allowed(&p, OUTSIDE, B_WEB, 8080));
    assert!(!allowed(&p, "192.0.2.200", B_WEB, 8080));
    assert!(!allowed(&p, "198.51.100.1", B_WEB, 8080));
    assert!(allowed(&p, A_WEB, B_WEB, 8080), "pod IPs in the block");
    assert!(!allowed(&p, C_MON, B_WEB, 8080));
    // Egress to a block.
    p.apply_policy(&policy(
        "team-a",
        "out",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}
        ]}]}),
    ));
    assert!(allowed(&p, A_WEB, OUTSIDE, 443));
    assert!(!allowed(&p, A_WEB, B_WEB, 8080));
    assert!(
        p.check_named(Some(ip(A_WEB)), "example.com", 443).is_err(),
        "a name's address is not known: only a rule for every destination allows it"
    );
}

#[test]
fn ports_by_number_name_protocol_and_range() {
    let p = cluster();
    p.apply_policy(&policy(
        "team-b",
        "ports",
        json!({"podSelector": {}, "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}],
            "ports": [{"protocol": "TCP", "port": 8080}]
        }]}),
    ));
    assert!(allowed(&p, A_WEB, B_WEB, 8080));
    assert!(!allowed(&p, A_WEB, B_WEB, 9090));
    // Named: resolved on the destination pod's containerPorts.
    p.apply_policy(&policy(
        "team-b",
        "ports",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "metrics"}]}]}),
    ));
    assert!(allowed(&p, A_WEB, B_WEB, 9090));
    assert!(!allowed(&p, A_WEB, B_WEB, 8080));
    // A UDP named port does not match TCP traffic on its number; nor does a UDP rule.
    p.apply_policy(&policy(
        "team-b",
        "ports",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "dns"}, {"protocol": "UDP", "port": 8080}]}]}),
    ));
    assert!(!allowed(&p, A_WEB, B_WEB, 53));
    assert!(!allowed(&p, A_WEB, B_WEB, 8080));
    // endPort: a range.
    p.apply_policy(&policy(
        "team-b",
        "ports",
        json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}]}]}),
    ));
    assert!(allowed(&p, A_WEB, B_WEB, 32000));
    assert!(allowed(&p, A_WEB, B_WEB, 32768));
    assert!(allowed(&p, A_WEB, B_WEB, 32100));
    assert!(!allowed(&p, A_WEB, B_WEB, 31999));
    assert!(!allowed(&p, A_WEB, B_WEB, 32769));
    // Egress named ports resolve on the destination pod.
    p.apply_policy(&policy(
        "team-a",
        "egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]}),
    ));
    p.delete_policy("team-b", "ports");
    assert!(allowed(&p, A_WEB, B_WEB, 8080));
    assert!(!allowed(&p, A_WEB, B_WEB, 9090));
    assert!(
        !allowed(&p, A_WEB, OUTSIDE, 8080),
        "no pod to name the port"
    );
}

#[test]
fn the_union_of_policies_allows_and_both_ends_must_agree() {
    let p = cluster();
    p.apply_policy(&policy(
        "team-b",
        "deny",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    ));
    p.apply_policy(&policy(
        "team-b",
        "allow-web",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    ));
    assert!(
        allowed(&p, A_WEB, B_WEB, 8080),
        "one allowing policy is enough"
    );
    assert!(!allowed(&p, A_WEB, B_API, 8080));
    // Egress denied at the source wins over an allowing ingress at the destination.
    p.apply_policy(&policy(
        "team-a",
        "deny-out",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]}),
    ));
    assert!(!allowed(&p, A_WEB, B_WEB, 8080));
    assert!(allowed(&p, A_DB, B_WEB, 8080));
    // The receiving node checks ingress only.
    assert!(p.check_ingress(Some(ip(A_WEB)), ip(B_WEB), 8080).is_ok());
    assert!(p.check_ingress(Some(ip(A_WEB)), ip(B_API), 8080).is_err());
    assert!(p.check_ingress(None, ip(B_API), 8080).is_ok());
}

#[test]
fn pods_leave_and_reuse_addresses_and_relists_forget() {
    let p = cluster();
    p.apply_policy(&policy(
        "team-b",
        "from-web",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}]}]}),
    ));
    assert!(allowed(&p, A_WEB, B_API, 8080));
    // A relabelled pod loses the access its labels gave.
    p.apply_pod(&pod("team-a", "web", A_WEB, json!({"app": "old"})));
    assert!(!allowed(&p, A_WEB, B_API, 8080));
    // Its IP taken by another pod: the new pod's labels decide.
    p.delete_pod("team-a", "web");
    p.apply_pod(&pod("team-a", "web2", A_WEB, json!({"app": "web"})));
    assert!(allowed(&p, A_WEB, B_API, 8080));
    // A finished pod has no address of its own any more.
    let mut done = pod("team-a", "web2", A_WEB, json!({"app": "web"}));
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    p.apply_pod(&done);
    assert!(!allowed(&p, A_WEB, B_API, 8080));
    // A relist keeps only what it listed.
    p.apply_pod(&pod("team-a", "web3", A_WEB, json!({"app": "web"})));
    p.retain_pods(&HashSet::from([("team-b".to_string(), "api".to_string())]));
    assert!(!allowed(&p, A_WEB, B_API, 8080));
    p.retain_policies(&HashSet::new());
    assert!(!p.is_active());
}

#[test]
fn an_invalid_selector_fails_closed() {
    let p = cluster();
    p.apply_policy(&policy(
        "team-b",
        "bad",
        json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Bogus"}]},
               "ingress": [{}]}),
    ));
    // The policy is kept, selects every pod of team-b, and its rules still apply.
    assert!(allowed(&p, A_WEB, B_WEB, 8080));
    p.apply_policy(&policy(
        "team-b",
        "bad",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "Bogus"}]}}]}]}),
    ));
    assert!(
        !allowed(&p, B_WEB, B_API, 8080),
        "an invalid peer matches nothing"
    );
}

#[test]
fn cidrs() {
    let c = Cidr::parse("10.244.0.0/16").unwrap();
    assert!(c.contains(ip("10.244.255.1")));
    assert!(!c.contains(ip("10.245.0.1")));
    assert!(!c.contains(ip("::1")));
    assert!(
        Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("203.0.113.9"))
    );
    assert!(Cidr::parse("192.0.2.7").unwrap().contains(ip("192.0.2.7")));
    assert!(
        !Cidr::parse("192.0.2.7/32")
            .unwrap()
            .contains(ip("192.0.2.8"))
    );
    let v6 = Cidr::parse("fd00::/8").unwrap();
    assert!(v6.contains(ip("fd12::1")));
    assert!(!v6.contains(ip("fe80::1")));
    assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
    assert_eq!(Cidr::parse("10.0.0.0/33"), None);
    assert_eq!(Cidr::parse("nonsense/8"), None);
}
