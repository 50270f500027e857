//! Column definitions per kind, as kubectl's printers declare them.

use super::{AGE_DESC, Col, NAME_DESC};
use crate::Kind;

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
        ("", "ReplicationController") => vec![
            name_col(),
            ci(
                "Desired",
                "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller",
            ),
            ci(
                "Current",
                "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller",
            ),
            ci(
                "Ready",
                "The number of ready replicas for this replication controller.",
            ),
            age_col(),
            CONTAINERS,
            IMAGES,
            wide(
                "Selector",
                "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
            ),
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
        ("storage.k8s.io", "StorageClass") => vec![
            name_col(),
            c(
                "Provisioner",
                "provisioner indicates the type of the provisioner.",
            ),
            c(
                "ReclaimPolicy",
                "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.",
            ),
            c(
                "VolumeBindingMode",
                "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.",
            ),
            c(
                "AllowVolumeExpansion",
                "allowVolumeExpansion shows whether the storage class allow volume expand.",
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
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name_col(),
            ci(
                "Value",
                "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
            ),
            Col(
                "Global-Default",
                "boolean",
                "",
                "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.",
                0,
            ),
            age_col(),
            c(
                "PreemptionPolicy",
                "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.",
            ),
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
        ("", "PodTemplate") => vec![
            name_col(),
            c("Containers", "Names of each container in the template."),
            c(
                "Images",
                "Images referenced by each container in the template.",
            ),
            c("Pod Labels", "The labels for the pod template."),
        ],
        ("certificates.k8s.io", "CertificateSigningRequest") => vec![
            name_col(),
            age_col(),
            c(
                "SignerName",
                "signerName indicates the requested signer, and is a qualified name.\n\nList/watch requests for CertificateSigningRequests can filter on this field using a \"spec.signerName=NAME\" fieldSelector.\n\nWell-known Kubernetes signers are:\n 1. \"kubernetes.io/kube-apiserver-client\": issues client certificates that can be used to authenticate to kube-apiserver.\n  Requests for this signer are never auto-approved by kube-controller-manager, can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 2. \"kubernetes.io/kube-apiserver-client-kubelet\": issues client certificates that kubelets use to authenticate to kube-apiserver.\n  Requests for this signer can be auto-approved by the \"csrapproving\" controller in kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 3. \"kubernetes.io/kubelet-serving\" issues serving certificates that kubelets use to serve TLS endpoints, which kube-apiserver can connect to securely.\n  Requests for this signer are never auto-approved by kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n\nMore details are available at https://k8s.io/docs/reference/access-authn-authz/certificate-signing-requests/#kubernetes-signers\n\nCustom signerNames can also be specified. The signer defines:\n 1. Trust distribution: how trust (CA bundles) are distributed.\n 2. Permitted subjects: and behavior when a disallowed subject is requested.\n 3. Required, permitted, or forbidden x509 extensions in the request (including whether subjectAltNames are allowed, which types, restrictions on allowed values) and behavior when a disallowed extension is requested.\n 4. Required, permitted, or forbidden key usages / extended key usages.\n 5. Expiration/certificate lifetime: whether it is fixed by the signer, configurable by the admin.\n 6. Whether or not requests for CA certificates are allowed.",
            ),
            c("Requestor", "Name of requestor"),
            c(
                "RequestedDuration",
                "expirationSeconds is the requested duration of validity of the issued certificate. The certificate signer may issue a certificate with a different validity duration so a client must check the delta between the notBefore and and notAfter fields in the issued certificate to determine the actual duration.\n\nThe v1.22+ in-tree implementations of the well-known Kubernetes signers will honor this field as long as the requested duration is not greater than the maximum duration they will honor per the --cluster-signing-duration CLI flag to the Kubernetes controller manager.\n\nCertificate signers may not honor this field for various reasons:\n\n  1. Old signer that is unaware of the field (such as the in-tree\n     implementations prior to v1.22)\n  2. Signer whose configured maximum is shorter than the requested duration\n  3. Signer whose configured minimum is longer than the requested duration\n\nThe minimum valid value for expirationSeconds is 600, i.e. 10 minutes.",
            ),
            c(
                "Condition",
                "Condition indicates the current condition of the certificate signing request",
            ),
        ],
        // Kubernetes' default table convertor, which CustomResourceDefinitions use.
        ("apiextensions.k8s.io", "CustomResourceDefinition") => vec![
            name_col(),
            Col(
                "Created At",
                "date",
                "",
                "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                0,
            ),
        ],
        _ => vec![name_col(), age_col()],
    }
}
