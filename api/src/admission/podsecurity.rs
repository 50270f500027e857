//! Kubernetes' Pod Security Admission, for Linux container pods: a new pod whose RuntimeClass
//! runs containers on the host kernel (any handler but `wasm`, and a class not created yet) is
//! checked against the Pod Security Standards level of its namespace's
//! `pod-security.kubernetes.io/enforce` label, and refused with Kubernetes' own words.
//!
//! Differences from Kubernetes, on purpose:
//! - a namespace without the label enforces `baseline` (Kubernetes' default is `privileged`), as
//!   wasm pods had no way to reach the host and Linux pods should not gain one silently;
//! - WebAssembly pods (no `runtimeClassName`, or a class with handler `wasm`) are not checked:
//!   their sandbox has no host namespaces, and pod validation keeps refusing what they cannot do;
//! - the checks are those of the latest policy version whatever `enforce-version` says (the
//!   version is only echoed in the message); the baseline checks of AppArmor, SELinux, sysctls,
//!   Windows host processes and probe hosts are not made (the node refuses those fields on Linux
//!   pods), nor audit/warn modes or exemptions; workload templates get Kubernetes' `Warning`
//!   (`would violate PodSecurity ...`) on create, update and patch;
//! - pods are checked on create only: an update cannot change what the checks read.
//!
//! An enforce label value that is not a level enforces `restricted`, as in Kubernetes.

use std::collections::BTreeSet;

use serde_json::Value;
use skiff_kinds::Kind;

use super::forbidden;
use crate::error::ApiError;
use crate::objects;
use crate::registry::{Admission, Admitted, Operation, Write};
use crate::state::AppState;

/// The plugin.
pub(crate) struct PodSecurity;

impl Admission for PodSecurity {
    fn admit<'a>(
        &'a self,
        state: &'a AppState,
        op: Operation,
        write: &'a Write<'a>,
        obj: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admitted<'a> {
        Box::pin(async move {
            match (write.kind.group, write.kind.plural, op) {
                ("", "pods", Operation::Create) => admit_pod(state, write, obj).await,
                _ => Ok(()),
            }
        })
    }
}

