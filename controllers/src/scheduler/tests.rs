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
        Decision::Bind(n) | Decision::SelectNode(n, _) => panic!("bound to {n}"),
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
        Decision::Bind(_) | Decision::SelectNode(..) => panic!("tainted node accepted"),
    }
    let mut p = pod("q", "1Mi", None);
    p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
        key: Some("node.kubernetes.io/unreachable".into()),
        operator: Some("Exists".into()),
        ..Default::default()
    }]);
    assert!(matches!(decide(&mut st, &p), Decision::Bind(_)));
}

#[test]
fn nodes_to_find_follow_kube_scheduler_percentage() {
    assert_eq!(feasible_nodes_to_find(50, 0), 50);
    assert_eq!(feasible_nodes_to_find(100, 0), 100);
    // 50% - 1000/125 = 42%.
    assert_eq!(feasible_nodes_to_find(1_000, 0), 420);
    // 50% - 40% = 10%.
    assert_eq!(feasible_nodes_to_find(5_000, 0), 500);
    // Never below 5%, never below 100 nodes.
    assert_eq!(feasible_nodes_to_find(20_000, 0), 1_000);
    assert_eq!(feasible_nodes_to_find(1_000, 1), 100);
    assert_eq!(feasible_nodes_to_find(1_000, 100), 1_000);
}

fn many_nodes(n: usize, mem: &str) -> State {
    state(
        (0..n)
            .map(|i| node(&format!("n{i:04}"), &format!("z{}", i % 3), mem, false))
            .collect(),
    )
}

#[test]
fn successive_pods_search_from_where_the_last_search_stopped() {
    // 1,000 nodes: each search stops after 420 feasible nodes, and the next starts after them.
    let mut st = many_nodes(1_000, "8Gi");
    assert_eq!(st.next_start, "");
    let Decision::Bind(first) = decide(&mut st, &pod("p1", "1Mi", None)) else {
        panic!("unschedulable")
    };
    assert!(first.as_str() < "n0420", "{first}");
    assert_eq!(st.next_start, "n0420");
    let Decision::Bind(second) = decide(&mut st, &pod("p2", "1Mi", None)) else {
        panic!("unschedulable")
    };
    assert!(("n0420".."n0840").contains(&second.as_str()), "{second}");
    assert_eq!(st.next_start, "n0840");
    // The third search wraps round the end of the ring.
    assert!(matches!(
        decide(&mut st, &pod("p3", "1Mi", None)),
        Decision::Bind(_)
    ));
    assert_eq!(st.next_start, "n0260");
}

#[test]
fn failed_scheduling_counts_every_node_when_sampling() {
    let mut st = many_nodes(300, "1Gi");
    match decide(&mut st, &pod("p", "2Gi", None)) {
        Decision::Unschedulable(msg) => assert_eq!(
            msg,
            "0/300 nodes are available: 300 Insufficient memory. preemption: not supported."
        ),
        Decision::Bind(n) | Decision::SelectNode(n, _) => panic!("bound to {n}"),
    }
}

#[test]
fn node_updates_keep_what_is_placed_on_the_node() {
    let mut st = state(vec![node("a", "z1", "1Gi", false)]);
    let p1 = pod("p1", "800Mi", None);
    st.place("uid-p1", placed_of(&p1, "a".into()));
    // A status-only update (same labels, spec and allocatable) changes nothing that matters.
    assert!(!st.apply_node(node("a", "z1", "1Gi", false)));
    assert!(matches!(
        decide(&mut st, &pod("p2", "800Mi", None)),
        Decision::Unschedulable(_)
    ));
    // More memory: the placed pod is still counted and the second one now fits.
    assert!(st.apply_node(node("a", "z1", "2Gi", false)));
    assert_eq!(st.nodes["a"].used_pods, 1);
    assert!(matches!(
        decide(&mut st, &pod("p2", "800Mi", None)),
        Decision::Bind(_)
    ));
    // A node that appears after pods were placed on it counts them.
    let p3 = pod("p3", "100Mi", None);
    st.place("uid-p3", placed_of(&p3, "b".into()));
    assert!(st.apply_node(node("b", "z2", "1Gi", false)));
    assert_eq!(st.nodes["b"].used_pods, 1);
    // A re-list rebuilds every node from the placed pods.
    st.replace_nodes(vec![
        node("a", "z1", "2Gi", false),
        node("b", "z2", "1Gi", false),
    ]);
    assert_eq!(st.nodes["a"].used_pods, 1);
    assert_eq!(st.nodes["b"].used_pods, 1);
    assert_eq!(st.nodes["a"].used_mem, 800 * 1024 * 1024);
}

