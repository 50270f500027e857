//! Kubernetes' `LimitRanger` admission plugin (`plugin/pkg/admission/limitranger`): each
//! LimitRange of the namespace gives a new pod's containers and init containers the `default`
//! limits and `defaultRequest` requests they lack (noted in the `kubernetes.io/limit-ranger`
//! annotation), then checks `min`, `max` and `maxLimitRequestRatio` per container (type
//! `Container`) and for the pod's sums (type `Pod`), and a claim's storage request against type
//! `PersistentVolumeClaim` (on create and update). Refusals are 403 with Kubernetes' wording.
//! It runs before quota, so quota charges the defaulted pod.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use skiff_meta::quantity::Quantity;

use super::{forbidden, list};
use crate::error::ApiError;
use crate::registry::{Admission, Admitted, Operation, Write};
use crate::state::AppState;

/// The annotation naming what the plugin set.
pub(crate) const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// A resource list: name → quantity, parsed (unparseable values are left out: validation has
/// refused them already).
type Resources = BTreeMap<String, Quantity>;

/// The plugin.
pub(crate) struct LimitRanger;

impl Admission for LimitRanger {
    fn admit<'a>(
        &'a self,
        state: &'a AppState,
        op: Operation,
        write: &'a Write<'a>,
        obj: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admitted<'a> {
        Box::pin(async move {
            let (Some(namespace), None) = (write.namespace, write.subresource) else {
                return Ok(());
            };
            let pod = match (write.kind.group, write.kind.plural, op) {
                ("", "pods", Operation::Create) => true,
                ("", "persistentvolumeclaims", Operation::Create | Operation::Update) => false,
                _ => return Ok(()),
            };
            let ranges_kind =
                skiff_kinds::find("", "v1", "limitranges").expect("limitranges are a known kind");
            let ranges = list(state, ranges_kind, Some(namespace)).await?;
            if ranges.is_empty() {
                return Ok(());
            }
            if pod {
                for range in &ranges {
                    default_pod(range, obj);
                }
            }
            let mut errors = Vec::new();
            for range in &ranges {
                if pod {
                    validate_pod(range, obj, &mut errors);
                } else {
                    validate_claim(range, obj, &mut errors);
                }
            }
            match aggregate(errors) {
                Some(message) => Err(refuse(write, message)),
                None => Ok(()),
            }
        })
    }
}

fn refuse(write: &Write<'_>, message: String) -> ApiError {
    forbidden(write, message)
}

/// Go's `utilerrors.NewAggregate(...).Error()`: one message alone, several deduplicated and
/// joined in brackets.
fn aggregate(errors: Vec<String>) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

fn resources(v: Option<&Value>) -> Resources {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str()?).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The limit items of `range` of one type.
fn items<'v>(range: &'v Value, kind: &'v str) -> impl Iterator<Item = &'v Value> + 'v {
    range
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |item| item.get("type").and_then(Value::as_str) == Some(kind))
}

/// Kubernetes' `defaultContainerResourceRequirements`: `default` and `defaultRequest` of the
/// `Container` items (later items win per resource).
fn container_defaults(range: &Value) -> (Resources, Resources) {
    let (mut limits, mut requests) = (Resources::new(), Resources::new());
    for item in items(range, "Container") {
        limits.extend(resources(item.get("default")));
        requests.extend(resources(item.get("defaultRequest")));
    }
    (limits, requests)
}

/// Kubernetes' `mergePodResourceRequirements`: what each container lacks, and the annotation.
fn default_pod(range: &Value, pod: &mut Value) {
    let (limits, requests) = container_defaults(range);
    if limits.is_empty() && requests.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (list, prefix) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(containers) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in containers {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let set_limits = fill(c, "limits", &limits);
            let set_requests = fill(c, "requests", &requests);
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {prefix} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!(
                    "{} limit for {prefix} {name}",
                    set_limits.join(", ")
                ));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    if let Some(a) = annotations.as_object_mut() {
        a.insert(
            ANNOTATION.into(),
            json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
        );
    }
}

