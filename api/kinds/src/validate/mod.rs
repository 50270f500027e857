//! Decoding (with unknown-field detection) and semantic validation of objects, reporting errors
//! with the field paths, reasons and messages the Kubernetes API server uses.

mod certificates;
mod cron;
mod duplicates;
mod limitrange;
mod meta;
pub(crate) mod names;
mod others;
mod pod;
mod service;
mod storage;
mod workloads;

use serde_json::Value;

use crate::Kind;

pub use certificates::{KNOWN_USAGES, MIN_EXPIRATION_SECONDS, parse_request};
pub use cron::validate_schedule;
pub use duplicates::duplicate_fields;
pub use others::{HIGHEST_USER_DEFINABLE_PRIORITY, SYSTEM_PRIORITY_CLASSES};
pub use workloads::selector_matches;

/// How unknown fields in a request body are treated (the `fieldValidation` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop unknown fields and report each as a warning (the server default).
    #[default]
    Warn,
    /// Reject a body with unknown fields.
    Strict,
}

impl FieldValidation {
    /// Parses the query value; an absent or empty value means the default, `Warn`.
    pub fn from_query(value: Option<&str>) -> Result<Self, Error> {
        match value.unwrap_or("") {
            "" | "Warn" => Ok(Self::Warn),
            "Ignore" => Ok(Self::Ignore),
            "Strict" => Ok(Self::Strict),
            other => Err(Error::BadRequest(format!(
                "fieldValidation parameter unsupported: {other:?}; supported values are Ignore, Warn, Strict"
            ))),
        }
    }
}

impl std::str::FromStr for FieldValidation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::from_query(Some(s))
    }
}

/// One field error, as it appears in a `Status`'s `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueDuplicate`,
    /// `FieldValueForbidden` or `FieldValueTooLong`.
    pub reason: String,
    /// The error without the field, e.g. `Invalid value: "Foo": must be ...`.
    pub message: String,
    /// The field path, e.g. `spec.containers[0].name`.
    pub field: String,
}

impl Cause {
    /// `field: message`, as the aggregated Status message lists it.
    pub fn full(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }

    /// The cause as a `StatusCause` JSON object.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"reason": self.reason, "message": self.message, "field": self.field})
    }
}

/// A rejected object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// 400: the body cannot be decoded, or strict decoding found unknown fields.
    #[error("{0}")]
    BadRequest(String),
    /// 422: the object is invalid; one cause per field error.
    #[error("invalid: {}", causes_message(.0))]
    Invalid(Vec<Cause>),
}

fn causes_message(causes: &[Cause]) -> String {
    let mut seen = Vec::new();
    for c in causes {
        let m = c.full();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    if seen.len() == 1 {
        seen.remove(0)
    } else {
        format!("[{}]", seen.join(", "))
    }
}

/// The `Status` message for an invalid object, e.g.
/// `Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be ...`.
pub fn invalid_message(kind: &Kind, name: &str, causes: &[Cause]) -> String {
    if causes.is_empty() {
        format!("{} {} is invalid", kind.qualified_kind(), go_str(name))
    } else {
        format!(
            "{} {} is invalid: {}",
            kind.qualified_kind(),
            go_str(name),
            causes_message(causes)
        )
    }
}

/// Decodes `obj` through the kind's k8s-openapi type to check its shape and finds the fields the
/// type does not know. Returns the warnings to send (`unknown field "spec.foo"`) in `Warn` mode.
pub fn decode(kind: &Kind, obj: &Value, mode: FieldValidation) -> Result<Vec<String>, Error> {
    let cannot = |detail: String| {
        Error::BadRequest(format!(
            "{} in version {} cannot be handled as a {}: {detail}",
            kind.kind,
            go_str(kind.version),
            kind.kind
        ))
    };
    if !obj.is_object() {
        return Err(cannot(
            "json: cannot unmarshal non-object into Go value".to_string(),
        ));
    }
    if kind.is_custom() {
        if mode == FieldValidation::Ignore {
            return Ok(Vec::new());
        }
        let msgs: Vec<String> = crate::crd::unknown_fields(kind, obj)
            .iter()
            .map(|p| format!("unknown field {}", go_str(p)))
            .collect();
        return match mode {
            FieldValidation::Strict if !msgs.is_empty() => Err(cannot(format!(
                "strict decoding error: {}",
                msgs.join(", ")
            ))),
            _ => Ok(msgs),
        };
    }
    let Some(round) = crate::typed::round_trip(kind.openapi_type, obj) else {
        return Ok(Vec::new());
    };
    let round = round.map_err(|e| cannot(e.to_string()))?;
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let mut unknown = Vec::new();
    unknown_fields(obj, &round, "", &mut unknown);
    let msgs: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field {}", go_str(p)))
        .collect();
    match mode {
        FieldValidation::Strict if !msgs.is_empty() => Err(cannot(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        ))),
        _ => Ok(msgs),
    }
}

