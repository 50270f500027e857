//! Workload validation: Deployments, ReplicaSets, DaemonSets, StatefulSets, Jobs and CronJobs.

use serde_json::Value;

use super::pod;
use super::{Errs, arr, go_str, go_string_map, go_value, s};

/// Whether a label selector (`matchLabels`/`matchExpressions`) selects `labels`; an invalid
/// selector selects nothing.
pub fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let labels = labels.and_then(Value::as_object);
    skiff_meta::selector::LabelSelector::from_json(selector).is_ok_and(|sel| {
        sel.matches_with(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    })
}

/// A label selector rendered like Go's `%#v` of `v1.LabelSelector`.
pub(crate) fn go_selector(sel: &Value) -> String {
    let exprs = arr(sel, "/matchExpressions");
    let exprs = if exprs.is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        let items: Vec<String> = exprs
            .iter()
            .map(|e| {
                let vals: Vec<String> = arr(e, "/values")
                    .iter()
                    .map(|v| go_str(v.as_str().unwrap_or_default()))
                    .collect();
                format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:[]string{{{}}}}}",
                    go_str(s(e, "/key")),
                    go_str(s(e, "/operator")),
                    vals.join(", ")
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(sel.get("matchLabels"))
    )
}

fn selector_is_empty(sel: &Value) -> bool {
    sel.get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
        && arr(sel, "/matchExpressions").is_empty()
}

