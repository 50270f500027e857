//! The wire types of resource usage: kubelet's `/stats/summary` (`stats/v1alpha1` `Summary`),
//! which every node serves, and `metrics.k8s.io/v1beta1` `PodMetrics`/`NodeMetrics`, which the
//! API server builds from the nodes' summaries for `kubectl top` and the HPA controller.
//!
//! Field names and optionality follow `k8s.io/kubelet/pkg/apis/stats/v1alpha1` and
//! `k8s.io/metrics/pkg/apis/metrics/v1beta1` so that tools written for kubelet and
//! metrics-server read them unchanged.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};

/// kubelet's `GET /stats/summary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub node: NodeStats,
    #[serde(default)]
    pub pods: Vec<PodStats>,
}

/// The node as a whole: every pod plus the node process itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

/// A pod's identity in a summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// One pod: the sum of its containers in `cpu`/`memory`, and each container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default)]
    pub containers: Vec<ContainerStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

/// One container of a pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

/// CPU at `time`: `usage_core_nano_seconds` is cumulative; `usage_nano_cores` is the rate over
/// the node's last sampling window (kubelet's cadvisor-derived figure).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

/// Memory at `time`; `working_set_bytes` is what `kubectl top` and eviction use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
}

/// `metrics.k8s.io/v1beta1` `PodMetrics` (namespaced, named after its pod).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetrics {
    pub metadata: ObjectMeta,
    pub timestamp: Time,
    /// A duration in Go's format, e.g. `"10.021s"`.
    pub window: String,
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

/// One container's usage in a `PodMetrics`: `cpu` and `memory` quantities.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerMetrics {
    pub name: String,
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// `metrics.k8s.io/v1beta1` `NodeMetrics` (cluster-scoped, named after its node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMetrics {
    pub metadata: ObjectMeta,
    pub timestamp: Time,
    pub window: String,
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubelet_summary_reads_back_in_its_own_field_names() {
        let text = r#"{"node":{"nodeName":"n1","cpu":{"time":"2026-12-06T00:00:00Z","usageNanoCores":1500000,"usageCoreNanoSeconds":9000000000},"memory":{"time":"2026-12-06T00:00:00Z","workingSetBytes":1048576}},
          "pods":[{"podRef":{"name":"p","namespace":"d","uid":"u"},"containers":[{"name":"c","cpu":{"time":"2026-12-06T00:00:00Z","usageNanoCores":5}}]}]}"#;
        let summary: Summary = serde_json::from_str(text).unwrap();
        assert_eq!(summary.node.node_name, "n1");
        assert_eq!(
            summary.node.cpu.as_ref().unwrap().usage_nano_cores,
            Some(1_500_000)
        );
        assert_eq!(summary.pods[0].pod_ref.uid, "u");
        assert_eq!(
            summary.pods[0].containers[0]
                .cpu
                .as_ref()
                .unwrap()
                .usage_nano_cores,
            Some(5)
        );
        let again = serde_json::to_value(&summary).unwrap();
        assert_eq!(again["node"]["memory"]["workingSetBytes"], 1_048_576);
        assert!(again["pods"][0]["containers"][0].get("memory").is_none());
    }
}