/// Decodes a raw JSON request body: parses it, reports keys that occur twice in one object
/// (`duplicate field "spec.replicas"`) and unknown fields as [`decode`] does, per `mode`. Returns
/// the parsed object and the warnings to send.
pub fn decode_bytes(
    kind: &Kind,
    body: &[u8],
    mode: FieldValidation,
) -> Result<(Value, Vec<String>), Error> {
    let cannot = |detail: String| {
        Error::BadRequest(format!(
            "{} in version {} cannot be handled as a {}: {detail}",
            kind.kind,
            go_str(kind.version),
            kind.kind
        ))
    };
    let obj: Value = serde_json::from_slice(body).map_err(|e| cannot(e.to_string()))?;
    let dups: Vec<String> = match mode {
        FieldValidation::Ignore => Vec::new(),
        _ => duplicate_fields(body)
            .map_err(|e| cannot(e.to_string()))?
            .iter()
            .map(|p| format!("duplicate field {}", go_str(p)))
            .collect(),
    };
    let unknown = decode(kind, &obj, FieldValidation::Warn)?;
    let mut all = dups;
    if mode != FieldValidation::Ignore {
        all.extend(unknown);
    }
    match mode {
        FieldValidation::Strict if !all.is_empty() => {
            Err(cannot(format!("strict decoding error: {}", all.join(", "))))
        }
        _ => Ok((obj, all)),
    }
}

/// Walks `input` beside its typed round trip and records the paths of keys the type dropped.
/// Explicit nulls count as known.
pub(crate) fn unknown_fields(input: &Value, round: &Value, path: &str, out: &mut Vec<String>) {
    match (input, round) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(w) => unknown_fields(v, w, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                unknown_fields(v, w, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Semantic validation of `obj` (and of the update, given the old object). Expects defaults to
/// have been applied and, on create, `metadata.name` to have been generated from `generateName`.
pub fn validate(kind: &Kind, obj: &Value, old: Option<&Value>) -> Result<(), Error> {
    let mut errs = Errs::default();
    meta::object_meta(kind, obj, &mut errs);
    if kind.is_custom() {
        // a custom resource's rules are its schema's, whatever its group and kind are called
        errs.0.extend(crate::crd::validate(kind, obj, old));
        return if errs.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(errs.0))
        };
    }
    match (kind.group, kind.kind) {
        ("", "Pod") => pod::pod(obj, old, &mut errs),
        ("", "Service") => service::service(obj, old, &mut errs),
        ("", "Namespace") => meta::namespace(obj, &mut errs),
        ("", "Node") => meta::node(obj, &mut errs),
        ("", "ConfigMap") | ("", "Secret") => meta::config_data(kind, obj, old, &mut errs),
        ("apps", "Deployment") => workloads::deployment(obj, old, &mut errs),
        ("apps", "ReplicaSet") => workloads::replica_set(obj, old, &mut errs),
        ("", "ReplicationController") => workloads::replication_controller(obj, &mut errs),
        ("apps", "DaemonSet") => workloads::daemon_set(obj, old, &mut errs),
        ("apps", "StatefulSet") => workloads::stateful_set(obj, old, &mut errs),
        ("batch", "Job") => workloads::job(obj, old, &mut errs),
        ("batch", "CronJob") => workloads::cron_job(obj, old, &mut errs),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            others::role_binding(obj, old, &mut errs)
        }
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => others::role(obj, &mut errs),
        ("policy", "PodDisruptionBudget") => others::pdb(obj, &mut errs),
        ("autoscaling", "HorizontalPodAutoscaler") => others::hpa(obj, &mut errs),
        ("", "PersistentVolumeClaim") => storage::pvc(obj, old, &mut errs),
        ("", "PersistentVolume") => storage::pv(obj, old, &mut errs),
        ("storage.k8s.io", "StorageClass") => storage::storage_class(obj, old, &mut errs),
        ("", "Event") => others::event(obj, &mut errs),
        ("events.k8s.io", "Event") => others::event_v1(obj, &mut errs),
        ("networking.k8s.io", "Ingress") => others::ingress(obj, &mut errs),
        ("node.k8s.io", "RuntimeClass") => others::runtime_class(obj, &mut errs),
        ("scheduling.k8s.io", "PriorityClass") => others::priority_class(obj, old, &mut errs),
        ("", "ResourceQuota") => others::resource_quota(obj, &mut errs),
        ("", "LimitRange") => limitrange::limit_range(obj, &mut errs),
        ("discovery.k8s.io", "EndpointSlice") => others::endpoint_slice(obj, &mut errs),
        ("coordination.k8s.io", "Lease") => others::lease(obj, &mut errs),
        ("", "PodTemplate") => pod::template(obj.get("template"), "template", &mut errs),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            certificates::csr(obj, old, &mut errs)
        }
        _ => {}
    }
    if errs.0.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(errs.0))
    }
}

