//! Column definitions and row cells per kind, following kubectl's internal-version printers.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::time::{human_duration, parse, seconds_between, since};
use super::{AGE_DESC, Col, NAME_DESC};
use crate::Kind;

const NONE: &str = "<none>";

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}
fn i(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}
fn arr<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}
fn or_none(v: &str) -> String {
    if v.is_empty() { NONE.into() } else { v.into() }
}
fn age(obj: &Value, now: jiff::Timestamp) -> Value {
    json!(since(
        obj.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
        now
    ))
}
fn name(obj: &Value) -> Value {
    json!(s(obj, "/metadata/name"))
}

const fn name_col() -> Col {
    Col("Name", "string", "name", NAME_DESC, 0)
}
const fn age_col() -> Col {
    Col("Age", "string", "", AGE_DESC, 0)
}
const fn c(n: &'static str, desc: &'static str) -> Col {
    Col(n, "string", "", desc, 0)
}
const fn ci(n: &'static str, desc: &'static str) -> Col {
    Col(n, "integer", "", desc, 0)
}
const fn wide(n: &'static str, desc: &'static str) -> Col {
    Col(n, "string", "", desc, 1)
}

const CONTAINERS: Col = wide("Containers", "Names of each container in the template.");
const IMAGES: Col = wide(
    "Images",
    "Images referenced by each container in the template.",
);
const SELECTOR: Col = wide(
    "Selector",
    "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
);

