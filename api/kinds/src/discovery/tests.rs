//! Tests for discovery documents.

use serde_json::json;

use super::*;

#[test]
fn api_versions_and_group_list_shapes() {
    assert_eq!(
        api_versions(),
        json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
    );
    let list = api_group_list();
    assert_eq!(list["kind"], "APIGroupList");
    assert_eq!(list["apiVersion"], "v1");
    let groups = list["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), GROUPS.len() + AGGREGATED_GROUPS.len());
    let autoscaling = groups
        .iter()
        .find(|g| g["name"] == "autoscaling")
        .expect("autoscaling");
    assert_eq!(
        *autoscaling,
        json!({
            "name": "autoscaling",
            "versions": [{"groupVersion": "autoscaling/v2", "version": "v2"}, {"groupVersion": "autoscaling/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "autoscaling/v2", "version": "v2"}
        })
    );
    assert_eq!(
        api_group("apps"),
        Some(json!({
            "kind": "APIGroup", "apiVersion": "v1", "name": "apps",
            "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}
        }))
    );
    assert_eq!(api_group("nope"), None);
}

#[test]
fn resource_lists_carry_subresources_and_metadata() {
    let apps = api_resource_list("apps", "v1").expect("apps/v1");
    assert_eq!(apps["groupVersion"], "apps/v1");
    let res = apps["resources"].as_array().expect("resources");
    let names: Vec<&str> = res.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        vec![
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status"
        ]
    );
    let deploy = &res[3];
    assert_eq!(
        *deploy,
        json!({
            "name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment",
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": ["deploy"], "categories": ["all"], "storageVersionHash": "8aSe+NMegvE="
        })
    );
    assert_eq!(
        res[4],
        json!({"name": "deployments/scale", "singularName": "", "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
    );
    let core = api_resource_list("", "v1").expect("v1");
    assert_eq!(core["groupVersion"], "v1");
    let core_res = core["resources"].as_array().expect("resources");
    let log = core_res
        .iter()
        .find(|r| r["name"] == "pods/log")
        .expect("pods/log");
    assert_eq!(
        *log,
        json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]})
    );
    let ns = core_res
        .iter()
        .find(|r| r["name"] == "namespaces")
        .expect("namespaces");
    assert_eq!(ns["namespaced"], false);
    assert!(ns.get("categories").is_none());
    assert!(api_resource_list("apps", "v2").is_none());
    assert!(api_resource_list("autoscaling", "v1").is_some());
}

#[test]
fn aggregated_discovery_shapes() {
    for version in ["v2", "v2beta1"] {
        let core = aggregated(true, version);
        assert_eq!(core["kind"], "APIGroupDiscoveryList");
        assert_eq!(core["apiVersion"], format!("apidiscovery.k8s.io/{version}"));
        let items = core["items"].as_array().expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"], json!({"creationTimestamp": null}));
        let v1 = &items[0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let pods = v1["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["resource"] == "pods")
            .expect("pods");
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "kind": "Pod", "version": ""})
        );
        let eviction = pods["subresources"]
            .as_array()
            .expect("subs")
            .iter()
            .find(|s| s["subresource"] == "eviction")
            .expect("eviction");
        assert_eq!(
            *eviction,
            json!({"subresource": "eviction", "responseKind": {"group": "policy", "kind": "Eviction", "version": "v1"}, "verbs": ["create"]})
        );
    }
    let apis = aggregated(false, "v2");
    let items = apis["items"].as_array().expect("items");
    assert_eq!(items.len(), GROUPS.len() + AGGREGATED_GROUPS.len());
    assert_eq!(items[0]["metadata"]["name"], "apps");
    let deploy = &items[0]["versions"][0]["resources"]
        .as_array()
        .expect("res")
        .iter()
        .find(|r| r["resource"] == "deployments")
        .cloned()
        .expect("deployments");
    assert_eq!(
        deploy["subresources"],
        json!([
            {"subresource": "scale", "responseKind": {"group": "autoscaling", "kind": "Scale", "version": "v1"}, "verbs": ["get", "patch", "update"]},
            {"subresource": "status", "responseKind": {"group": "", "kind": "Deployment", "version": ""}, "verbs": ["get", "patch", "update"]}
        ])
    );
    let autoscaling = items
        .iter()
        .find(|i| i["metadata"]["name"] == "autoscaling")
        .expect("autoscaling");
    assert_eq!(autoscaling["versions"].as_array().map(Vec::len), Some(2));
}

