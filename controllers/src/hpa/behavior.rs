//! How far and how fast a HorizontalPodAutoscaler may move, as Kubernetes'
//! `normalizeDesiredReplicas` (no `behavior`: a scale-down stabilization window and a scale-up
//! limit of twice the replicas, at least 4) and `normalizeDesiredReplicasWithBehaviors`
//! (stabilization windows for each direction, `Pods`/`Percent` policies over their periods,
//! `selectPolicy` `Max`/`Min`/`Disabled`), then the min/max clamp. Each returns the replicas
//! with the `AbleToScale` and `ScalingLimited` conditions it implies.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerBehavior,
};

/// What one HorizontalPodAutoscaler remembers between syncs: its recent unstabilized
/// recommendations and its recent scale changes (for the rate policies).
#[derive(Debug, Clone, Default)]
pub struct History {
    recommendations: Vec<(i32, jiff::Timestamp)>,
    scale_up: Vec<(i32, jiff::Timestamp)>,
    scale_down: Vec<(i32, jiff::Timestamp)>,
}

/// A condition to set: type, status, reason, message.
pub type Cond = (&'static str, &'static str, &'static str, String);

/// The replicas to scale to, and the conditions that say why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    pub able_to_scale: Cond,
    pub scaling_limited: Cond,
}

/// Kubernetes' defaults of a scale-up rule.
fn default_up() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".into()),
        policies: Some(vec![policy("Pods", 4, 15), policy("Percent", 100, 15)]),
        tolerance: None,
    }
}

/// Kubernetes' defaults of a scale-down rule (the window comes from
/// `--horizontal-pod-autoscaler-downscale-stabilization`).
fn default_down() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: None,
        select_policy: Some("Max".into()),
        policies: Some(vec![policy("Percent", 100, 15)]),
        tolerance: None,
    }
}

fn policy(type_: &str, value: i32, period_seconds: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds,
    }
}

/// A rule with every unset field taken from `default` (Kubernetes' `copyHPAScalingRules`).
fn complete(rule: Option<&HPAScalingRules>, default: HPAScalingRules) -> HPAScalingRules {
    let Some(r) = rule else {
        return default;
    };
    HPAScalingRules {
        stabilization_window_seconds: r
            .stabilization_window_seconds
            .or(default.stabilization_window_seconds),
        select_policy: r.select_policy.clone().or(default.select_policy),
        policies: r.policies.clone().or(default.policies),
        tolerance: r.tolerance.clone(),
    }
}

fn ago(now: jiff::Timestamp, secs: i64) -> jiff::Timestamp {
    now.checked_sub(jiff::SignedDuration::from_secs(secs.max(0)))
        .unwrap_or(now)
}

fn able(reason: &'static str, message: &str) -> Cond {
    ("AbleToScale", "True", reason, message.to_string())
}

fn limited(clamped: bool, reason: &'static str, message: &str) -> Cond {
    let status = if clamped { "True" } else { "False" };
    ("ScalingLimited", status, reason, message.to_string())
}

const READY: (&str, &str) = ("ReadyForNewScale", "recommended size matches current size");
const DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const WITHIN: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);

/// The scale limits, bounds and stabilization of one sync.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub current: i32,
    pub desired: i32,
    pub min: i32,
    pub max: i32,
}

