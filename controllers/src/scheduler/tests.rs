//! Unit tests of the scheduler's filters, scores and FailedScheduling wording.

use super::*;
use k8s_openapi::api::core::v1::{Container, NodeSpec, NodeStatus, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

fn node(name: &str, zone: &str, mem: &str, unschedulable: bool) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                [
                    (ZONE_LABEL.to_string(), zone.to_string()),
                    ("kubernetes.io/hostname".to_string(), name.to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            unschedulable: Some(unschedulable),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            allocatable: Some(
                [
                    ("cpu".to_string(), Quantity("4".into())),
                    ("memory".to_string(), Quantity(mem.into())),
                    ("pods".to_string(), Quantity("110".into())),
                ]
                .into(),
            ),
            ..Default::default()
        }),
    }
}

fn pod(name: &str, mem: &str, owner: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            owner_references: owner.map(|o| {
                vec![OwnerReference {
                    uid: o.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some([("memory".to_string(), Quantity(mem.into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn state(nodes: Vec<Node>) -> State {
    let mut st = State::default();
    for n in nodes {
        st.nodes.insert(n.name_any(), NodeInfo::new(Arc::new(n)));
    }
    st
}

#[test]
fn failed_scheduling_message_counts_reasons_like_kube_scheduler() {
    let mut st = state(vec![
        node("a", "z1", "1Gi", true),
        node("b", "z2", "1Gi", false),
        node("c", "z3", "1Gi", false),
    ]);
    match decide(&mut st, &pod("p", "2Gi", None)) {
        Decision::Unschedulable(msg) => assert_eq!(
            msg,
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient memory. preemption: not supported."
        ),
        Decision::Bind(n) => panic!("bound to {n}"),
    }
}

#[test]
fn replicas_of_one_owner_spread_across_nodes() {
    let mut st = state(vec![
        node("a", "z1", "8Gi", false),
        node("b", "z2", "8Gi", false),
        node("c", "z3", "8Gi", false),
    ]);
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        let p = pod(&format!("p{i}"), "100Mi", Some("rs1"));
        let Decision::Bind(n) = decide(&mut st, &p) else {
            panic!("unschedulable")
        };
        st.place(p.metadata.uid.as_deref().unwrap(), placed_of(&p, n.clone()));
        *per_node.entry(n).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|c| *c == 2), "{per_node:?}");
}

#[test]
fn memory_accounting_fills_nodes() {
    let mut st = state(vec![node("a", "z1", "1Gi", false)]);
    let p1 = pod("p1", "800Mi", None);
    let Decision::Bind(n) = decide(&mut st, &p1) else {
        panic!("first pod fits")
    };
    st.place("uid-p1", placed_of(&p1, n));
    assert!(matches!(
        decide(&mut st, &pod("p2", "800Mi", None)),
        Decision::Unschedulable(_)
    ));
    st.forget("uid-p1");
    assert!(matches!(
        decide(&mut st, &pod("p2", "800Mi", None)),
        Decision::Bind(_)
    ));
}

#[test]
fn taints_need_tolerations() {
    let mut n = node("a", "z1", "1Gi", false);
    n.spec.as_mut().unwrap().taints = Some(vec![Taint {
        key: "node.kubernetes.io/unreachable".into(),
        effect: "NoExecute".into(),
        ..Default::default()
    }]);
    let mut st = state(vec![n]);
    match decide(&mut st, &pod("p", "1Mi", None)) {
        Decision::Unschedulable(msg) => assert!(
            msg.contains("1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
            "{msg}"
        ),
        Decision::Bind(_) => panic!("tainted node accepted"),
    }
    let mut p = pod("q", "1Mi", None);
    p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
        key: Some("node.kubernetes.io/unreachable".into()),
        operator: Some("Exists".into()),
        ..Default::default()
    }]);
    assert!(matches!(decide(&mut st, &p), Decision::Bind(_)));
}