/// Sets the missing resources of `container.resources.FIELD`; returns their names, sorted.
fn fill(container: &mut Value, field: &str, defaults: &Resources) -> Vec<String> {
    if defaults.is_empty() || !container.is_object() {
        return Vec::new();
    }
    let resources = container
        .as_object_mut()
        .map(|c| {
            c.entry("resources")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .filter(|r| r.is_object() || r.is_null());
    let Some(resources) = resources else {
        return Vec::new();
    };
    if resources.is_null() {
        *resources = Value::Object(Map::new());
    }
    let Some(list) = resources
        .as_object_mut()
        .map(|r| r.entry(field).or_insert_with(|| Value::Object(Map::new())))
    else {
        return Vec::new();
    };
    if list.is_null() {
        *list = Value::Object(Map::new());
    }
    let Some(list) = list.as_object_mut() else {
        return Vec::new();
    };
    let mut set = Vec::new();
    for (name, q) in defaults {
        if !list.contains_key(name) {
            list.insert(name.clone(), json!(q.to_string()));
            set.push(name.clone());
        }
    }
    set
}

/// Kubernetes' `PodValidateLimitFunc`.
fn validate_pod(range: &Value, pod: &Value, errors: &mut Vec<String>) {
    let containers = |list: &str| -> Vec<(Resources, Resources)> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    resources(c.pointer("/resources/requests")),
                    resources(c.pointer("/resources/limits")),
                )
            })
            .collect()
    };
    let (main, init) = (containers("containers"), containers("initContainers"));
    for item in items(range, "Container") {
        for (requests, limits) in main.iter().chain(&init) {
            check_item(item, "Container", requests, limits, errors);
        }
    }
    for item in items(range, "Pod") {
        let (requests, limits) = (pod_total(pod, "requests"), pod_total(pod, "limits"));
        check_item(item, "Pod", &requests, &limits, errors);
    }
}

/// `min`, `max` and `maxLimitRequestRatio` of one item against requests and limits.
fn check_item(
    item: &Value,
    kind: &str,
    requests: &Resources,
    limits: &Resources,
    errors: &mut Vec<String>,
) {
    for (name, enforced) in resources(item.get("min")) {
        if let Err(e) = min_constraint(kind, &name, enforced, requests, limits) {
            errors.push(e);
        }
    }
    for (name, enforced) in resources(item.get("max")) {
        if let Err(e) = max_constraint(kind, &name, enforced, requests, limits) {
            errors.push(e);
        }
    }
    for (name, enforced) in resources(item.get("maxLimitRequestRatio")) {
        if let Err(e) = ratio_constraint(kind, &name, enforced, requests, limits) {
            errors.push(e);
        }
    }
}

/// Kubernetes' `podRequests`/`podLimits`: the containers' sum, restartable (sidecar) init
/// containers added, and at least what any other init container needs beside the sidecars
/// started before it.
fn pod_total(pod: &Value, field: &str) -> Resources {
    let of = |c: &Value| resources(c.pointer(&format!("/resources/{field}")));
    let add = |into: &mut Resources, from: &Resources| {
        for (k, v) in from {
            let sum = into.get(k).copied().unwrap_or(Quantity::ZERO) + *v;
            into.insert(k.clone(), sum);
        }
    };
    let max = |into: &mut Resources, from: &Resources| {
        for (k, v) in from {
            if into.get(k).is_none_or(|cur| v > cur) {
                into.insert(k.clone(), *v);
            }
        }
    };
    let mut total = Resources::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add(&mut total, &of(c));
    }
    let mut sidecars = Resources::new();
    let mut init = Resources::new();
    for c in pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let own = of(c);
        let needs = if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            add(&mut total, &own);
            add(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut tmp = own;
            add(&mut tmp, &sidecars);
            tmp
        };
        max(&mut init, &needs);
    }
    max(&mut total, &init);
    total
}

