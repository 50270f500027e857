//! Events about pods, as kubelet writes them (core/v1 Events with `source.component: kubelet`),
//! with repeats folded into a count.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// An Event's `type`: `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Writes the events of one pod, folding repeats.
pub(crate) struct Recorder {
    client: kube::Client,
    node: String,
    /// (reason, message, fieldPath) -> (event name, count).
    seen: HashMap<(String, String, String), (String, i32)>,
}

impl Recorder {
    pub(crate) fn new(client: kube::Client, node: String) -> Recorder {
        Recorder {
            client,
            node,
            seen: HashMap::new(),
        }
    }

    /// Records an event about `pod` (and one of its containers, if `container` is given).
    pub(crate) async fn record(
        &mut self,
        pod: &Pod,
        container: Option<&str>,
        init: bool,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let field_path = container
            .map(|c| {
                if init {
                    format!("spec.initContainers{{{c}}}")
                } else {
                    format!("spec.containers{{{c}}}")
                }
            })
            .unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = Time(jiff::Timestamp::now());
        let key = (reason.to_string(), message.to_string(), field_path.clone());
        if let Some((name, count)) = self.seen.get_mut(&key) {
            *count += 1;
            let patch = json!({"count": *count, "lastTimestamp": now});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "updating event {name} failed; creating a new one")
                }
            }
        }
        let name = format!(
            "{pod_name}.{:x}",
            jiff::Timestamp::now().as_nanosecond() as u128 ^ u128::from(rand::random::<u16>())
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod_name),
                namespace: Some(ns),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                field_path: container.map(|_| field_path),
            },
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(type_.as_str().to_string()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.node.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                self.seen.insert(key, (name, 1));
            }
            Err(e) => tracing::warn!(error = %e, reason, "recording an event failed"),
        }
    }
}