#[test]
fn versions_sort_by_kubernetes_priority() {
    let mut vs = vec![
        "foo",
        "v1alpha1",
        "v2",
        "v1beta1",
        "v1",
        "v10",
        "v1beta2",
        "abc",
        "v12alpha1",
    ];
    vs.sort_by(|a, b| compare_versions(a, b));
    assert_eq!(
        vs,
        [
            "v10",
            "v2",
            "v1",
            "v1beta2",
            "v1beta1",
            "v12alpha1",
            "v1alpha1",
            "abc",
            "foo"
        ]
    );
}

#[test]
fn custom_kinds_join_discovery_after_the_built_in_groups() {
    let crd = json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false},
                {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
            ]},
    });
    let custom: Vec<&'static Kind> = crate::crd::CustomKind::from_crd(&crd)
        .into_iter()
        .map(crate::crd::CustomKind::leak)
        .collect();
    let list = api_group_list_with(&custom);
    let groups = list["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), GROUPS.len() + AGGREGATED_GROUPS.len() + 1);
    let last = groups.last().expect("a group");
    assert_eq!(last["name"], "example.com");
    assert_eq!(last["preferredVersion"]["version"], "v1");
    assert_eq!(last["versions"][1]["version"], "v1beta1");
    assert!(api_group_with("example.com", &custom).is_some());
    assert!(api_group("example.com").is_none());
    let resources = api_resource_list_with("example.com", "v1", &custom).expect("served");
    let names: Vec<&str> = resources["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["widgets", "widgets/status"]);
    assert_eq!(resources["resources"][0]["shortNames"], json!(["wd"]));
    // Both versions hash the storage version.
    let v1beta1 = api_resource_list_with("example.com", "v1beta1", &custom).expect("served");
    assert_eq!(
        v1beta1["resources"][0]["storageVersionHash"],
        resources["resources"][0]["storageVersionHash"]
    );
    assert!(api_resource_list_with("example.com", "v2", &custom).is_none());
    let agg = aggregated_with(false, "v2", &custom);
    let item = agg["items"]
        .as_array()
        .and_then(|i| i.last())
        .expect("item");
    assert_eq!(item["metadata"]["name"], "example.com");
    assert_eq!(
        item["versions"][0]["resources"][0]["categories"],
        json!(["all"])
    );
}

#[test]
fn metrics_api_is_discovered_read_only_and_unstored() {
    let list = api_resource_list("metrics.k8s.io", "v1beta1").expect("served");
    assert_eq!(list["groupVersion"], "metrics.k8s.io/v1beta1");
    let resources = list["resources"].as_array().expect("resources");
    let names: Vec<&str> = resources
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["nodes", "pods"]);
    let pods = &resources[1];
    assert_eq!(pods["kind"], "PodMetrics");
    assert_eq!(pods["namespaced"], true);
    assert_eq!(pods["verbs"], json!(["get", "list"]));
    assert!(pods.get("storageVersionHash").is_none());
    assert_eq!(resources[0]["kind"], "NodeMetrics");
    assert_eq!(resources[0]["namespaced"], false);
    let agg = aggregated(false, "v2");
    let metrics = agg["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|g| g["metadata"]["name"] == "metrics.k8s.io")
        .expect("metrics.k8s.io in aggregated discovery");
    assert_eq!(metrics["versions"][0]["version"], "v1beta1");
    assert_eq!(
        metrics["versions"][0]["resources"][1]["responseKind"]["kind"],
        "PodMetrics"
    );
    assert_eq!(preferred_version("metrics.k8s.io"), Some("v1beta1"));
    // No OpenAPI document: the group is not among the stored group-versions.
    assert!(!group_version_paths().iter().any(|p| p.contains("metrics")));
    assert!(!crate::kinds().iter().any(|k| k.group == "metrics.k8s.io"));
}