#[test]
fn hard_topology_spread_keeps_zones_within_max_skew() {
    use k8s_openapi::api::core::v1::TopologySpreadConstraint;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    // Scores alone would put every pod on the roomier node `a`.
    let mut st = state(vec![
        node("a", "z1", "64Gi", false),
        node("b", "z2", "1Gi", false),
    ]);
    let spread_pod = |name: &str| {
        let mut p = pod(name, "100Mi", None);
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        p.spec.as_mut().unwrap().topology_spread_constraints =
            Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: ZONE_LABEL.into(),
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        p
    };
    let mut zones: HashMap<String, usize> = HashMap::new();
    for i in 0..4 {
        let p = spread_pod(&format!("w{i}"));
        let Decision::Bind(n) = decide(&mut st, &p) else {
            panic!("unschedulable")
        };
        st.place(p.metadata.uid.as_deref().unwrap(), placed_of(&p, n.clone()));
        *zones.entry(n).or_default() += 1;
    }
    assert_eq!(zones.get("a"), Some(&2), "{zones:?}");
    assert_eq!(zones.get("b"), Some(&2), "{zones:?}");
}

#[test]
fn the_active_queue_takes_higher_priority_first_then_arrival_order() {
    let mut st = state(vec![node("n1", "a", "1Gi", false)]);
    let with_priority = |name: &str, priority: Option<i32>| {
        let mut p = pod(name, "1Mi", None);
        if let Some(spec) = p.spec.as_mut() {
            spec.priority = priority;
        }
        Arc::new(p)
    };
    st.apply_pod(with_priority("low1", Some(0)));
    st.apply_pod(with_priority("none", None));
    st.apply_pod(with_priority("high", Some(1000)));
    st.apply_pod(with_priority("low2", Some(0)));
    st.apply_pod(with_priority("neg", Some(-5)));
    st.apply_pod(with_priority("higher", Some(2000)));
    let order: Vec<String> =
        std::iter::from_fn(|| st.queue.pop_first().map(|(_, _, uid)| uid)).collect();
    assert_eq!(
        order,
        ["higher", "high", "low1", "none", "low2", "neg"].map(|n| format!("uid-{n}"))
    );
}

fn runtime_class(name: &str, handler: &str) -> Arc<RuntimeClass> {
    Arc::new(RuntimeClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        handler: handler.into(),
        ..Default::default()
    })
}

fn with_runtime(mut n: Node, handlers: &str) -> Node {
    n.metadata
        .labels
        .get_or_insert_default()
        .insert(RUNTIME_LABEL.to_string(), handlers.to_string());
    n
}

#[test]
fn a_runtime_no_node_runs_names_the_class_and_handler() {
    let mut st = state(vec![
        node("a", "z1", "1Gi", false),
        with_runtime(node("b", "z2", "1Gi", false), "wasm"),
    ]);
    st.runtime_classes
        .insert("oci".into(), runtime_class("oci", "oci"));
    let mut p = pod("p", "1Mi", None);
    p.spec.as_mut().unwrap().runtime_class_name = Some("oci".into());
    match decide(&mut st, &p) {
        Decision::Unschedulable(msg) => assert_eq!(
            msg,
            "0/2 nodes are available: 2 node(s) didn't support the pod's runtime class \"oci\" (handler \"oci\"). preemption: not supported."
        ),
        Decision::Bind(n) | Decision::SelectNode(n, _) => panic!("bound to {n}"),
    }
    // A node running both handlers takes it; the wasm-only node still does not.
    let both = with_runtime(node("c", "z3", "1Gi", false), "wasm.oci");
    st.nodes.insert("c".into(), NodeInfo::new(Arc::new(both)));
    match decide(&mut st, &p) {
        Decision::Bind(n) => assert_eq!(n, "c"),
        other => panic!("not bound to c: {}", describe(&other)),
    }
}

#[test]
fn a_missing_runtime_class_keeps_its_not_found_message() {
    let mut st = state(vec![node("a", "z1", "1Gi", false)]);
    let mut p = pod("p", "1Mi", None);
    p.spec.as_mut().unwrap().runtime_class_name = Some("gvisor".into());
    match decide(&mut st, &p) {
        Decision::Unschedulable(msg) => assert_eq!(
            msg,
            "0/1 nodes are available: runtimeclass.node.k8s.io \"gvisor\" not found. preemption: not supported."
        ),
        Decision::Bind(n) | Decision::SelectNode(n, _) => panic!("bound to {n}"),
    }
}

fn describe(d: &Decision) -> String {
    match d {
        Decision::Unschedulable(m) => m.clone(),
        Decision::Bind(n) | Decision::SelectNode(n, _) => format!("node {n}"),
    }
}

fn with_interfaces(mut n: Node, interfaces: &[&str]) -> Node {
    n.metadata.annotations.get_or_insert_default().insert(
        wit::NODE_INTERFACES.to_string(),
        serde_json::to_string(interfaces).unwrap(),
    );
    n
}

fn importing(mut p: Pod, imports: &[&str]) -> Pod {
    p.metadata.annotations.get_or_insert_default().insert(
        wit::POD_IMPORTS.to_string(),
        serde_json::json!({"c": imports}).to_string(),
    );
    p
}

