//! The registry of resource kinds the API server serves, with the metadata Kubernetes reports (the version in skiff_meta::KUBERNETES_MINOR).

/// One resource kind in one group-version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// Version within the group, e.g. `"v1"`.
    pub version: &'static str,
    /// Kind name, e.g. `"Pod"`.
    pub kind: &'static str,
    /// Resource name used in URLs, e.g. `"pods"`.
    pub plural: &'static str,
    /// Singular resource name, e.g. `"pod"`.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts, e.g. `["po"]`.
    pub short_names: &'static [&'static str],
    /// Categories, e.g. `["all"]`.
    pub categories: &'static [&'static str],
    /// Subresource names, e.g. `["status", "scale"]`.
    pub subresources: &'static [&'static str],
    /// OpenAPI definition name, e.g. `"io.k8s.api.core.v1.Pod"`.
    pub openapi_type: &'static str,
    /// Verbs on the main resource.
    pub verbs: &'static [&'static str],
    /// For a kind served from a CustomResourceDefinition: what the CRD says of this version
    /// (`None` for every built-in kind).
    pub custom: Option<&'static crate::crd::CustomKind>,
}

/// What discovery reports for one subresource of a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubresourceInfo {
    /// Subresource name, e.g. `"scale"`.
    pub name: &'static str,
    /// Group of the object the subresource takes and returns (`""` for core).
    pub group: &'static str,
    /// Version of that object.
    pub version: &'static str,
    /// Kind of that object, e.g. `"Scale"`.
    pub kind: &'static str,
    /// Verbs the subresource supports.
    pub verbs: &'static [&'static str],
}

impl Kind {
    /// `"v1"` for core kinds, `"apps/v1"` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of these objects, e.g. `"PodList"`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether the kind has a status subresource (status is then ignored on main-resource writes).
    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }

    /// Whether objects of the kind are never stored: the review kinds, whose create answers the
    /// request (`create` is their only verb).
    pub fn is_review(&self) -> bool {
        self.verbs == CREATE
    }

    /// Whether the kind has a scale subresource.
    pub fn has_scale(&self) -> bool {
        self.subresources.contains(&"scale")
    }

    /// Key prefix under which objects are stored, e.g. `"/core/pods/"` or `"/apps/deployments/"`.
    /// Versions of one resource share one storage: autoscaling v1 and v2 HorizontalPodAutoscaler are
    /// stored as v2, core/v1 and events.k8s.io/v1 Event as core/v1 (see [`crate::convert`]).
    pub fn storage_prefix(&self) -> String {
        let group = match (self.group, self.kind) {
            ("events.k8s.io", "Event") => "core",
            ("", _) => "core",
            (group, _) => group,
        };
        format!("/{group}/{}/", self.plural)
    }

    /// The kind objects are stored as (the same for kinds with a single version). For a custom
    /// kind this is not a served kind (custom kinds are not in the built-in table): use
    /// [`Kind::storage_version`] instead.
    pub fn storage_kind(&self) -> &'static Kind {
        match (self.group, self.kind) {
            ("autoscaling", _) => {
                find("autoscaling", "v2", "horizontalpodautoscalers").unwrap_or(&KINDS[0])
            }
            ("events.k8s.io", _) => find("", "v1", "events").unwrap_or(&KINDS[0]),
            _ => find(self.group, self.version, self.plural).unwrap_or(&KINDS[0]),
        }
    }

    /// The version objects are stored in: the CRD's storage version for a custom kind.
    pub fn storage_version(&self) -> &str {
        match self.custom {
            Some(c) => &c.storage_version,
            None => self.storage_kind().version,
        }
    }

    /// Whether the kind is served from a CustomResourceDefinition.
    pub fn is_custom(&self) -> bool {
        self.custom.is_some()
    }

    /// The qualified kind used in error messages: `"Pod"`, `"Deployment.apps"`.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The qualified resource used in error messages: `"pods"`, `"deployments.apps"`.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Discovery information for each subresource, in the order of `subresources`.
    pub fn subresource_infos(&self) -> Vec<SubresourceInfo> {
        self.subresources
            .iter()
            .filter_map(|s| self.subresource(s))
            .collect()
    }

    /// Discovery information for one subresource.
    pub fn subresource(&self, name: &str) -> Option<SubresourceInfo> {
        if !self.subresources.contains(&name) {
            return None;
        }
        let own = |name: &'static str, verbs: &'static [&'static str]| SubresourceInfo {
            name,
            group: self.group,
            version: self.version,
            kind: self.kind,
            verbs,
        };
        let other = |name: &'static str,
                     group: &'static str,
                     version: &'static str,
                     kind: &'static str,
                     verbs: &'static [&'static str]| SubresourceInfo {
            name,
            group,
            version,
            kind,
            verbs,
        };
        Some(match name {
            "status" => own("status", GPU),
            "approval" => own("approval", GPU),
            "ephemeralcontainers" => own("ephemeralcontainers", GPU),
            "resize" => own("resize", GPU),
            "log" => own("log", &["get"]),
            "finalize" => own("finalize", &["update"]),
            "scale" => other("scale", "autoscaling", "v1", "Scale", GPU),
            "binding" => other("binding", "", "v1", "Binding", &["create"]),
            "eviction" => other("eviction", "policy", "v1", "Eviction", &["create"]),
            "attach" => other("attach", "", "v1", "PodAttachOptions", &["create", "get"]),
            "exec" => other("exec", "", "v1", "PodExecOptions", &["create", "get"]),
            "portforward" => other(
                "portforward",
                "",
                "v1",
                "PodPortForwardOptions",
                &["create", "get"],
            ),
            "proxy" => {
                let kind = match self.kind {
                    "Pod" => "PodProxyOptions",
                    "Node" => "NodeProxyOptions",
                    _ => "ServiceProxyOptions",
                };
                other("proxy", "", "v1", kind, PROXY)
            }
            "token" => other(
                "token",
                "authentication.k8s.io",
                "v1",
                "TokenRequest",
                &["create"],
            ),
            _ => return None,
        })
    }
}

