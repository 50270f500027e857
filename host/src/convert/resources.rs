//! Resource requests and limits as exact quantities: the runtime's resources and the downward
//! API's `resourceFieldRef` values.

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
use skiff_meta::quantity::Quantity;
use skiff_runtime::Resources;

fn quantity_of(r: Option<&ResourceRequirements>, which: &str, res: &str) -> Option<String> {
    let r = r?;
    let map = if which == "limits" {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    };
    map?.get(res).map(|q| q.0.clone())
}

/// A `resourceFieldRef` value (`limits.cpu`, `requests.memory`, …) divided by `divisor`.
pub(super) fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, String> {
    let (which, res) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    if !matches!(which, "limits" | "requests") {
        return Err(format!("unsupported resource {resource:?}"));
    }
    let q = quantity_of(c.resources.as_ref(), which, res).or_else(|| {
        // Requests default to limits; an unset limit is the node's capacity, which kubelet
        // reports; "0" is close enough for a wasm pod without a limit.
        (which == "requests")
            .then(|| quantity_of(c.resources.as_ref(), "limits", res))
            .flatten()
    });
    let value = q
        .as_deref()
        .and_then(parse_quantity)
        .unwrap_or(Quantity::ZERO);
    let div = divisor
        .and_then(parse_quantity)
        .filter(|d| d.milli() > 0)
        .unwrap_or(Quantity::from_value(1));
    // Rounded up, as kubelet's ExtractContainerResourceValue.
    let ratio = value.milli().div_euclid(div.milli())
        + i128::from(value.milli().rem_euclid(div.milli()) != 0);
    Ok(ratio.to_string())
}

fn parse_quantity(q: &str) -> Option<Quantity> {
    Quantity::parse(q.trim()).ok()
}

/// Whole units (bytes) of a non-negative quantity, rounded up.
pub(super) fn bytes(q: &str) -> Option<u64> {
    parse_quantity(q)
        .filter(|q| q.milli() >= 0)
        .map(|q| u64::try_from(q.value()).unwrap_or(u64::MAX))
}

/// Millicores of a non-negative quantity, rounded up.
pub(super) fn millis(q: &str) -> Option<u64> {
    parse_quantity(q)
        .filter(|q| q.milli() >= 0)
        .map(|q| u64::try_from(q.milli()).unwrap_or(u64::MAX))
}

/// Resource requests and limits of a container.
pub(crate) fn resources(c: &Container) -> Resources {
    let r = c.resources.as_ref();
    let get = |which: &str, res: &str| quantity_of(r, which, res);
    let memory_limit = get("limits", "memory").and_then(|q| bytes(&q));
    let cpu_limit_millis = get("limits", "cpu").and_then(|q| millis(&q));
    Resources {
        memory_limit,
        memory_request: get("requests", "memory")
            .and_then(|q| bytes(&q))
            .or(memory_limit),
        cpu_limit_millis,
        cpu_request_millis: get("requests", "cpu")
            .and_then(|q| millis(&q))
            .or(cpu_limit_millis),
    }
}