#[test]
fn pods_go_only_to_nodes_providing_every_import() {
    const KV: &str = "wasi:keyvalue/store@0.2.0-draft";
    let mut st = state(vec![
        with_interfaces(node("a", "z1", "1Gi", false), &["wasi:cli/stdout@0.2.12"]),
        with_interfaces(node("b", "z2", "1Gi", false), &["wasi:cli/stdout@0.2.12"]),
    ]);
    let p = importing(pod("p", "1Mi", None), &[KV, "wasi:cli/stdout@0.2.0"]);
    match decide(&mut st, &p) {
        Decision::Unschedulable(msg) => assert_eq!(
            msg,
            format!("0/2 nodes provide {KV}. preemption: not supported.")
        ),
        other => panic!("scheduled: {}", describe(&other)),
    }
    // A node that provides it, but is full: the per-node reasons, kube-scheduler's shape.
    let full = with_interfaces(
        node("c", "z3", "1Ki", false),
        &[KV, "wasi:cli/stdout@0.2.12"],
    );
    st.nodes.insert("c".into(), NodeInfo::new(Arc::new(full)));
    match decide(&mut st, &p) {
        Decision::Unschedulable(msg) => assert_eq!(
            msg,
            format!(
                "0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't provide {KV}. preemption: not supported."
            )
        ),
        other => panic!("scheduled: {}", describe(&other)),
    }
    // A node that says nothing is not filtered by interface.
    st.nodes.insert(
        "d".into(),
        NodeInfo::new(Arc::new(node("d", "z4", "1Gi", false))),
    );
    match decide(&mut st, &p) {
        Decision::Bind(n) => assert_eq!(n, "d"),
        other => panic!("not bound to d: {}", describe(&other)),
    }
}

#[test]
fn owner_counts_follow_places_removals_and_node_zones() {
    let mut st = state(vec![
        node("a", "z1", "8Gi", false),
        node("b", "z2", "8Gi", false),
    ]);
    let counts = |st: &State| {
        let c = &st.owners["rs1"];
        let mut nodes: Vec<(String, i64)> =
            c.per_node.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut zones: Vec<(String, i64)> =
            c.per_zone.iter().map(|(k, v)| (k.clone(), *v)).collect();
        nodes.sort();
        zones.sort();
        (nodes, zones, c.node_max())
    };
    let s = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
        v.iter().map(|(k, c)| (k.to_string(), *c)).collect()
    };
    for (name, on) in [("p1", "a"), ("p2", "a"), ("p3", "b")] {
        let p = pod(name, "10Mi", Some("rs1"));
        st.place(&format!("uid-{name}"), placed_of(&p, on.into()));
    }
    assert_eq!(
        counts(&st),
        (s(&[("a", 2), ("b", 1)]), s(&[("z1", 2), ("z2", 1)]), 2)
    );
    // Placing a pod again (a re-bind seen by the watch) moves it, not adds it.
    let p3 = pod("p3", "10Mi", Some("rs1"));
    st.place("uid-p3", placed_of(&p3, "a".into()));
    assert_eq!(counts(&st), (s(&[("a", 3)]), s(&[("z1", 3)]), 3));
    st.place("uid-p3", placed_of(&p3, "b".into()));
    st.forget("uid-p1");
    assert_eq!(
        counts(&st),
        (s(&[("a", 1), ("b", 1)]), s(&[("z1", 1), ("z2", 1)]), 1)
    );
    // A node changing zone takes its pods' zone counts along.
    st.apply_node(node("a", "z3", "8Gi", false));
    assert_eq!(
        counts(&st),
        (s(&[("a", 1), ("b", 1)]), s(&[("z2", 1), ("z3", 1)]), 1)
    );
    // A pod on a node not yet known counts on the node, and in its zone once the node appears.
    let p4 = pod("p4", "10Mi", Some("rs1"));
    st.place("uid-p4", placed_of(&p4, "c".into()));
    assert_eq!(counts(&st).1, s(&[("z2", 1), ("z3", 1)]));
    st.apply_node(node("c", "z1", "8Gi", false));
    assert_eq!(counts(&st).1, s(&[("z1", 1), ("z2", 1), ("z3", 1)]));
    // A node deleted leaves its pods counted on it but in no zone; a re-list recounts all.
    st.node_event(WEvent::Delete(node("b", "z2", "8Gi", false)));
    assert_eq!(counts(&st).1, s(&[("z1", 1), ("z3", 1)]));
    st.replace_nodes(vec![
        node("a", "z1", "8Gi", false),
        node("b", "z1", "8Gi", false),
        node("c", "z1", "8Gi", false),
    ]);
    assert_eq!(
        counts(&st),
        (s(&[("a", 1), ("b", 1), ("c", 1)]), s(&[("z1", 3)]), 1)
    );
    for u in ["uid-p2", "uid-p3", "uid-p4"] {
        st.forget(u);
    }
    assert!(st.owners.is_empty());
}