/// Every kind served, core group first, then groups in discovery order.
pub fn kinds() -> &'static [Kind] {
    KINDS
}

/// The kinds served by the server but never stored: `metrics.k8s.io` `PodMetrics` and
/// `NodeMetrics`, which the API server builds from the nodes' summaries (the role of
/// metrics-server behind an APIService). They are in discovery and routed like any kind, but
/// have no OpenAPI schema, no typed decoder and no storage, so [`kinds`] leaves them out.
pub fn aggregated_kinds() -> &'static [Kind] {
    AGGREGATED
}

/// Whether the kind is one of [`aggregated_kinds`] (served from the nodes, never stored).
pub fn is_aggregated(kind: &Kind) -> bool {
    AGGREGATED.iter().any(|k| k == kind)
}

/// The kind served at `/{group}/{version}/{plural}`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .chain(AGGREGATED)
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// The kind named by an object's `apiVersion` and `kind`.
pub fn find_by_kind(api_version: &str, kind: &str) -> Option<&'static Kind> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    KINDS
        .iter()
        .chain(AGGREGATED)
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// The kind a kubectl-style name refers to in a group: plural, singular, short name or kind
/// (case-insensitive), preferring the group's preferred version.
pub fn find_by_plural(group: &str, name: &str) -> Option<&'static Kind> {
    let name = name.to_ascii_lowercase();
    let preferred = crate::discovery::preferred_version(group)?;
    let matches = |k: &&Kind| {
        k.group == group
            && (k.plural == name
                || k.singular == name
                || k.short_names.contains(&name.as_str())
                || k.kind.to_ascii_lowercase() == name)
    };
    KINDS
        .iter()
        .chain(AGGREGATED)
        .filter(matches)
        .find(|k| k.version == preferred)
        .or_else(|| KINDS.iter().chain(AGGREGATED).find(matches))
}