pub(super) fn columns(kind: &Kind) -> Vec<Col> {
    match (kind.group, kind.kind) {
        ("", "Pod") => vec![
            name_col(),
            c(
                "Ready",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            c(
                "Status",
                "The aggregate status of the containers in this pod.",
            ),
            c(
                "Restarts",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age_col(),
            wide(
                "IP",
                "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            wide(
                "Node",
                "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName.",
            ),
            wide(
                "Nominated Node",
                "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
            ),
            wide(
                "Readiness Gates",
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        ("apps", "Deployment") => vec![
            name_col(),
            c("Ready", "Number of the pod with ready state"),
            ci(
                "Up-to-date",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            ci(
                "Available",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            age_col(),
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "ReplicaSet") => vec![
            name_col(),
            ci("Desired", "Replicas is the number of desired replicas."),
            ci(
                "Current",
                "Replicas is the most recently observed number of replicas.",
            ),
            ci(
                "Ready",
                "The number of ready replicas for this replica set.",
            ),
            age_col(),
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "DaemonSet") => vec![
            name_col(),
            ci(
                "Desired",
                "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
            ),
            ci(
                "Current",
                "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
            ),
            ci(
                "Ready",
                "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
            ),
            ci(
                "Up-to-date",
                "The total number of nodes that are running updated daemon pod",
            ),
            ci(
                "Available",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
            ),
            c(
                "Node Selector",
                "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node.",
            ),
            age_col(),
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "StatefulSet") => vec![
            name_col(),
            c("Ready", "Number of the pod with ready state"),
            age_col(),
            CONTAINERS,
            IMAGES,
        ],
        ("apps", "ControllerRevision") => vec![
            name_col(),
            c("Controller", "Controller of the object"),
            ci(
                "Revision",
                "Revision indicates the revision of the state represented by Data.",
            ),
            age_col(),
        ],
        ("batch", "Job") => vec![
            name_col(),
            c("Status", "Status of the job."),
            c(
                "Completions",
                "The desired number of successfully finished pods the job should be run with.",
            ),
            c("Duration", "Time required to complete the job."),
            age_col(),
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "CronJob") => vec![
            name_col(),
            c(
                "Schedule",
                "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
            ),
            c(
                "Timezone",
                "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
            ),
            Col(
                "Suspend",
                "boolean",
                "",
                "This flag tells the controller to suspend subsequent executions.",
                0,
            ),
            ci("Active", "A list of pointers to currently running jobs."),
            c(
                "Last Schedule",
                "Information when was the last time the job was successfully scheduled.",
            ),
            age_col(),
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("", "Service") => vec![
            name_col(),
            c("Type", "type determines how the Service is exposed."),
            c(
                "Cluster-IP",
                "clusterIP is the IP address of the service and is usually assigned randomly.",
            ),
            c(
                "External-IP",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            c(
                "Port(s)",
                "The list of ports that are exposed by this service.",
            ),
            age_col(),
            wide(
                "Selector",
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        ("", "Node") => vec![
            name_col(),
            c("Status", "The status of the node"),
            c("Roles", "The roles of the node"),
            age_col(),
            c("Version", "Kubelet Version reported by the node."),
            wide(
                "Internal-IP",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            wide(
                "External-IP",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            wide(
                "OS-Image",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            wide(
                "Kernel-Version",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            wide(
                "Container-Runtime",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        ("", "Namespace") => vec![
            name_col(),
            c("Status", "The status of the namespace"),
            age_col(),
        ],
        ("", "ConfigMap") => vec![
            name_col(),
            ci("Data", "Data contains the configuration data."),
            age_col(),
        ],
        ("", "Secret") => vec![
            name_col(),
            c("Type", "The type of the secret"),
            ci("Data", "The number of entries in the secret"),
            age_col(),
        ],
        ("", "ServiceAccount") => vec![
            name_col(),
            ci(
                "Secrets",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            age_col(),
        ],
        ("", "Event") | ("events.k8s.io", "Event") => vec![
            c("Last Seen", "Time when this Event was last observed."),
            c(
                "Type",
                "Type of this event (Normal, Warning), new types could be added in the future.",
            ),
            c(
                "Reason",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            c("Object", "The object that this event is about."),
            wide("Subobject", "The subobject that this event is about."),
            wide(
                "Source",
                "The component reporting this event. Should be a short machine understandable string.",
            ),
            c(
                "Message",
                "A human-readable description of the status of this operation.",
            ),
            wide(
                "First Seen",
                "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            ),
            Col(
                "Count",
                "integer",
                "",
                "The number of times this event has occurred.",
                1,
            ),
            Col("Name", "string", "name", NAME_DESC, 1),
        ],
        ("", "Endpoints") => vec![
            name_col(),
            c("Endpoints", "Endpoints of the service"),
            age_col(),
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            name_col(),
            c("AddressType", "The IP protocol for this slice"),
            c("Ports", "The ports this slice exposes"),
            c("Endpoints", "The endpoints in this slice"),
            age_col(),
        ],
        ("", "PersistentVolumeClaim") => vec![
            name_col(),
            c("Status", "Status of the persistent volume claim"),
            c(
                "Volume",
                "VolumeName is the binding reference to the PersistentVolume backing this claim.",
            ),
            c(
                "Capacity",
                "capacity represents the actual resources of the underlying volume.",
            ),
            c(
                "Access Modes",
                "accessModes contains the actual access modes the volume backing the PVC has.",
            ),
            c(
                "StorageClass",
                "storageClassName is the name of the StorageClass required by the claim.",
            ),
            c(
                "VolumeAttributesClass",
                "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.",
            ),
            age_col(),
            wide(
                "VolumeMode",
                "volumeMode defines what type of volume is required by the claim.",
            ),
        ],
        ("", "PersistentVolume") => vec![
            name_col(),
            c(
                "Capacity",
                "capacity is the description of the persistent volume's resources and capacity.",
            ),
            c(
                "Access Modes",
                "accessModes contains all ways the volume can be mounted.",
            ),
            c(
                "Reclaim Policy",
                "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
            ),
            c(
                "Status",
                "phase indicates if a volume is available, bound to a claim, or released by a claim.",
            ),
            c(
                "Claim",
                "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
            ),
            c(
                "StorageClass",
                "storageClassName is the name of StorageClass to which this persistent volume belongs.",
            ),
            c(
                "VolumeAttributesClass",
                "Name of VolumeAttributesClass to which this persistent volume belongs.",
            ),
            c(
                "Reason",
                "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
            ),
            age_col(),
            wide(
                "VolumeMode",
                "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
            ),
        ],
        ("coordination.k8s.io", "Lease") => vec![
            name_col(),
            c(
                "Holder",
                "holderIdentity contains the identity of the holder of a current lease.",
            ),
            age_col(),
        ],
        ("networking.k8s.io", "Ingress") => vec![
            name_col(),
            c(
                "Class",
                "ingressClassName is the name of an IngressClass cluster resource.",
            ),
            c(
                "Hosts",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            c(
                "Address",
                "Address is a list containing ingress points for the load-balancer",
            ),
            c("Ports", "Ports of TLS configurations that open"),
            age_col(),
        ],
        ("networking.k8s.io", "IngressClass") => vec![
            name_col(),
            c(
                "Controller",
                "Controller that is responsible for handling this class",
            ),
            c(
                "Parameters",
                "A reference to a resource with additional parameters",
            ),
            age_col(),
        ],
        ("networking.k8s.io", "NetworkPolicy") => vec![
            name_col(),
            c(
                "Pod-Selector",
                "Selects the pods to which this NetworkPolicy object applies.",
            ),
            age_col(),
        ],
        ("autoscaling", _) => vec![
            name_col(),
            c("Reference", "Reference to target resource"),
            c("Targets", "Current and desired metric values"),
            c(
                "MinPods",
                "Lower limit for the number of pods that can be set by the autoscaler, default 1.",
            ),
            ci(
                "MaxPods",
                "Upper limit for the number of pods that can be set by the autoscaler; cannot be smaller than MinReplicas.",
            ),
            ci(
                "Replicas",
                "Current number of replicas of pods managed by this autoscaler.",
            ),
            age_col(),
        ],
        ("policy", "PodDisruptionBudget") => vec![
            name_col(),
            c(
                "Min Available",
                "The minimum number of pods that must be available simultaneously.",
            ),
            c(
                "Max Unavailable",
                "The maximum number of pods that may be unavailable simultaneously.",
            ),
            ci(
                "Allowed Disruptions",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            age_col(),
        ],
        ("node.k8s.io", "RuntimeClass") => vec![
            name_col(),
            c(
                "Handler",
                "Handler is the name of the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
            ),
            age_col(),
        ],
        ("", "ResourceQuota") => vec![
            name_col(),
            age_col(),
            c(
                "Request",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            c(
                "Limit",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ],
        ("rbac.authorization.k8s.io", "RoleBinding")
        | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => vec![
            name_col(),
            c("Role", "RoleRef references the role being granted."),
            age_col(),
            wide("Users", "Users in the binding."),
            wide("Groups", "Groups in the binding."),
            wide("ServiceAccounts", "ServiceAccounts in the binding."),
        ],
        ("rbac.authorization.k8s.io", "Role") | ("rbac.authorization.k8s.io", "ClusterRole") => {
            vec![name_col(), Col("Created At", "date", "", AGE_DESC, 0)]
        }
        _ => vec![name_col(), age_col()],
    }
}

pub(super) fn row_conditions(kind: &Kind, obj: &Value) -> Option<Value> {
    if kind.kind == "Pod" && kind.group.is_empty() {
        let phase = s(obj, "/status/phase");
        if phase == "Succeeded" || phase == "Failed" {
            return Some(
                json!([{"type": "Completed", "status": "True", "reason": phase, "message": "The pod has completed successfully."}]),
            );
        }
    }
    None
}

pub(super) fn cells(kind: &Kind, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    match (kind.group, kind.kind) {
        ("", "Pod") => pod(obj, now),
        ("apps", "Deployment") => {
            let mut v = vec![
                name(obj),
                json!(format!(
                    "{}/{}",
                    i(obj, "/status/readyReplicas"),
                    i(obj, "/spec/replicas")
                )),
                json!(i(obj, "/status/updatedReplicas")),
                json!(i(obj, "/status/availableReplicas")),
                age(obj, now),
            ];
            v.extend(template_cols(obj, "/spec/template/spec", true));
            v
        }
        ("apps", "ReplicaSet") => {
            let mut v = vec![
                name(obj),
                json!(i(obj, "/spec/replicas")),
                json!(i(obj, "/status/replicas")),
                json!(i(obj, "/status/readyReplicas")),
                age(obj, now),
            ];
            v.extend(template_cols(obj, "/spec/template/spec", true));
            v
        }
        ("apps", "DaemonSet") => {
            let mut v = vec![
                name(obj),
                json!(i(obj, "/status/desiredNumberScheduled")),
                json!(i(obj, "/status/currentNumberScheduled")),
                json!(i(obj, "/status/numberReady")),
                json!(i(obj, "/status/updatedNumberScheduled")),
                json!(i(obj, "/status/numberAvailable")),
                json!(set_selector(
                    obj.pointer("/spec/template/spec/nodeSelector")
                )),
                age(obj, now),
            ];
            v.extend(template_cols(obj, "/spec/template/spec", true));
            v
        }
        ("apps", "StatefulSet") => {
            let mut v = vec![
                name(obj),
                json!(format!(
                    "{}/{}",
                    i(obj, "/status/readyReplicas"),
                    i(obj, "/spec/replicas")
                )),
                age(obj, now),
            ];
            v.extend(template_cols(obj, "/spec/template/spec", false));
            v
        }
        ("apps", "ControllerRevision") => {
            let owner = arr(obj, "/metadata/ownerReferences")
                .iter()
                .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
                .map(|o| {
                    let gv = s(o, "/apiVersion");
                    let group = gv.split_once('/').map(|(g, _)| g).unwrap_or("");
                    let kind = s(o, "/kind").to_ascii_lowercase();
                    let k = if group.is_empty() {
                        kind
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{k}/{}", s(o, "/name"))
                })
                .unwrap_or_else(|| NONE.into());
            vec![
                name(obj),
                json!(owner),
                json!(i(obj, "/revision")),
                age(obj, now),
            ]
        }
        ("batch", "Job") => job(obj, now),
        ("batch", "CronJob") => {
            let last = obj
                .pointer("/status/lastScheduleTime")
                .and_then(Value::as_str)
                .map(|t| since(Some(t), now))
                .unwrap_or_else(|| NONE.into());
            let tz = s(obj, "/spec/timeZone");
            let mut v = vec![
                name(obj),
                json!(s(obj, "/spec/schedule")),
                json!(or_none(tz)),
                json!(
                    obj.pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                ),
                json!(arr(obj, "/status/active").len()),
                json!(last),
                age(obj, now),
            ];
            v.extend(template_cols(
                obj,
                "/spec/jobTemplate/spec/template/spec",
                false,
            ));
            v.push(json!(label_selector(
                obj.pointer("/spec/jobTemplate/spec/selector")
            )));
            v
        }
        ("", "Service") => service(obj, now),
        ("", "Node") => node(obj, now),
        ("", "Namespace") => vec![name(obj), json!(s(obj, "/status/phase")), age(obj, now)],
        ("", "ConfigMap") => {
            let n = count_keys(obj, "/data") + count_keys(obj, "/binaryData");
            vec![name(obj), json!(n), age(obj, now)]
        }
        ("", "Secret") => {
            let n = count_keys(obj, "/data") + count_keys(obj, "/stringData");
            vec![name(obj), json!(s(obj, "/type")), json!(n), age(obj, now)]
        }
        ("", "ServiceAccount") => vec![name(obj), json!(arr(obj, "/secrets").len()), age(obj, now)],
        ("", "Event") => event(obj, now, false),
        ("events.k8s.io", "Event") => event(obj, now, true),
        ("", "Endpoints") => vec![name(obj), json!(endpoints(obj)), age(obj, now)],
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports: Vec<String> = arr(obj, "/ports")
                .iter()
                .map(|p| {
                    p.get("port")
                        .and_then(Value::as_i64)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "<unset>".into())
                })
                .collect();
            let ports = if ports.is_empty() {
                "<unset>".to_string()
            } else {
                ports.join(",")
            };
            let mut addrs = Vec::new();
            for e in arr(obj, "/endpoints") {
                for a in arr(e, "/addresses") {
                    addrs.push(a.as_str().unwrap_or_default().to_string());
                }
            }
            vec![
                name(obj),
                json!(s(obj, "/addressType")),
                json!(ports),
                json!(truncate_list(&addrs, 3, "<unset>")),
                age(obj, now),
            ]
        }
        ("", "PersistentVolumeClaim") => {
            let mut phase = s(obj, "/status/phase").to_string();
            if obj
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
            {
                phase = "Terminating".into();
            }
            let bound = !s(obj, "/spec/volumeName").is_empty();
            let (cap, modes) = if bound {
                (
                    s(obj, "/status/capacity/storage").to_string(),
                    access_modes(arr(obj, "/status/accessModes")),
                )
            } else {
                (String::new(), String::new())
            };
            vec![
                name(obj),
                json!(phase),
                json!(s(obj, "/spec/volumeName")),
                json!(cap),
                json!(modes),
                json!(storage_class(obj)),
                json!(unset(s(obj, "/spec/volumeAttributesClassName"))),
                age(obj, now),
                json!(s(obj, "/spec/volumeMode")),
            ]
        }
        ("", "PersistentVolume") => {
            let claim = obj
                .pointer("/spec/claimRef")
                .filter(|c| c.is_object())
                .map(|c| format!("{}/{}", s(c, "/namespace"), s(c, "/name")))
                .unwrap_or_default();
            let mut phase = s(obj, "/status/phase").to_string();
            if obj
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
            {
                phase = "Terminating".into();
            }
            vec![
                name(obj),
                json!(s(obj, "/spec/capacity/storage")),
                json!(access_modes(arr(obj, "/spec/accessModes"))),
                json!(s(obj, "/spec/persistentVolumeReclaimPolicy")),
                json!(phase),
                json!(claim),
                json!(storage_class(obj)),
                json!(unset(s(obj, "/spec/volumeAttributesClassName"))),
                json!(s(obj, "/status/reason")),
                age(obj, now),
                json!(s(obj, "/spec/volumeMode")),
            ]
        }
        ("coordination.k8s.io", "Lease") => vec![
            name(obj),
            json!(s(obj, "/spec/holderIdentity")),
            age(obj, now),
        ],
        ("networking.k8s.io", "Ingress") => ingress(obj, now),
        ("networking.k8s.io", "IngressClass") => {
            let params = obj
                .pointer("/spec/parameters")
                .filter(|p| p.is_object())
                .map(|p| {
                    let g = s(p, "/apiGroup");
                    let k = s(p, "/kind");
                    let kk = if g.is_empty() {
                        k.to_string()
                    } else {
                        format!("{k}.{g}")
                    };
                    format!("{kk}/{}", s(p, "/name"))
                })
                .unwrap_or_else(|| NONE.into());
            vec![
                name(obj),
                json!(s(obj, "/spec/controller")),
                json!(params),
                age(obj, now),
            ]
        }
        ("networking.k8s.io", "NetworkPolicy") => vec![
            name(obj),
            json!(label_selector(obj.pointer("/spec/podSelector"))),
            age(obj, now),
        ],
        ("autoscaling", _) => hpa(kind, obj, now),
        ("policy", "PodDisruptionBudget") => {
            let show = |p: &str| match obj.pointer(p) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => "N/A".to_string(),
            };
            vec![
                name(obj),
                json!(show("/spec/minAvailable")),
                json!(show("/spec/maxUnavailable")),
                json!(i(obj, "/status/disruptionsAllowed")),
                age(obj, now),
            ]
        }
        ("node.k8s.io", "RuntimeClass") => {
            vec![name(obj), json!(s(obj, "/handler")), age(obj, now)]
        }
        ("", "ResourceQuota") => {
            let mut req = Vec::new();
            let mut lim = Vec::new();
            if let Some(hard) = obj.pointer("/status/hard").and_then(Value::as_object) {
                let mut keys: Vec<&String> = hard.keys().collect();
                keys.sort();
                for k in keys {
                    let used = obj
                        .pointer(&format!(
                            "/status/used/{}",
                            k.replace('~', "~0").replace('/', "~1")
                        ))
                        .and_then(Value::as_str)
                        .unwrap_or("0");
                    let entry = format!("{k}: {used}/{}", hard[k].as_str().unwrap_or_default());
                    if k.starts_with("limits.") {
                        lim.push(entry);
                    } else {
                        req.push(entry);
                    }
                }
            }
            vec![
                name(obj),
                age(obj, now),
                json!(req.join(", ")),
                json!(lim.join(", ")),
            ]
        }
        ("rbac.authorization.k8s.io", "RoleBinding")
        | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            let mut users = Vec::new();
            let mut groups = Vec::new();
            let mut sas = Vec::new();
            for sub in arr(obj, "/subjects") {
                match s(sub, "/kind") {
                    "User" => users.push(s(sub, "/name").to_string()),
                    "Group" => groups.push(s(sub, "/name").to_string()),
                    "ServiceAccount" => {
                        sas.push(format!("{}/{}", s(sub, "/namespace"), s(sub, "/name")))
                    }
                    _ => {}
                }
            }
            vec![
                name(obj),
                json!(format!(
                    "{}/{}",
                    s(obj, "/roleRef/kind"),
                    s(obj, "/roleRef/name")
                )),
                age(obj, now),
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        ("rbac.authorization.k8s.io", _) => {
            vec![name(obj), json!(s(obj, "/metadata/creationTimestamp"))]
        }
        _ => vec![name(obj), age(obj, now)],
    }
}

fn unset(v: &str) -> String {
    if v.is_empty() {
        "<unset>".into()
    } else {
        v.into()
    }
}

fn storage_class(obj: &Value) -> String {
    let sc = s(obj, "/spec/storageClassName");
    if !sc.is_empty() {
        return sc.into();
    }
    s(
        obj,
        "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
    )
    .to_string()
}

fn access_modes(modes: &[Value]) -> String {
    let mut out = Vec::new();
    for (m, short) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if modes.iter().any(|v| v.as_str() == Some(m)) {
            out.push(short);
        }
    }
    out.join(",")
}

fn count_keys(obj: &Value, ptr: &str) -> usize {
    obj.pointer(ptr)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn truncate_list(items: &[String], max: usize, empty: &str) -> String {
    if items.is_empty() {
        return empty.into();
    }
    let mut out = items
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if items.len() > max {
        out.push_str(&format!(" + {} more...", items.len() - max));
    }
    out
}

/// Containers, Images (and Selector) cells from a pod template.
fn template_cols(obj: &Value, spec_ptr: &str, with_selector: bool) -> Vec<Value> {
    let containers = arr(obj, &format!("{spec_ptr}/containers"));
    let names: Vec<&str> = containers.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, "/image")).collect();
    let mut v = vec![json!(names.join(",")), json!(images.join(","))];
    if with_selector {
        v.push(json!(label_selector(obj.pointer("/spec/selector"))));
    }
    v
}

/// A label selector formatted like `metav1.FormatLabelSelector`.
pub(crate) fn label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return NONE.into();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for e in arr(sel, "/matchExpressions") {
        let key = s(e, "/key").to_string();
        let mut vals: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        vals.sort();
        vals.dedup();
        let r = match s(e, "/operator") {
            "In" => format!("{key} in ({})", vals.join(",")),
            "NotIn" => format!("{key} notin ({})", vals.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".into(),
        };
        reqs.push((key, r));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    let out: Vec<String> = reqs.into_iter().map(|(_, r)| r).collect();
    if out.is_empty() {
        NONE.into()
    } else {
        out.join(",")
    }
}

/// A plain label map formatted like `labels.SelectorFromSet(...).String()`.
fn set_selector(map: Option<&Value>) -> String {
    let Some(m) = map.and_then(Value::as_object) else {
        return NONE.into();
    };
    let mut items: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    items.sort();
    if items.is_empty() {
        NONE.into()
    } else {
        items.join(",")
    }
}

fn terminated_reason(t: &Value, prefix: &str) -> String {
    let reason = s(t, "/reason");
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = i(t, "/signal");
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", i(t, "/exitCode"))
    }
}

fn pod(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let spec_init = arr(obj, "/spec/initContainers");
    let restartable = |name: &str| {
        spec_init
            .iter()
            .any(|c| s(c, "/name") == name && s(c, "/restartPolicy") == "Always")
    };
    let mut restarts = 0;
    let mut restartable_restarts = 0;
    let total = arr(obj, "/spec/containers").len()
        + spec_init
            .iter()
            .filter(|c| s(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0;
    let mut last_restart: Option<jiff::Timestamp> = None;
    let mut last_restartable_restart: Option<jiff::Timestamp> = None;
    let later = |a: Option<jiff::Timestamp>, b: Option<jiff::Timestamp>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    let phase = s(obj, "/status/phase");
    let mut reason = phase.to_string();
    if !s(obj, "/status/reason").is_empty() {
        reason = s(obj, "/status/reason").to_string();
    }
    for cond in arr(obj, "/status/conditions") {
        if s(cond, "/type") == "PodScheduled" && s(cond, "/reason") == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }

    let mut initializing = false;
    let init_statuses = arr(obj, "/status/initContainerStatuses");
    for (idx, cs) in init_statuses.iter().enumerate() {
        let cname = s(cs, "/name");
        restarts += i(cs, "/restartCount");
        let term_at = cs
            .pointer("/lastState/terminated/finishedAt")
            .and_then(Value::as_str)
            .and_then(parse);
        last_restart = later(last_restart, term_at);
        if restartable(cname) {
            restartable_restarts += i(cs, "/restartCount");
            last_restartable_restart = later(last_restartable_restart, term_at);
        }
        let terminated = cs.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting_reason = s(cs, "/state/waiting/reason");
        if terminated.is_some_and(|t| i(t, "/exitCode") == 0) {
            continue;
        }
        if restartable(cname) && cs.get("started").and_then(Value::as_bool) == Some(true) {
            if cs.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = terminated_reason(t, "Init:");
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{idx}/{}", spec_init.len());
        }
        initializing = true;
        break;
    }

    let initialized_true = arr(obj, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "Initialized" && s(c, "/status") == "True");
    if !initializing || initialized_true {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for cs in arr(obj, "/status/containerStatuses").iter().rev() {
            restarts += i(cs, "/restartCount");
            let term_at = cs
                .pointer("/lastState/terminated/finishedAt")
                .and_then(Value::as_str)
                .and_then(parse);
            last_restart = later(last_restart, term_at);
            let waiting = s(cs, "/state/waiting/reason");
            let terminated = cs.pointer("/state/terminated").filter(|t| t.is_object());
            let running = cs.pointer("/state/running").is_some_and(Value::is_object);
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if cs.get("ready").and_then(Value::as_bool) == Some(true) && running {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = arr(obj, "/status/conditions")
                .iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if pod_ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && s(obj, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration(seconds_between(t, now))
        ),
        _ => restarts.to_string(),
    };

    let ip = or_none(s(obj, "/status/podIP"));
    let node = or_none(s(obj, "/spec/nodeName"));
    let nominated = or_none(s(obj, "/status/nominatedNodeName"));
    let gates = arr(obj, "/spec/readinessGates");
    let gates_str = if gates.is_empty() {
        NONE.to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                let t = s(g, "/conditionType");
                arr(obj, "/status/conditions")
                    .iter()
                    .any(|c| s(c, "/type") == t && s(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        name(obj),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        age(obj, now),
        json!(ip),
        json!(node),
        json!(nominated),
        json!(gates_str),
    ]
}

fn has_condition(obj: &Value, ty: &str) -> bool {
    arr(obj, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == ty && s(c, "/status") == "True")
}

fn job(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let succeeded = i(obj, "/status/succeeded");
    let completions = obj.pointer("/spec/completions").and_then(Value::as_i64);
    let parallelism = obj.pointer("/spec/parallelism").and_then(Value::as_i64);
    let comp = match (completions, parallelism) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    };
    let start = obj
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(parse);
    let end = obj
        .pointer("/status/completionTime")
        .and_then(Value::as_str)
        .and_then(parse);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(seconds_between(s, now)),
        (Some(s), Some(e)) => human_duration(seconds_between(s, e)),
    };
    let status = if has_condition(obj, "Complete") {
        "Complete"
    } else if has_condition(obj, "Failed") {
        "Failed"
    } else if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating"
    } else if has_condition(obj, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if has_condition(obj, "Suspended") {
        "Suspended"
    } else if has_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let mut v = vec![
        name(obj),
        json!(status),
        json!(comp),
        json!(duration),
        age(obj, now),
    ];
    v.extend(template_cols(obj, "/spec/template/spec", true));
    v
}

fn service(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let ty = s(obj, "/spec/type");
    let cluster_ip = arr(obj, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| s(obj, "/spec/clusterIP"));
    let cluster_ip = or_none(cluster_ip);
    let external: Vec<String> = arr(obj, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let external_ip = match ty {
        "ClusterIP" | "NodePort" | "" => {
            if external.is_empty() {
                NONE.to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| {
                    let ip = s(i, "/ip");
                    if ip.is_empty() {
                        s(i, "/hostname").to_string()
                    } else {
                        ip.to_string()
                    }
                })
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(obj, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(obj, "/spec/ports")
        .iter()
        .map(|p| {
            let port = i(p, "/port");
            let proto = s(p, "/protocol");
            let np = i(p, "/nodePort");
            if np > 0 {
                format!("{port}:{np}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        NONE.to_string()
    } else {
        ports.join(",")
    };
    vec![
        name(obj),
        json!(ty),
        json!(cluster_ip),
        json!(external_ip),
        json!(ports),
        age(obj, now),
        json!(set_selector(obj.pointer("/spec/selector"))),
    ]
}

fn node(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut status = Vec::new();
    let ready = arr(obj, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == "Ready");
    match ready.map(|c| s(c, "/status")) {
        Some("True") => status.push("Ready"),
        Some("False") => status.push("NotReady"),
        _ => status.push("Unknown"),
    }
    if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str().filter(|v| !v.is_empty())
            {
                roles.insert(v.to_string());
            }
        }
    }
    let roles = if roles.is_empty() {
        NONE.to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let addr = |ty: &str| {
        arr(obj, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == ty)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| NONE.into())
    };
    let info = |f: &str| {
        let v = s(obj, &format!("/status/nodeInfo/{f}"));
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        name(obj),
        json!(status.join(",")),
        json!(roles),
        age(obj, now),
        json!(s(obj, "/status/nodeInfo/kubeletVersion")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn event(obj: &Value, now: jiff::Timestamp, v1: bool) -> Vec<Value> {
    let ts = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (first_p, last_p, regarding, message, count_p) = if v1 {
        (
            "/deprecatedFirstTimestamp",
            "/deprecatedLastTimestamp",
            "regarding",
            "/note",
            "/deprecatedCount",
        )
    } else {
        (
            "/firstTimestamp",
            "/lastTimestamp",
            "involvedObject",
            "/message",
            "/count",
        )
    };
    let first = match ts(first_p) {
        Some(t) => since(Some(t), now),
        None => since(ts("/eventTime"), now),
    };
    let mut last = match ts(last_p) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = i(obj, count_p);
    if obj.get("series").is_some_and(Value::is_object) {
        last = since(ts("/series/lastObservedTime"), now);
        count = i(obj, "/series/count");
    } else if count == 0 {
        count = 1;
    }
    let inv = obj.get(regarding).unwrap_or(&Value::Null);
    let kind = s(inv, "/kind").to_ascii_lowercase();
    let target = if s(inv, "/name").is_empty() {
        kind
    } else {
        format!("{kind}/{}", s(inv, "/name"))
    };
    let src = if v1 {
        let c = s(obj, "/reportingController");
        let i = s(obj, "/reportingInstance");
        format_source(c, i)
    } else {
        let comp = s(obj, "/source/component");
        let host = s(obj, "/source/host");
        if comp.is_empty() && host.is_empty() {
            format_source(s(obj, "/reportingComponent"), s(obj, "/reportingInstance"))
        } else {
            format_source(comp, host)
        }
    };
    vec![
        json!(last),
        json!(s(obj, "/type")),
        json!(s(obj, "/reason")),
        json!(target),
        json!(s(inv, "/fieldPath")),
        json!(src),
        json!(s(obj, message).trim()),
        json!(first),
        json!(count),
        name(obj),
    ]
}

fn format_source(component: &str, host: &str) -> String {
    if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    }
}

fn endpoints(obj: &Value) -> String {
    let mut list = Vec::new();
    let mut more = 0;
    for subset in arr(obj, "/subsets") {
        let ports = arr(subset, "/ports");
        for addr in arr(subset, "/addresses") {
            let ip = s(addr, "/ip");
            if ports.is_empty() {
                if list.len() < 3 {
                    list.push(ip.to_string())
                } else {
                    more += 1
                }
            } else {
                for p in ports {
                    if list.len() < 3 {
                        list.push(format!("{ip}:{}", i(p, "/port")));
                    } else {
                        more += 1;
                    }
                }
            }
        }
    }
    if list.is_empty() {
        return NONE.into();
    }
    let mut out = list.join(",");
    if more > 0 {
        out.push_str(&format!(" + {more} more..."));
    }
    out
}

fn ingress(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let class = s(obj, "/spec/ingressClassName");
    let class = if class.is_empty() {
        NONE.to_string()
    } else {
        class.to_string()
    };
    let mut hosts: Vec<String> = arr(obj, "/spec/rules")
        .iter()
        .map(|r| s(r, "/host").to_string())
        .filter(|h| !h.is_empty())
        .collect();
    let hosts_str = if hosts.is_empty() {
        "*".to_string()
    } else {
        let extra = hosts.len().saturating_sub(4);
        hosts.truncate(4);
        let mut h = hosts.join(",");
        if extra > 0 {
            h.push_str(&format!(" + {extra} more..."));
        }
        h
    };
    let addrs: Vec<String> = arr(obj, "/status/loadBalancer/ingress")
        .iter()
        .map(|i| {
            let ip = s(i, "/ip");
            if ip.is_empty() {
                s(i, "/hostname").to_string()
            } else {
                ip.to_string()
            }
        })
        .collect();
    let ports = if arr(obj, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(obj),
        json!(class),
        json!(hosts_str),
        json!(addrs.join(",")),
        json!(ports),
        age(obj, now),
    ]
}

fn hpa(kind: &Kind, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        s(obj, "/spec/scaleTargetRef/kind"),
        s(obj, "/spec/scaleTargetRef/name")
    );
    let min = obj
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .map(|n| n.to_string())
        .unwrap_or_else(|| "<unset>".into());
    let targets = if kind.version == "v1" {
        let target = obj
            .pointer("/spec/targetCPUUtilizationPercentage")
            .and_then(Value::as_i64);
        let current = obj
            .pointer("/status/currentCPUUtilizationPercentage")
            .and_then(Value::as_i64);
        match target {
            None => "<none>".to_string(),
            Some(t) => format!(
                "cpu: {}/{t}%",
                current
                    .map(|c| format!("{c}%"))
                    .unwrap_or_else(|| "<unknown>".into())
            ),
        }
    } else {
        let metrics = arr(obj, "/spec/metrics");
        let current = arr(obj, "/status/currentMetrics");
        if metrics.is_empty() {
            "<none>".to_string()
        } else {
            let mut parts = Vec::new();
            for (idx, m) in metrics.iter().enumerate() {
                let cur = current.get(idx);
                parts.push(format_metric(m, cur));
            }
            let extra = parts.len().saturating_sub(2);
            parts.truncate(2);
            let mut out = parts.join(", ");
            if extra > 0 {
                out.push_str(&format!(" + {extra} more..."));
            }
            out
        }
    };
    vec![
        name(obj),
        json!(reference),
        json!(targets),
        json!(min),
        json!(i(obj, "/spec/maxReplicas")),
        json!(i(obj, "/status/currentReplicas")),
        age(obj, now),
    ]
}

fn format_metric(m: &Value, cur: Option<&Value>) -> String {
    let ty = s(m, "/type");
    match ty {
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let res = s(m, &format!("/{key}/name"));
            let target = m.pointer(&format!("/{key}/target")).unwrap_or(&Value::Null);
            let cur_v = cur.and_then(|c| c.pointer(&format!("/{key}/current")));
            if let Some(u) = target.get("averageUtilization").and_then(Value::as_i64) {
                let current = cur_v
                    .and_then(|c| c.get("averageUtilization"))
                    .and_then(Value::as_i64)
                    .map(|c| format!("{c}%"))
                    .unwrap_or_else(|| "<unknown>".into());
                format!("{res}: {current}/{u}%")
            } else {
                let t = s(target, "/averageValue");
                let current = cur_v
                    .and_then(|c| c.get("averageValue"))
                    .and_then(Value::as_str)
                    .unwrap_or("<unknown>");
                format!("{res}: {current}/{t}")
            }
        }
        _ => "<unknown>/<unknown>".to_string(),
    }
}