/// A Pod Security Standards level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// The level a namespace's enforce label value names: absent is `baseline` here, a value
    /// that is no level is `restricted` (Kubernetes' answer to an invalid label).
    pub(crate) fn from_label(value: Option<&str>) -> Level {
        match value {
            None | Some("baseline") => Level::Baseline,
            Some("privileged") => Level::Privileged,
            Some(_) => Level::Restricted,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

async fn admit_pod(state: &AppState, write: &Write<'_>, pod: &Value) -> Result<(), ApiError> {
    let Some(namespace) = write.namespace else {
        return Ok(());
    };
    match verdict(state, namespace, pod).await? {
        Some(violation) => Err(forbidden(write, format!("violates {violation}"))),
        None => Ok(()),
    }
}

/// Kubernetes' warning on a workload write (Deployment, ReplicaSet, StatefulSet, DaemonSet,
/// Job, CronJob, ReplicationController, PodTemplate) whose pod template the namespace's level
/// would refuse: `would violate PodSecurity "baseline:latest": ...`. The write itself is not
/// refused (its pods are); a failed store read gives no warning.
pub(crate) async fn workload_warnings(
    state: &AppState,
    kind: &Kind,
    namespace: Option<&str>,
    obj: &Value,
) -> Vec<String> {
    let pointer = match (kind.group, kind.plural) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs")
        | ("", "replicationcontrollers") => "/spec/template",
        ("batch", "cronjobs") => "/spec/jobTemplate/spec/template",
        ("", "podtemplates") => "/template",
        _ => return Vec::new(),
    };
    let (Some(template), Some(namespace)) = (obj.pointer(pointer), namespace) else {
        return Vec::new();
    };
    match verdict(state, namespace, template).await {
        Ok(Some(violation)) => vec![format!("would violate {violation}")],
        Ok(None) | Err(_) => Vec::new(),
    }
}

/// What `pod` (a pod or a pod template) violates in `namespace`:
/// `PodSecurity "LEVEL:VERSION": DETAIL`, or `None` when it is a wasm pod or allowed.
async fn verdict(
    state: &AppState,
    namespace: &str,
    pod: &Value,
) -> Result<Option<String>, ApiError> {
    let Some(class) = pod
        .pointer("/spec/runtimeClassName")
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    if handler(state, class).await?.as_deref() == Some(skiff_meta::names::WASM_RUNTIME_CLASS) {
        return Ok(None);
    }
    let labels = namespace_labels(state, namespace).await?;
    let label = |key: &str| labels.get(key).and_then(Value::as_str);
    let level = Level::from_label(label(skiff_meta::names::POD_SECURITY_ENFORCE));
    let version = match label(skiff_meta::names::POD_SECURITY_ENFORCE_VERSION) {
        Some(v) if valid_version(v) => v,
        _ => "latest",
    };
    Ok(violations(level, pod)
        .map(|detail| format!("PodSecurity \"{}:{version}\": {detail}", level.name())))
}

/// `latest` or `v1.N`, as the enforce-version label takes.
fn valid_version(v: &str) -> bool {
    v == "latest"
        || v.strip_prefix("v1.")
            .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
}

/// The handler of RuntimeClass `name`, `None` when there is no such class.
async fn handler(state: &AppState, name: &str) -> Result<Option<String>, ApiError> {
    let kind = skiff_kinds::find("node.k8s.io", "v1", "runtimeclasses")
        .expect("runtimeclasses are a known kind");
    let Some(kv) = state.store.get(&objects::key(kind, None, name)).await? else {
        return Ok(None);
    };
    let rc = objects::from_kv(kind, &kv)?;
    Ok(rc
        .get("handler")
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// The labels of namespace `name` (none when it is missing: the write fails elsewhere).
async fn namespace_labels(
    state: &AppState,
    name: &str,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let kind = skiff_kinds::find("", "v1", "namespaces").expect("namespaces are a known kind");
    let Some(kv) = state.store.get(&objects::key(kind, None, name)).await? else {
        return Ok(serde_json::Map::new());
    };
    let ns = objects::from_kv(kind, &kv)?;
    Ok(ns
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default())
}

/// What a failed check says: Kubernetes' `ForbiddenReason` and `ForbiddenDetail`.
struct Violation {
    reason: &'static str,
    detail: String,
}

/// The pod's violations of `level`, aggregated as Kubernetes' `ForbiddenDetail`
/// (`reason (detail), reason (detail)`), in Kubernetes' check order; `None` when allowed.
pub(crate) fn violations(level: Level, pod: &Value) -> Option<String> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let pod = Spec::new(spec);
    let checks: &[fn(&Spec<'_>) -> Option<Violation>] = match level {
        Level::Privileged => return None,
        Level::Baseline => &[
            host_namespaces,
            host_ports,
            privileged,
            proc_mount,
            capabilities_baseline,
            host_path_volumes,
            seccomp_baseline,
        ],
        Level::Restricted => &[
            host_namespaces,
            host_ports,
            privileged,
            proc_mount,
            allow_privilege_escalation,
            capabilities_restricted,
            restricted_volumes,
            run_as_non_root,
            run_as_user,
            seccomp_restricted,
        ],
    };
    let found: Vec<String> = checks
        .iter()
        .filter_map(|check| check(&pod))
        .map(|v| format!("{} ({})", v.reason, v.detail))
        .collect();
    (!found.is_empty()).then(|| found.join(", "))
}

/// The pod spec as the checks read it.
struct Spec<'a> {
    spec: &'a Value,
    /// Init, regular and ephemeral containers, in that order (Kubernetes' `visitContainers`).
    containers: Vec<&'a Value>,
}

impl<'a> Spec<'a> {
    fn new(spec: &'a Value) -> Spec<'a> {
        let containers = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .filter_map(|f| spec.get(*f).and_then(Value::as_array))
            .flatten()
            .collect();
        Spec { spec, containers }
    }

    fn flag(&self, field: &str) -> bool {
        self.spec.get(field).and_then(Value::as_bool) == Some(true)
    }

    /// `spec.securityContext.<field>`.
    fn pod_security(&self, field: &str) -> Option<&'a Value> {
        self.spec.get("securityContext")?.get(field)
    }

    /// `hostUsers: false`: the pod runs in a user namespace, which relaxes some checks.
    fn user_namespace(&self) -> bool {
        self.spec.get("hostUsers").and_then(Value::as_bool) == Some(false)
    }
}

fn name(container: &Value) -> &str {
    container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `securityContext.<field>` of a container.
fn security<'a>(container: &'a Value, field: &str) -> Option<&'a Value> {
    container.get("securityContext")?.get(field)
}

/// Kubernetes' `pluralize`.
fn pluralize(one: &'static str, many: &'static str, n: usize) -> &'static str {
    if n == 1 { one } else { many }
}