const ALL: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NO_COLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const GPU: &[&str] = &["get", "patch", "update"];
/// What metrics-server serves: read-only, no watch.
const GET_LIST: &[&str] = &["get", "list"];
/// Review kinds: created and answered, never stored.
const CREATE: &[&str] = &["create"];
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];
const CAT_ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const STATUS: &[&str] = &["status"];
const SCALE_STATUS: &[&str] = &["scale", "status"];

#[allow(clippy::too_many_arguments)]
const fn k(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [&'static str],
    openapi_type: &'static str,
    verbs: &'static [&'static str],
) -> Kind {
    Kind {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories,
        subresources,
        openapi_type,
        verbs,
        custom: None,
    }
}

#[rustfmt::skip]
static KINDS: &[Kind] = &[
    // core/v1
    k("", "v1", "ConfigMap", "configmaps", "configmap", true, &["cm"], NONE, NONE, "io.k8s.api.core.v1.ConfigMap", ALL),
    k("", "v1", "Endpoints", "endpoints", "endpoints", true, &["ep"], NONE, NONE, "io.k8s.api.core.v1.Endpoints", ALL),
    k("", "v1", "Event", "events", "event", true, &["ev"], NONE, NONE, "io.k8s.api.core.v1.Event", ALL),
    k("", "v1", "LimitRange", "limitranges", "limitrange", true, &["limits"], NONE, NONE, "io.k8s.api.core.v1.LimitRange", ALL),
    k("", "v1", "Namespace", "namespaces", "namespace", false, &["ns"], NONE, &["finalize", "status"], "io.k8s.api.core.v1.Namespace", NO_COLLECTION),
    k("", "v1", "Node", "nodes", "node", false, &["no"], NONE, &["proxy", "status"], "io.k8s.api.core.v1.Node", ALL),
    k("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, &["pvc"], NONE, STATUS, "io.k8s.api.core.v1.PersistentVolumeClaim", ALL),
    k("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, &["pv"], NONE, STATUS, "io.k8s.api.core.v1.PersistentVolume", ALL),
    k("", "v1", "PodTemplate", "podtemplates", "podtemplate", true, NONE, NONE, NONE, "io.k8s.api.core.v1.PodTemplate", ALL),
    k("", "v1", "Pod", "pods", "pod", true, &["po"], CAT_ALL, &["attach", "binding", "ephemeralcontainers", "eviction", "exec", "log", "portforward", "proxy", "resize", "status"], "io.k8s.api.core.v1.Pod", ALL),
    k("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true, &["rc"], CAT_ALL, SCALE_STATUS, "io.k8s.api.core.v1.ReplicationController", ALL),
    k("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, &["quota"], NONE, STATUS, "io.k8s.api.core.v1.ResourceQuota", ALL),
    k("", "v1", "Secret", "secrets", "secret", true, NONE, NONE, NONE, "io.k8s.api.core.v1.Secret", ALL),
    k("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, &["sa"], NONE, &["token"], "io.k8s.api.core.v1.ServiceAccount", ALL),
    k("", "v1", "Service", "services", "service", true, &["svc"], CAT_ALL, &["proxy", "status"], "io.k8s.api.core.v1.Service", ALL),
    // apps/v1
    k("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, NONE, NONE, NONE, "io.k8s.api.apps.v1.ControllerRevision", ALL),
    k("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, &["ds"], CAT_ALL, STATUS, "io.k8s.api.apps.v1.DaemonSet", ALL),
    k("apps", "v1", "Deployment", "deployments", "deployment", true, &["deploy"], CAT_ALL, SCALE_STATUS, "io.k8s.api.apps.v1.Deployment", ALL),
    k("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, &["rs"], CAT_ALL, SCALE_STATUS, "io.k8s.api.apps.v1.ReplicaSet", ALL),
    k("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, &["sts"], CAT_ALL, SCALE_STATUS, "io.k8s.api.apps.v1.StatefulSet", ALL),
    // authentication.k8s.io/v1 and authorization.k8s.io/v1: reviews, created and answered, never stored
    k("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false, NONE, NONE, NONE, "io.k8s.api.authentication.v1.SelfSubjectReview", CREATE),
    k("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", false, NONE, NONE, NONE, "io.k8s.api.authentication.v1.TokenReview", CREATE),
    k("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", "localsubjectaccessreview", true, NONE, NONE, NONE, "io.k8s.api.authorization.v1.LocalSubjectAccessReview", CREATE),
    k("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", false, NONE, NONE, NONE, "io.k8s.api.authorization.v1.SelfSubjectAccessReview", CREATE),
    k("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "selfsubjectrulesreview", false, NONE, NONE, NONE, "io.k8s.api.authorization.v1.SelfSubjectRulesReview", CREATE),
    k("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview", false, NONE, NONE, NONE, "io.k8s.api.authorization.v1.SubjectAccessReview", CREATE),
    // autoscaling v2 (preferred) and v1
    k("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, &["hpa"], CAT_ALL, STATUS, "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler", ALL),
    k("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, &["hpa"], CAT_ALL, STATUS, "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler", ALL),
    // batch/v1
    k("batch", "v1", "CronJob", "cronjobs", "cronjob", true, &["cj"], CAT_ALL, STATUS, "io.k8s.api.batch.v1.CronJob", ALL),
    k("batch", "v1", "Job", "jobs", "job", true, NONE, CAT_ALL, STATUS, "io.k8s.api.batch.v1.Job", ALL),
    // certificates.k8s.io/v1
    k("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", false, &["csr"], NONE, &["approval", "status"], "io.k8s.api.certificates.v1.CertificateSigningRequest", ALL),
    // scheduling.k8s.io/v1
    k("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, &["pc"], NONE, NONE, "io.k8s.api.scheduling.v1.PriorityClass", ALL),
    // coordination.k8s.io/v1
    k("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, NONE, NONE, NONE, "io.k8s.api.coordination.v1.Lease", ALL),
    // discovery.k8s.io/v1
    k("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, NONE, NONE, NONE, "io.k8s.api.discovery.v1.EndpointSlice", ALL),
    // events.k8s.io/v1
    k("events.k8s.io", "v1", "Event", "events", "event", true, &["ev"], NONE, NONE, "io.k8s.api.events.v1.Event", ALL),
    // networking.k8s.io/v1
    k("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, NONE, NONE, NONE, "io.k8s.api.networking.v1.IngressClass", ALL),
    k("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, &["ing"], NONE, STATUS, "io.k8s.api.networking.v1.Ingress", ALL),
    k("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, &["netpol"], NONE, NONE, "io.k8s.api.networking.v1.NetworkPolicy", ALL),
    // node.k8s.io/v1
    k("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", false, NONE, NONE, NONE, "io.k8s.api.node.v1.RuntimeClass", ALL),
    // policy/v1
    k("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, &["pdb"], NONE, STATUS, "io.k8s.api.policy.v1.PodDisruptionBudget", ALL),
    // rbac.authorization.k8s.io/v1
    k("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, NONE, NONE, NONE, "io.k8s.api.rbac.v1.ClusterRoleBinding", ALL),
    k("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, NONE, NONE, NONE, "io.k8s.api.rbac.v1.ClusterRole", ALL),
    k("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, NONE, NONE, NONE, "io.k8s.api.rbac.v1.RoleBinding", ALL),
    k("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, NONE, NONE, NONE, "io.k8s.api.rbac.v1.Role", ALL),
    // storage.k8s.io/v1
    k("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, &["sc"], NONE, NONE, "io.k8s.api.storage.v1.StorageClass", ALL),
    // apiextensions.k8s.io/v1
    k("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", false, &["crd", "crds"], &["api-extensions"], STATUS, "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition", ALL),
];

/// `metrics.k8s.io/v1beta1`, as metrics-server registers it.
#[rustfmt::skip]
static AGGREGATED: &[Kind] = &[
    k("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", "nodemetrics", false, NONE, NONE, NONE, "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics", GET_LIST),
    k("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", "podmetrics", true, NONE, NONE, NONE, "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics", GET_LIST),
];