impl History {
    /// Kubernetes' `normalizeDesiredReplicas` (an HPA without `behavior`).
    pub fn normalize(
        &mut self,
        b: Bounds,
        downscale_window: Duration,
        now: jiff::Timestamp,
    ) -> Normalized {
        let cutoff = ago(
            now,
            i64::try_from(downscale_window.as_secs()).unwrap_or(i64::MAX),
        );
        let mut stabilized = b.desired;
        let mut old = None;
        for (i, (rec, at)) in self.recommendations.iter().enumerate() {
            if *at < cutoff {
                old = Some(i);
            } else if *rec > stabilized {
                stabilized = *rec;
            }
        }
        self.record(old, b.desired, now);
        let able_to_scale = if stabilized != b.desired {
            able(DOWN_STABILIZED.0, DOWN_STABILIZED.1)
        } else {
            able(READY.0, READY.1)
        };
        // Scale up at most to twice the replicas, at least 4.
        let up_limit = b.current.saturating_mul(2).max(4);
        let (max_allowed, max_reason) = if b.max > up_limit {
            (up_limit, UP_LIMIT)
        } else {
            (b.max, TOO_MANY)
        };
        let (replicas, reason) = if stabilized < b.min {
            (b.min, TOO_FEW)
        } else if stabilized > max_allowed {
            (max_allowed, max_reason)
        } else {
            (stabilized, WITHIN)
        };
        Normalized {
            replicas,
            able_to_scale,
            scaling_limited: limited(replicas != stabilized, reason.0, reason.1),
        }
    }

    /// Kubernetes' `normalizeDesiredReplicasWithBehaviors`.
    pub fn normalize_with_behavior(
        &mut self,
        behavior: &HorizontalPodAutoscalerBehavior,
        b: Bounds,
        downscale_window: Duration,
        now: jiff::Timestamp,
    ) -> Normalized {
        let up = complete(behavior.scale_up.as_ref(), default_up());
        let mut down = complete(behavior.scale_down.as_ref(), default_down());
        if down.stabilization_window_seconds.is_none() {
            down.stabilization_window_seconds =
                Some(i32::try_from(downscale_window.as_secs()).unwrap_or(i32::MAX));
        }
        // Stabilize: no lower than the lowest recommendation of the scale-up window, no higher
        // than the highest of the scale-down window.
        let up_cutoff = ago(now, i64::from(up.stabilization_window_seconds.unwrap_or(0)));
        let down_cutoff = ago(
            now,
            i64::from(down.stabilization_window_seconds.unwrap_or(0)),
        );
        let (mut up_rec, mut down_rec) = (b.desired, b.desired);
        let mut old = None;
        for (i, (rec, at)) in self.recommendations.iter().enumerate() {
            if *at > up_cutoff {
                up_rec = up_rec.min(*rec);
            }
            if *at > down_cutoff {
                down_rec = down_rec.max(*rec);
            }
            if *at < up_cutoff && *at < down_cutoff {
                old = Some(i);
            }
        }
        let stabilized = b.current.max(up_rec).min(down_rec);
        self.record(old, b.desired, now);
        let able_to_scale = if stabilized == b.desired {
            able(READY.0, READY.1)
        } else if b.desired >= b.current {
            able(UP_STABILIZED.0, UP_STABILIZED.1)
        } else {
            able(DOWN_STABILIZED.0, DOWN_STABILIZED.1)
        };
        let (replicas, reason) = self.rate_limit(&up, &down, b, stabilized, now);
        Normalized {
            replicas,
            able_to_scale,
            scaling_limited: limited(replicas != stabilized, reason.0, reason.1),
        }
    }

    /// Kubernetes' `convertDesiredReplicasWithBehaviorRate`.
    fn rate_limit(
        &self,
        up: &HPAScalingRules,
        down: &HPAScalingRules,
        b: Bounds,
        desired: i32,
        now: jiff::Timestamp,
    ) -> (i32, (&'static str, &'static str)) {
        if desired > b.current {
            let limit = self.scale_up_limit(b.current, up, now).max(b.current);
            let (max_allowed, reason) = if b.max > limit {
                (limit, UP_LIMIT)
            } else {
                (b.max, TOO_MANY)
            };
            if desired > max_allowed {
                return (max_allowed, reason);
            }
        } else if desired < b.current {
            let limit = self.scale_down_limit(b.current, down, now).min(b.current);
            let (min_allowed, reason) = if b.min < limit {
                (limit, DOWN_LIMIT)
            } else {
                (b.min, TOO_FEW)
            };
            if desired < min_allowed {
                return (min_allowed, reason);
            }
        }
        (desired, WITHIN)
    }