/// Validates `spec.selector` and that it selects the template's labels.
fn selector_and_template(spec: &Value, path: &str, kind_word: &str, errs: &mut Errs) {
    let sel_path = format!("{path}.selector");
    match spec.get("selector") {
        None | Some(Value::Null) => errs.required(&sel_path, ""),
        Some(sel) => {
            super::meta::labels(
                sel.get("matchLabels"),
                &format!("{sel_path}.matchLabels"),
                errs,
            );
            for (i, e) in arr(sel, "/matchExpressions").iter().enumerate() {
                let f = format!("{sel_path}.matchExpressions[{i}]");
                let op = s(e, "/operator");
                let n = arr(e, "/values").len();
                match op {
                    "In" | "NotIn" if n == 0 => errs.required(
                        &format!("{f}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ),
                    "Exists" | "DoesNotExist" if n > 0 => errs.forbidden(
                        &format!("{f}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ),
                    "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                    other => errs.invalid(
                        &format!("{f}.operator"),
                        &go_str(other),
                        "not a valid selector operator",
                    ),
                }
            }
            if selector_is_empty(sel) {
                errs.invalid(
                    &sel_path,
                    &go_selector(sel),
                    &format!("empty selector is invalid for {kind_word}"),
                );
            } else {
                let labels = spec.pointer("/template/metadata/labels");
                if !selector_matches(sel, labels) {
                    errs.invalid(
                        &format!("{path}.template.metadata.labels"),
                        &go_string_map(labels),
                        "`selector` does not match template `labels`",
                    );
                }
            }
        }
    }
}

fn template_restart_always(spec: &Value, path: &str, errs: &mut Errs) {
    let rp = s(spec, "/template/spec/restartPolicy");
    if !rp.is_empty() && rp != "Always" {
        errs.not_supported(
            &format!("{path}.template.spec.restartPolicy"),
            rp,
            &["Always"],
        );
    }
    if spec
        .pointer("/template/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        errs.forbidden(
            &format!("{path}.template.spec.activeDeadlineSeconds"),
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        );
    }
}

fn selector_immutable(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old {
        let (a, b) = (obj.pointer("/spec/selector"), old.pointer("/spec/selector"));
        if a != b {
            errs.invalid(
                "spec.selector",
                &go_selector(a.unwrap_or(&Value::Null)),
                "field is immutable",
            );
        }
    }
}

pub(super) fn deployment(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    errs.non_negative(obj, "/spec/replicas", "spec.replicas");
    selector_and_template(spec, "spec", "deployment", errs);
    pod::template(spec.get("template"), "spec.template", errs);
    template_restart_always(spec, "spec", errs);
    let st = s(spec, "/strategy/type");
    match st {
        "" | "RollingUpdate" => {
            let ru = spec.pointer("/strategy/rollingUpdate");
            let zero = |v: Option<&Value>| match v {
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s == "0%" || s == "0",
                _ => false,
            };
            if let Some(ru) = ru {
                for f in ["maxUnavailable", "maxSurge"] {
                    if let Some(v) = ru.get(f) {
                        intstr_percent(v, &format!("spec.strategy.rollingUpdate.{f}"), errs);
                    }
                }
                if zero(ru.get("maxUnavailable")) && zero(ru.get("maxSurge")) {
                    errs.invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        &go_value(ru.get("maxUnavailable").unwrap_or(&Value::Null)),
                        "may not be 0 when `maxSurge` is 0",
                    );
                }
            }
        }
        "Recreate" => {
            if spec
                .pointer("/strategy/rollingUpdate")
                .is_some_and(|v| !v.is_null())
            {
                errs.forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        other => errs.not_supported("spec.strategy.type", other, &["Recreate", "RollingUpdate"]),
    }
    errs.non_negative(
        obj,
        "/spec/revisionHistoryLimit",
        "spec.revisionHistoryLimit",
    );
    errs.non_negative(obj, "/spec/minReadySeconds", "spec.minReadySeconds");
    if let Some(pds) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
        let mrs = spec
            .get("minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if pds < 0 {
            errs.invalid(
                "spec.progressDeadlineSeconds",
                &pds.to_string(),
                "must be greater than or equal to 0",
            );
        } else if pds <= mrs {
            errs.invalid(
                "spec.progressDeadlineSeconds",
                &pds.to_string(),
                "must be greater than minReadySeconds",
            );
        }
    }
    selector_immutable(obj, old, errs);
}

fn intstr_percent(v: &Value, field: &str, errs: &mut Errs) {
    match v {
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => {
            errs.invalid(field, &n.to_string(), "must be greater than or equal to 0");
        }
        Value::String(p) => {
            let num = p.strip_suffix('%').and_then(|n| n.parse::<i64>().ok());
            match num {
                None => errs.invalid(field, &go_str(p), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"),
                Some(n) if n > 100 => errs.invalid(field, &go_str(p), "must not be greater than 100%"),
                _ => {}
            }
        }
        _ => {}
    }
}

pub(super) fn replica_set(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    errs.non_negative(obj, "/spec/replicas", "spec.replicas");
    errs.non_negative(obj, "/spec/minReadySeconds", "spec.minReadySeconds");
    selector_and_template(spec, "spec", "replicaset", errs);
    pod::template(spec.get("template"), "spec.template", errs);
    template_restart_always(spec, "spec", errs);
    selector_immutable(obj, old, errs);
}

/// Kubernetes' `ValidateReplicationControllerSpec`: an equality selector (a plain map) that is
/// not empty and matches the template's labels; the selector may change on update.
pub(super) fn replication_controller(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    errs.non_negative(obj, "/spec/minReadySeconds", "spec.minReadySeconds");
    let selector = spec.get("selector").and_then(Value::as_object);
    match selector.filter(|m| !m.is_empty()) {
        None => errs.required("spec.selector", ""),
        Some(_) => super::meta::labels(spec.get("selector"), "spec.selector", errs),
    }
    errs.non_negative(obj, "/spec/replicas", "spec.replicas");
    match spec.get("template").filter(|t| !t.is_null()) {
        None => errs.required("spec.template", ""),
        Some(template) => {
            let labels = template.pointer("/metadata/labels");
            if let Some(sel) = selector.filter(|m| !m.is_empty()) {
                let matches = sel.iter().all(|(k, v)| {
                    labels
                        .and_then(|l| l.get(k))
                        .is_some_and(|l| Some(l) == Some(v))
                });
                if !matches {
                    errs.invalid(
                        "spec.template.metadata.labels",
                        &go_string_map(labels),
                        "`selector` does not match template `labels`",
                    );
                }
            }
            pod::template(Some(template), "spec.template", errs);
            let rp = s(template, "/spec/restartPolicy");
            if rp != "Always" {
                errs.not_supported("spec.template.spec.restartPolicy", rp, &["Always"]);
            }
            if template
                .pointer("/spec/activeDeadlineSeconds")
                .is_some_and(|v| !v.is_null())
            {
                errs.forbidden(
                    "spec.template.spec.activeDeadlineSeconds",
                    "activeDeadlineSeconds in ReplicationController is not Supported",
                );
            }
        }
    }
}

pub(super) fn daemon_set(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    selector_and_template(spec, "spec", "daemonset", errs);
    pod::template(spec.get("template"), "spec.template", errs);
    template_restart_always(spec, "spec", errs);
    errs.non_negative(obj, "/spec/minReadySeconds", "spec.minReadySeconds");
    errs.non_negative(
        obj,
        "/spec/revisionHistoryLimit",
        "spec.revisionHistoryLimit",
    );
    let t = s(spec, "/updateStrategy/type");
    if !t.is_empty() && t != "RollingUpdate" && t != "OnDelete" {
        errs.not_supported(
            "spec.updateStrategy.type",
            t,
            &["OnDelete", "RollingUpdate"],
        );
    }
    selector_immutable(obj, old, errs);
}

/// The pod template with a volume for each of `volumeClaimTemplates`, as the StatefulSet
/// controller adds them to its pods.
fn with_claim_volumes(spec: &Value) -> Option<Value> {
    let mut template = spec.get("template")?.clone();
    let claims: Vec<Value> = arr(spec, "/volumeClaimTemplates")
        .iter()
        .map(|c| s(c, "/metadata/name"))
        .filter(|n| !n.is_empty())
        .map(|n| serde_json::json!({"name": n, "persistentVolumeClaim": {"claimName": n}}))
        .collect();
    if !claims.is_empty()
        && let Some(pod_spec) = template.get_mut("spec").and_then(Value::as_object_mut)
    {
        let volumes = pod_spec
            .entry("volumes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = volumes.as_array_mut() {
            list.extend(claims);
        }
    }
    Some(template)
}

pub(super) fn stateful_set(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    errs.non_negative(obj, "/spec/replicas", "spec.replicas");
    selector_and_template(spec, "spec", "statefulset", errs);
    // Containers may mount the volumes the claim templates will provide.
    let template = with_claim_volumes(spec);
    pod::template(template.as_ref(), "spec.template", errs);
    template_restart_always(spec, "spec", errs);
    let pmp = s(spec, "/podManagementPolicy");
    if !pmp.is_empty() && pmp != "OrderedReady" && pmp != "Parallel" {
        errs.not_supported(
            "spec.podManagementPolicy",
            pmp,
            &["OrderedReady", "Parallel"],
        );
    }
    let t = s(spec, "/updateStrategy/type");
    if !t.is_empty() && t != "RollingUpdate" && t != "OnDelete" {
        errs.not_supported(
            "spec.updateStrategy.type",
            t,
            &["OnDelete", "RollingUpdate"],
        );
    }
    if let Some(old) = old {
        let strip = |v: &Value| {
            let mut v = v.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(m) = v.as_object_mut() {
                for f in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                    "revisionHistoryLimit",
                ] {
                    m.remove(f);
                }
            }
            v
        };
        if strip(obj) != strip(old) {
            errs.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden");
        }
    }
}

/// Validates a job spec at `path` (`spec` or `spec.jobTemplate.spec`).
fn job_spec(spec: &Value, path: &str, check_selector: bool, errs: &mut Errs) {
    for f in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        if let Some(n) = spec.get(f).and_then(Value::as_i64)
            && n < 0
        {
            errs.invalid(
                &format!("{path}.{f}"),
                &n.to_string(),
                "must be greater than or equal to 0",
            );
        }
    }
    let cm = s(spec, "/completionMode");
    if !cm.is_empty() && cm != "NonIndexed" && cm != "Indexed" {
        errs.not_supported(
            &format!("{path}.completionMode"),
            cm,
            &["NonIndexed", "Indexed"],
        );
    }
    if cm == "Indexed" && spec.get("completions").is_none_or(Value::is_null) {
        errs.required(
            &format!("{path}.completions"),
            "when completion mode is Indexed",
        );
    }
    if check_selector {
        selector_and_template(spec, path, "job", errs);
    }
    pod::template(spec.get("template"), &format!("{path}.template"), errs);
    let rp = s(spec, "/template/spec/restartPolicy");
    if rp != "OnFailure" && rp != "Never" {
        let f = format!("{path}.template.spec.restartPolicy");
        if rp.is_empty() {
            errs.required(&f, "valid values: \"OnFailure\", \"Never\"");
        } else {
            errs.not_supported(&f, rp, &["OnFailure", "Never"]);
        }
    }
}

pub(super) fn job(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let name = s(obj, "/metadata/name");
    if name.len() > 63 {
        errs.invalid(
            "metadata.name",
            &go_str(name),
            "must be no more than 63 characters",
        );
    }
    job_spec(
        spec,
        "spec",
        spec.get("selector").is_some()
            || spec.get("manualSelector").and_then(Value::as_bool) == Some(true),
        errs,
    );
    if let Some(old) = old {
        selector_immutable(obj, Some(old), errs);
        if old.pointer("/spec/completions") != obj.pointer("/spec/completions")
            && s(obj, "/spec/completionMode") != "Indexed"
        {
            errs.invalid(
                "spec.completions",
                &go_value(obj.pointer("/spec/completions").unwrap_or(&Value::Null)),
                "field is immutable",
            );
        }
        if old.pointer("/spec/completionMode") != obj.pointer("/spec/completionMode") {
            errs.invalid(
                "spec.completionMode",
                &go_value(obj.pointer("/spec/completionMode").unwrap_or(&Value::Null)),
                "field is immutable",
            );
        }
        let suspended = old.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        let strip = |v: Option<&Value>| {
            let mut v = v.cloned().unwrap_or(Value::Null);
            if suspended && let Some(m) = v.pointer_mut("/spec").and_then(Value::as_object_mut) {
                for f in ["nodeSelector", "affinity", "tolerations", "schedulingGates"] {
                    m.remove(f);
                }
            }
            if let Some(m) = v.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                m.remove("annotations");
                m.remove("labels");
            }
            v
        };
        if strip(obj.pointer("/spec/template")) != strip(old.pointer("/spec/template")) {
            errs.invalid(
                "spec.template",
                "core.PodTemplateSpec{...}",
                "field is immutable",
            );
        }
    }
}