/// Collects field errors.
#[derive(Debug, Default)]
pub(crate) struct Errs(pub(crate) Vec<Cause>);

impl Errs {
    fn push(&mut self, reason: &str, field: &str, message: String) {
        self.0.push(Cause {
            reason: reason.to_string(),
            message,
            field: field.to_string(),
        });
    }
    /// `Invalid value: VALUE: detail`; `value` is already rendered Go-style.
    pub(crate) fn invalid(&mut self, field: &str, value: &str, detail: &str) {
        let msg = if detail.is_empty() {
            format!("Invalid value: {value}")
        } else {
            format!("Invalid value: {value}: {detail}")
        };
        self.push("FieldValueInvalid", field, msg);
    }
    pub(crate) fn required(&mut self, field: &str, detail: &str) {
        let msg = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        self.push("FieldValueRequired", field, msg);
    }
    pub(crate) fn not_supported(&mut self, field: &str, value: &str, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| go_str(s)).collect();
        self.push(
            "FieldValueNotSupported",
            field,
            format!(
                "Unsupported value: {}: supported values: {}",
                go_str(value),
                list.join(", ")
            ),
        );
    }
    pub(crate) fn duplicate(&mut self, field: &str, value: &str) {
        self.push(
            "FieldValueDuplicate",
            field,
            format!("Duplicate value: {value}"),
        );
    }
    pub(crate) fn not_found(&mut self, field: &str, value: &str) {
        self.push("FieldValueNotFound", field, format!("Not found: {value}"));
    }
    pub(crate) fn forbidden(&mut self, field: &str, detail: &str) {
        self.push("FieldValueForbidden", field, format!("Forbidden: {detail}"));
    }
    pub(crate) fn too_long(&mut self, field: &str, max: usize) {
        self.push(
            "FieldValueTooLong",
            field,
            format!("Too long: must have at most {max} bytes"),
        );
    }
    /// Reports each message of a syntax check as an invalid string value.
    pub(crate) fn each(&mut self, field: &str, value: &str, msgs: Vec<String>) {
        for m in msgs {
            self.invalid(field, &go_str(value), &m);
        }
    }
    /// `value` must be ≥ 0.
    pub(crate) fn non_negative(&mut self, obj: &Value, ptr: &str, field: &str) {
        if let Some(n) = obj.pointer(ptr).and_then(Value::as_i64)
            && n < 0
        {
            self.invalid(field, &n.to_string(), "must be greater than or equal to 0");
        }
    }
}

/// A string rendered the way Go's `%q` does.
pub(crate) fn go_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A string map rendered the way Go's `%#v` does (keys sorted; `nil` for an absent map).
pub(crate) fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let mut entries: Vec<(&String, String)> = m
                .iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                .collect();
            entries.sort();
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{}", go_str(k), go_str(v)))
                .collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
    }
}

/// A value rendered for an `Invalid value:` message: strings quoted, numbers and booleans plain,
/// anything else as JSON.
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_str(s),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// `obj` at a JSON pointer as a string, or "".
pub(crate) fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// `obj` at a JSON pointer as an array, or empty.
pub(crate) fn arr<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