/// Kubernetes' `joinQuote`: `"a", "b"`.
fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|s| format!("{:?}", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[&str]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

fn host_namespaces(pod: &Spec<'_>) -> Option<Violation> {
    let set: Vec<&str> = [
        ("hostNetwork", "hostNetwork=true"),
        ("hostPID", "hostPID=true"),
        ("hostIPC", "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(field, _)| pod.flag(field))
    .map(|(_, text)| text)
    .collect();
    (!set.is_empty()).then(|| Violation {
        reason: "host namespaces",
        detail: set.join(", "),
    })
}

fn host_ports(pod: &Spec<'_>) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = BTreeSet::new();
    for c in &pod.containers {
        let mut uses = false;
        for port in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(p) = port.get("hostPort").and_then(Value::as_i64)
                && p != 0
            {
                uses = true;
                // A string set, sorted as strings, as Kubernetes' `sets.String`.
                ports.insert(p.to_string());
            }
        }
        if uses {
            bad.push(name(c));
        }
    }
    (!bad.is_empty()).then(|| Violation {
        reason: "hostPort",
        detail: format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    })
}

fn privileged(pod: &Spec<'_>) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| security(c, "privileged").and_then(Value::as_bool) == Some(true))
        .map(|c| name(c))
        .collect();
    (!bad.is_empty()).then(|| Violation {
        reason: "privileged",
        detail: format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    })
}

fn proc_mount(pod: &Spec<'_>) -> Option<Violation> {
    if pod.user_namespace() {
        return None;
    }
    let mut bad = Vec::new();
    let mut kinds = BTreeSet::new();
    for c in &pod.containers {
        if let Some(kind) = security(c, "procMount").and_then(Value::as_str)
            && kind != "Default"
        {
            bad.push(name(c));
            kinds.insert(kind);
        }
    }
    (!bad.is_empty()).then(|| Violation {
        reason: "procMount",
        detail: format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(kinds)
        ),
    })
}

/// The capabilities baseline lets a container add.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// `securityContext.capabilities.<list>` of a container, `None` when `capabilities` is unset.
fn capabilities<'a>(container: &'a Value, list: &str) -> Option<Vec<&'a str>> {
    let caps = security(container, "capabilities")?;
    Some(
        caps.get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect(),
    )
}

/// Containers adding a capability `allowed` refuses, and those capabilities (sorted).
fn added_beyond<'a>(
    pod: &Spec<'a>,
    allowed: impl Fn(&str) -> bool,
) -> (Vec<&'a str>, BTreeSet<&'a str>) {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in &pod.containers {
        let mut adds = false;
        for cap in capabilities(c, "add").unwrap_or_default() {
            if !allowed(cap) {
                adds = true;
                caps.insert(cap);
            }
        }
        if adds {
            bad.push(name(c));
        }
    }
    (bad, caps)
}

fn capabilities_baseline(pod: &Spec<'_>) -> Option<Violation> {
    let (bad, caps) = added_beyond(pod, |c| BASELINE_CAPABILITIES.contains(&c));
    (!bad.is_empty()).then(|| Violation {
        reason: "non-default capabilities",
        detail: format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(caps)
        ),
    })
}