pub(super) fn cron_job(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let name = s(obj, "/metadata/name");
    if name.len() > 52 {
        errs.invalid(
            "metadata.name",
            &go_str(name),
            "must be no more than 52 characters",
        );
    }
    let schedule = s(spec, "/schedule");
    if schedule.is_empty() {
        errs.required("spec.schedule", "");
    } else {
        if let Err(e) = super::cron::validate_schedule(schedule) {
            errs.invalid("spec.schedule", &go_str(schedule), &e);
        }
        let had_tz = old.is_some_and(|o| s(o, "/spec/schedule").contains("TZ"));
        let has_tz_field = spec.get("timeZone").is_some_and(|v| !v.is_null());
        if schedule.contains("TZ") && had_tz && has_tz_field {
            errs.invalid(
                "spec.schedule",
                &go_str(schedule),
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            );
        }
        if schedule.contains("TZ") && !had_tz {
            errs.invalid(
                "spec.schedule",
                &go_str(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            );
        }
    }
    let tz = s(spec, "/timeZone");
    if spec.get("timeZone").is_some_and(|v| !v.is_null()) && !super::cron::valid_time_zone_name(tz)
    {
        errs.invalid(
            "spec.timeZone",
            &go_str(tz),
            &format!("unknown time zone {tz}"),
        );
    }
    let cp = s(spec, "/concurrencyPolicy");
    if !cp.is_empty() && !["Allow", "Forbid", "Replace"].contains(&cp) {
        errs.not_supported(
            "spec.concurrencyPolicy",
            cp,
            &["Allow", "Forbid", "Replace"],
        );
    }
    for f in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        errs.non_negative(obj, &format!("/spec/{f}"), &format!("spec.{f}"));
    }
    match spec.pointer("/jobTemplate/spec") {
        Some(js) => job_spec(
            js,
            "spec.jobTemplate.spec",
            js.get("selector").is_some(),
            errs,
        ),
        None => errs.required("spec.jobTemplate.spec.template", ""),
    }
}