    /// Replicas added (`up`) or removed within the last `period_seconds`.
    fn changed_within(
        events: &[(i32, jiff::Timestamp)],
        period_seconds: i32,
        now: jiff::Timestamp,
    ) -> i32 {
        let cutoff = ago(now, i64::from(period_seconds));
        events
            .iter()
            .filter(|(_, at)| *at > cutoff)
            .fold(0i32, |a, (n, _)| a.saturating_add(*n))
    }

    fn period_start(&self, current: i32, period_seconds: i32, now: jiff::Timestamp) -> i32 {
        current - Self::changed_within(&self.scale_up, period_seconds, now)
            + Self::changed_within(&self.scale_down, period_seconds, now)
    }

    /// Kubernetes' `calculateScaleUpLimitWithScalingRules`.
    fn scale_up_limit(&self, current: i32, rules: &HPAScalingRules, now: jiff::Timestamp) -> i32 {
        let select = rules.select_policy.as_deref().unwrap_or("Max");
        if select == "Disabled" {
            return current;
        }
        let min_change = select == "Min";
        let mut result = if min_change { i32::MAX } else { i32::MIN };
        for p in rules.policies.iter().flatten() {
            let start = self.period_start(current, p.period_seconds, now);
            let proposed = match p.type_.as_str() {
                "Pods" => start.saturating_add(p.value),
                "Percent" => ceil_i32(f64::from(start) * (1.0 + f64::from(p.value) / 100.0)),
                _ => continue,
            };
            result = if min_change {
                result.min(proposed)
            } else {
                result.max(proposed)
            };
        }
        result
    }

    /// Kubernetes' `calculateScaleDownLimitWithBehaviors`.
    fn scale_down_limit(&self, current: i32, rules: &HPAScalingRules, now: jiff::Timestamp) -> i32 {
        let select = rules.select_policy.as_deref().unwrap_or("Max");
        if select == "Disabled" {
            return current;
        }
        let min_change = select == "Min";
        let mut result = if min_change { i32::MIN } else { i32::MAX };
        for p in rules.policies.iter().flatten() {
            let start = self.period_start(current, p.period_seconds, now);
            let proposed = match p.type_.as_str() {
                "Pods" => start.saturating_sub(p.value),
                // Truncated, as Go's int32 conversion.
                "Percent" => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
                _ => continue,
            };
            result = if min_change {
                result.max(proposed)
            } else {
                result.min(proposed)
            };
        }
        result
    }

    fn record(&mut self, old: Option<usize>, desired: i32, now: jiff::Timestamp) {
        match old.and_then(|i| self.recommendations.get_mut(i)) {
            Some(slot) => *slot = (desired, now),
            None => self.recommendations.push((desired, now)),
        }
    }

    /// Kubernetes' `storeScaleEvent`: remembers a scale from `prev` to `new` for the rate
    /// policies of `behavior` (none without one), dropping changes older than the longest
    /// period of that direction.
    pub fn store_scale_event(
        &mut self,
        behavior: Option<&HorizontalPodAutoscalerBehavior>,
        prev: i32,
        new: i32,
        now: jiff::Timestamp,
    ) {
        let Some(behavior) = behavior else {
            return;
        };
        let (events, rules, change) = if new > prev {
            (
                &mut self.scale_up,
                complete(behavior.scale_up.as_ref(), default_up()),
                new - prev,
            )
        } else {
            (
                &mut self.scale_down,
                complete(behavior.scale_down.as_ref(), default_down()),
                prev - new,
            )
        };
        let longest = rules
            .policies
            .iter()
            .flatten()
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0);
        let cutoff = ago(now, i64::from(longest));
        events.retain(|(_, at)| *at >= cutoff);
        events.push((change, now));
    }
}

fn ceil_i32(x: f64) -> i32 {
    let c = x.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        c as i32
    }
}
