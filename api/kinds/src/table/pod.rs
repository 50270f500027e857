//! The pod row: READY, STATUS (as kubectl computes it) and RESTARTS.

use serde_json::{Value, json};

use super::printers::{NONE, age, arr, i, name, or_none, s};
use super::time::{human_duration, parse, seconds_between};

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

pub(super) fn pod(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
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