fn host_path_volumes(pod: &Spec<'_>) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(name)
        .collect();
    (!bad.is_empty()).then(|| Violation {
        reason: "hostPath volumes",
        detail: format!(
            "{} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
    })
}

/// A seccomp profile type baseline and restricted allow.
fn valid_seccomp(profile: &Value) -> bool {
    matches!(
        profile.get("type").and_then(Value::as_str),
        Some("RuntimeDefault" | "Localhost")
    )
}

fn profile_type(profile: &Value) -> &str {
    profile
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Seccomp as both levels read it: who sets a bad type (`pod`, `containers "a"`), the bad types,
/// and (restricted) the containers left without a profile.
fn seccomp(pod: &Spec<'_>) -> (Vec<String>, BTreeSet<String>, Vec<String>) {
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let mut pod_set = false;
    if let Some(p) = pod.pod_security("seccompProfile").filter(|p| !p.is_null()) {
        if valid_seccomp(p) {
            pod_set = true;
        } else {
            setters.push("pod".to_string());
            values.insert(profile_type(p).to_string());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in &pod.containers {
        match security(c, "seccompProfile").filter(|p| !p.is_null()) {
            Some(p) if !valid_seccomp(p) => {
                explicit.push(name(c));
                values.insert(profile_type(p).to_string());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(name(c).to_string()),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    (setters, values, implicit)
}

fn seccomp_bad_setters(setters: &[String], values: BTreeSet<String>) -> Violation {
    Violation {
        reason: "seccompProfile",
        detail: format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(values)
        ),
    }
}

fn seccomp_baseline(pod: &Spec<'_>) -> Option<Violation> {
    let (setters, values, _) = seccomp(pod);
    (!setters.is_empty()).then(|| seccomp_bad_setters(&setters, values))
}

fn seccomp_restricted(pod: &Spec<'_>) -> Option<Violation> {
    let (setters, values, implicit) = seccomp(pod);
    if !setters.is_empty() {
        return Some(seccomp_bad_setters(&setters, values));
    }
    (!implicit.is_empty()).then(|| {
        let names: Vec<&str> = implicit.iter().map(String::as_str).collect();
        Violation {
            reason: "seccompProfile",
            detail: format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&names)
            ),
        }
    })
}

fn allow_privilege_escalation(pod: &Spec<'_>) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| security(c, "allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false))
        .map(|c| name(c))
        .collect();
    (!bad.is_empty()).then(|| Violation {
        reason: "allowPrivilegeEscalation != false",
        detail: format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    })
}

fn capabilities_restricted(pod: &Spec<'_>) -> Option<Violation> {
    let missing_drop: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| !capabilities(c, "drop").is_some_and(|d| d.contains(&"ALL")))
        .map(|c| name(c))
        .collect();
    let (adding, caps) = added_beyond(pod, |c| c == "NET_BIND_SERVICE");
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(caps)
        ));
    }
    (!details.is_empty()).then(|| Violation {
        reason: "unrestricted capabilities",
        detail: details.join("; "),
    })
}

/// The volume sources restricted allows.
const RESTRICTED_VOLUME_SOURCES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn restricted_volumes(pod: &Spec<'_>) -> Option<Violation> {
    let bad: BTreeSet<&str> = pod
        .spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| {
            !RESTRICTED_VOLUME_SOURCES
                .iter()
                .any(|s| v.get(*s).is_some_and(|x| !x.is_null()))
        })
        .map(name)
        .collect();
    // Go's `%q` of a string slice: `["a" "b"]`.
    let quoted: Vec<String> = bad.iter().map(|n| format!("{n:?}")).collect();
    (!bad.is_empty()).then(|| Violation {
        reason: "restricted volume types",
        detail: format!("volumes [{}] have restricted types", quoted.join(" ")),
    })
}

fn run_as_non_root(pod: &Spec<'_>) -> Option<Violation> {
    if pod.user_namespace() {
        return None;
    }
    let mut setters = Vec::new();
    let mut pod_non_root = false;
    match pod.pod_security("runAsNonRoot").and_then(Value::as_bool) {
        Some(false) => setters.push("pod".to_string()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in &pod.containers {
        match security(c, "runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_non_root => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return Some(Violation {
            reason: "runAsNonRoot != true",
            detail: format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        });
    }
    (!implicit.is_empty()).then(|| Violation {
        reason: "runAsNonRoot != true",
        detail: format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_phrase(&implicit)
        ),
    })
}

fn run_as_user(pod: &Spec<'_>) -> Option<Violation> {
    let mut setters = Vec::new();
    if pod.pod_security("runAsUser").and_then(Value::as_i64) == Some(0) {
        setters.push("pod".to_string());
    }
    let bad: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| security(c, "runAsUser").and_then(Value::as_i64) == Some(0))
        .map(|c| name(c))
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    (!setters.is_empty()).then(|| Violation {
        reason: "runAsUser=0",
        detail: format!("{} must not set runAsUser=0", setters.join(" and ")),
    })
}

#[cfg(test)]
mod tests;
