//! Tests for field selectors.

use serde_json::json;

use super::*;
use crate::find_by_kind;

#[test]
fn pod_fields_are_selectable() {
    let k = find_by_kind("v1", "Pod").expect("pod");
    let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]}});
    assert_eq!(value(k, &pod, "metadata.name").as_deref(), Some("p"));
    assert_eq!(value(k, &pod, "metadata.namespace").as_deref(), Some("ns"));
    assert_eq!(value(k, &pod, "spec.nodeName").as_deref(), Some("n1"));
    assert_eq!(value(k, &pod, "status.phase").as_deref(), Some("Running"));
    assert_eq!(value(k, &pod, "status.podIPs").as_deref(), Some("10.0.0.1"));
    assert_eq!(value(k, &pod, "spec.hostNetwork").as_deref(), Some("false"));
    assert_eq!(value(k, &pod, "spec.schedulerName").as_deref(), Some(""));
    assert_eq!(value(k, &pod, "spec.containers"), None);
    assert!(!is_selectable(k, "status.hostIP"));
}

#[test]
fn event_node_and_secret_fields() {
    let ev = find_by_kind("v1", "Event").expect("event");
    let e = json!({"metadata": {"name": "e"}, "involvedObject": {"uid": "u1", "name": "p", "kind": "Pod"}, "type": "Warning", "source": {"component": "kubelet"}});
    assert_eq!(value(ev, &e, "involvedObject.uid").as_deref(), Some("u1"));
    assert_eq!(
        value(ev, &e, "involvedObject.namespace").as_deref(),
        Some("")
    );
    assert_eq!(value(ev, &e, "type").as_deref(), Some("Warning"));
    assert_eq!(value(ev, &e, "source").as_deref(), Some("kubelet"));
    let ev1 = find_by_kind("events.k8s.io/v1", "Event").expect("event v1");
    let e1 = json!({"regarding": {"uid": "u2"}, "reportingController": "ctl"});
    assert_eq!(value(ev1, &e1, "involvedObject.uid").as_deref(), Some("u2"));
    assert_eq!(
        value(ev1, &e1, "reportingComponent").as_deref(),
        Some("ctl")
    );

    let node = find_by_kind("v1", "Node").expect("node");
    assert_eq!(
        value(
            node,
            &json!({"spec": {"unschedulable": true}}),
            "spec.unschedulable"
        )
        .as_deref(),
        Some("true")
    );
    assert_eq!(
        value(node, &json!({}), "spec.unschedulable").as_deref(),
        Some("false")
    );
    assert!(!is_selectable(node, "metadata.namespace"));

    let secret = find_by_kind("v1", "Secret").expect("secret");
    assert_eq!(
        value(secret, &json!({"type": "Opaque"}), "type").as_deref(),
        Some("Opaque")
    );
    let cm = find_by_kind("v1", "ConfigMap").expect("cm");
    assert_eq!(value(cm, &json!({"type": "x"}), "type"), None);
}

/// Regression: `kubectl get events --field-selector source=test-controller` found nothing for an
/// event whose reporting controller was test-controller and which had no source component.
#[test]
fn event_source_field_falls_back_to_the_reporting_controller() {
    let ev = find_by_kind("v1", "Event").expect("event");
    let reported = json!({"metadata": {"name": "e"}, "reportingComponent": "test-controller", "reason": "Tested",
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "apiVersion": "v1", "fieldPath": "spec.containers{a}", "resourceVersion": "7"}});
    assert_eq!(
        value(ev, &reported, "source").as_deref(),
        Some("test-controller")
    );
    assert_eq!(
        value(ev, &reported, "reportingComponent").as_deref(),
        Some("test-controller")
    );
    assert_eq!(value(ev, &reported, "reason").as_deref(), Some("Tested"));
    for (path, want) in [
        ("involvedObject.kind", "Pod"),
        ("involvedObject.name", "p"),
        ("involvedObject.namespace", "default"),
        ("involvedObject.apiVersion", "v1"),
        ("involvedObject.fieldPath", "spec.containers{a}"),
        ("involvedObject.resourceVersion", "7"),
    ] {
        assert_eq!(value(ev, &reported, path).as_deref(), Some(want), "{path}");
    }
    let both = json!({"source": {"component": "kubelet"}, "reportingComponent": "other"});
    assert_eq!(value(ev, &both, "source").as_deref(), Some("kubelet"));
    let ev1 = find_by_kind("events.k8s.io/v1", "Event").expect("event v1");
    let e1 = json!({"reportingController": "test-controller"});
    assert_eq!(
        value(ev1, &e1, "source").as_deref(),
        Some("test-controller")
    );
    let e1 = json!({"reportingController": "ctl", "deprecatedSource": {"component": "kubelet"}});
    assert_eq!(value(ev1, &e1, "source").as_deref(), Some("kubelet"));
}