fn min_constraint(
    kind: &str,
    name: &str,
    enforced: Quantity,
    requests: &Resources,
    limits: &Resources,
) -> Result<(), String> {
    let Some(req) = requests.get(name) else {
        return Err(format!(
            "minimum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if *req < enforced {
        return Err(format!(
            "minimum {name} usage per {kind} is {enforced}, but request is {req}"
        ));
    }
    if let Some(lim) = limits.get(name)
        && *lim < enforced
    {
        return Err(format!(
            "minimum {name} usage per {kind} is {enforced}, but limit is {lim}"
        ));
    }
    Ok(())
}

fn max_constraint(
    kind: &str,
    name: &str,
    enforced: Quantity,
    requests: &Resources,
    limits: &Resources,
) -> Result<(), String> {
    let Some(lim) = limits.get(name) else {
        return Err(format!(
            "maximum {name} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if *lim > enforced {
        return Err(format!(
            "maximum {name} usage per {kind} is {enforced}, but limit is {lim}"
        ));
    }
    if let Some(req) = requests.get(name)
        && *req > enforced
    {
        return Err(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {req}"
        ));
    }
    Ok(())
}

/// Kubernetes' `maxRequestConstraint` (claims: their request against `max`).
fn max_request_constraint(
    kind: &str,
    name: &str,
    enforced: Quantity,
    requests: &Resources,
) -> Result<(), String> {
    let Some(req) = requests.get(name) else {
        return Err(format!(
            "maximum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if *req > enforced {
        return Err(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {req}"
        ));
    }
    Ok(())
}

fn ratio_constraint(
    kind: &str,
    name: &str,
    enforced: Quantity,
    requests: &Resources,
    limits: &Resources,
) -> Result<(), String> {
    let req = requests.get(name).copied().unwrap_or(Quantity::ZERO);
    if req.is_zero() {
        return Err(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    }
    let lim = limits.get(name).copied().unwrap_or(Quantity::ZERO);
    if lim.is_zero() {
        return Err(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    // As Kubernetes: milli-units on both sides (exact here: quantities are i128 milli-units).
    let observed = lim.milli() as f64 / req.milli() as f64;
    if observed * 1000.0 > enforced.milli() as f64 {
        return Err(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}"
        ));
    }
    Ok(())
}

/// Kubernetes' `PersistentVolumeClaimValidateLimitFunc`.
fn validate_claim(range: &Value, claim: &Value, errors: &mut Vec<String>) {
    let requests = resources(claim.pointer("/spec/resources/requests"));
    for item in items(range, "PersistentVolumeClaim") {
        for (name, enforced) in resources(item.get("min")) {
            if let Err(e) = min_constraint(
                "PersistentVolumeClaim",
                &name,
                enforced,
                &requests,
                &Resources::new(),
            ) {
                errors.push(e);
            }
        }
        for (name, enforced) in resources(item.get("max")) {
            if let Err(e) =
                max_request_constraint("PersistentVolumeClaim", &name, enforced, &requests)
            {
                errors.push(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn list(pairs: &[(&str, &str)]) -> Resources {
        pairs.iter().map(|(k, v)| (k.to_string(), q(v))).collect()
    }

    #[test]
    fn messages_are_kubernetes() {
        assert_eq!(
            max_constraint(
                "Container",
                "cpu",
                q("500m"),
                &list(&[]),
                &list(&[("cpu", "1")])
            ),
            Err("maximum cpu usage per Container is 500m, but limit is 1".into())
        );
        assert_eq!(
            min_constraint(
                "Container",
                "memory",
                q("64Mi"),
                &list(&[("memory", "32Mi")]),
                &list(&[])
            ),
            Err("minimum memory usage per Container is 64Mi, but request is 32Mi".into())
        );
        assert_eq!(
            ratio_constraint(
                "Container",
                "cpu",
                q("2"),
                &list(&[("cpu", "250m")]),
                &list(&[("cpu", "1")])
            ),
            Err(
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"
                    .into()
            )
        );
        assert_eq!(
            ratio_constraint(
                "Container",
                "cpu",
                q("2"),
                &list(&[("cpu", "500m")]),
                &list(&[("cpu", "1")])
            ),
            Ok(())
        );
        assert_eq!(
            max_constraint("Pod", "memory", q("1Gi"), &list(&[]), &list(&[])),
            Err("maximum memory usage per Pod is 1Gi.  No limit is specified".into())
        );
    }

    #[test]
    fn pod_totals_count_sidecars_and_the_largest_init_container() {
        let pod = json!({"spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "100m"}}},
                {"resources": {"requests": {"cpu": "200m"}}}],
            "initContainers": [
                {"restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                {"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(pod_total(&pod, "requests"), list(&[("cpu", "1050m")]));
        assert_eq!(
            aggregate(vec!["a".into(), "b".into(), "a".into()]),
            Some("[a, b]".into())
        );
    }
}
