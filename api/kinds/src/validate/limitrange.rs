//! LimitRange rules, as Kubernetes' `ValidateLimitRange`: per item and resource, min ≤
//! defaultRequest ≤ default ≤ max, a ratio of at least 1 and within max/min, no defaults on a
//! `Pod` item, and a storage bound on a `PersistentVolumeClaim` item.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use skiff_meta::quantity::Quantity;

use super::{Errs, go_str};

const TYPES: &[&str] = &["Pod", "Container", "PersistentVolumeClaim"];

fn list(item: &Value, field: &str) -> BTreeMap<String, Quantity> {
    item.get(field)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str()?).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn limit_range(obj: &Value, errs: &mut Errs) {
    let items = obj
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        let at = format!("spec.limits[{i}]");
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind.is_empty() {
            errs.required(&format!("{at}.type"), "");
        } else if !TYPES.contains(&kind) && !kind.contains('/') {
            errs.not_supported(&format!("{at}.type"), kind, TYPES);
        }
        let min = list(item, "min");
        let max = list(item, "max");
        let default = list(item, "default");
        let default_request = list(item, "defaultRequest");
        let ratio = list(item, "maxLimitRequestRatio");
        if kind == "Pod" {
            if !default.is_empty() {
                errs.forbidden(
                    &format!("{at}.default"),
                    "may not be specified when `type` is 'Pod'",
                );
            }
            if !default_request.is_empty() {
                errs.forbidden(
                    &format!("{at}.defaultRequest"),
                    "may not be specified when `type` is 'Pod'",
                );
            }
        }
        if kind == "PersistentVolumeClaim"
            && !min.contains_key("storage")
            && !max.contains_key("storage")
        {
            errs.required(
                &format!("{at}.limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            );
        }
        let keys: BTreeSet<&String> = [&min, &max, &default, &default_request, &ratio]
            .iter()
            .flat_map(|m| m.keys())
            .collect();
        for k in keys {
            let show = |q: &Quantity| go_str(&q.to_string());
            let (mn, mx, d, dr, r) = (
                min.get(k),
                max.get(k),
                default.get(k),
                default_request.get(k),
                ratio.get(k),
            );
            if let (Some(mn), Some(mx)) = (mn, mx)
                && mn > mx
            {
                errs.invalid(
                    &format!("{at}.min[{k}]"),
                    &show(mn),
                    &format!("min value {mn} is greater than max value {mx}"),
                );
            }
            if let (Some(dr), Some(mn)) = (dr, mn)
                && mn > dr
            {
                errs.invalid(
                    &format!("{at}.defaultRequest[{k}]"),
                    &show(dr),
                    &format!("min value {mn} is greater than default request value {dr}"),
                );
            }
            if let (Some(dr), Some(mx)) = (dr, mx)
                && dr > mx
            {
                errs.invalid(
                    &format!("{at}.defaultRequest[{k}]"),
                    &show(dr),
                    &format!("default request value {dr} is greater than max value {mx}"),
                );
            }
            if let (Some(dr), Some(d)) = (dr, d)
                && dr > d
            {
                errs.invalid(
                    &format!("{at}.defaultRequest[{k}]"),
                    &show(dr),
                    &format!("default request value {dr} is greater than default limit value {d}"),
                );
            }
            if let (Some(d), Some(mn)) = (d, mn)
                && mn > d
            {
                errs.invalid(
                    &format!("{at}.default[{k}]"),
                    &show(mn),
                    &format!("min value {mn} is greater than default value {d}"),
                );
            }
            if let (Some(d), Some(mx)) = (d, mx)
                && d > mx
            {
                errs.invalid(
                    &format!("{at}.default[{k}]"),
                    &show(mx),
                    &format!("default value {d} is greater than max value {mx}"),
                );
            }
            if let Some(r) = r {
                if *r < Quantity::from_value(1) {
                    errs.invalid(
                        &format!("{at}.maxLimitRequestRatio[{k}]"),
                        &show(r),
                        &format!("ratio {r} is less than 1"),
                    );
                }
                if let (Some(mn), Some(mx)) = (mn, mx)
                    && !mn.is_zero()
                {
                    let max_ratio = mx.value() as f64 / mn.value() as f64;
                    if max_ratio < r.value() as f64 {
                        errs.invalid(
                            &format!("{at}.maxLimitRequestRatio[{k}]"),
                            &show(r),
                            &format!("ratio {r} is greater than max/min = {max_ratio:.6}"),
                        );
                    }
                }
            }
        }
    }
}
