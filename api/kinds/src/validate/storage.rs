//! Validation of the storage kinds as Kubernetes' `ValidateStorageClass`,
//! `ValidatePersistentVolume` and `ValidatePersistentVolumeClaim` (and their updates): classes,
//! volumes with exactly one source, claims whose spec is fixed once created.

use serde_json::Value;
use skiff_meta::quantity::Quantity;

use super::names;
use super::{Errs, arr, go_str, go_value, s};

/// Kubernetes' `maxProvisionerParameterLen`: at most this many class parameters.
const MAX_PARAMETERS: usize = 512;
/// Kubernetes' `maxProvisionerParameterSize`: at most this many bytes of parameter keys and values.
const MAX_PARAMETERS_SIZE: usize = 256 * 1024;

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

/// The volume sources of a PersistentVolume's spec, exactly one of which must be set.
const PV_SOURCES: &[&str] = &[
    "hostPath",
    "local",
    "nfs",
    "csi",
    "iscsi",
    "fc",
    "cephfs",
    "rbd",
    "glusterfs",
    "azureDisk",
    "azureFile",
    "awsElasticBlockStore",
    "gcePersistentDisk",
    "cinder",
    "flexVolume",
    "flocker",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

fn present<'a>(obj: &'a Value, ptr: &str) -> Option<&'a Value> {
    obj.pointer(ptr).filter(|v| !v.is_null())
}

/// A StorageClass, and on update the fields Kubernetes keeps fixed.
pub(super) fn storage_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let provisioner = s(obj, "/provisioner");
    if provisioner.is_empty() {
        errs.required("provisioner", "");
    } else {
        errs.each(
            "provisioner",
            &provisioner.to_lowercase(),
            names::qualified_name(&provisioner.to_lowercase()),
        );
    }
    if let Some(params) = present(obj, "/parameters").and_then(Value::as_object) {
        if params.len() > MAX_PARAMETERS {
            errs.too_long("parameters", MAX_PARAMETERS);
        }
        let mut size = 0;
        for (k, v) in params {
            if k.is_empty() {
                errs.invalid("parameters", "\"\"", "field can not be empty.");
            }
            size += k.len() + v.as_str().map_or(0, str::len);
        }
        if size > MAX_PARAMETERS_SIZE {
            errs.too_long("parameters", MAX_PARAMETERS_SIZE);
        }
    }
    let policy = s(obj, "/reclaimPolicy");
    if !["Delete", "Retain"].contains(&policy) {
        errs.not_supported("reclaimPolicy", policy, &["Delete", "Retain"]);
    }
    let mode = s(obj, "/volumeBindingMode");
    if mode.is_empty() {
        errs.required("volumeBindingMode", "");
    } else if !["Immediate", "WaitForFirstConsumer"].contains(&mode) {
        errs.not_supported(
            "volumeBindingMode",
            mode,
            &["Immediate", "WaitForFirstConsumer"],
        );
    }
    allowed_topologies(obj, errs);
    let Some(old) = old else { return };
    if present(obj, "/parameters") != present(old, "/parameters") {
        errs.forbidden("parameters", "updates to parameters are forbidden.");
    }
    if provisioner != s(old, "/provisioner") {
        errs.forbidden("provisioner", "updates to provisioner are forbidden.");
    }
    if policy != s(old, "/reclaimPolicy") {
        errs.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden.");
    }
    if mode != s(old, "/volumeBindingMode") {
        errs.invalid("volumeBindingMode", &go_str(mode), "field is immutable");
    }
}

fn allowed_topologies(obj: &Value, errs: &mut Errs) {
    let mut seen: Vec<Vec<(String, Vec<String>)>> = Vec::new();
    for (i, term) in arr(obj, "/allowedTopologies").iter().enumerate() {
        let path = format!("allowedTopologies[{i}]");
        let exprs = arr(term, "/matchLabelExpressions");
        if exprs.is_empty() {
            errs.required(
                &format!("{path}.matchLabelExpressions"),
                "must have at least one label expression",
            );
        }
        let mut keys: Vec<(String, Vec<String>)> = Vec::new();
        for (j, req) in exprs.iter().enumerate() {
            let rpath = format!("{path}.matchLabelExpressions[{j}]");
            let key = s(req, "/key");
            errs.each(&format!("{rpath}.key"), key, names::qualified_name(key));
            let values = arr(req, "/values");
            if values.is_empty() {
                errs.required(
                    &format!("{rpath}.values"),
                    "must specify as least one value",
                );
            }
            let mut vs: Vec<String> = Vec::new();
            for (k, v) in values.iter().enumerate() {
                let v = v.as_str().unwrap_or_default().to_string();
                if vs.contains(&v) {
                    errs.duplicate(&format!("{rpath}.values[{k}]"), &go_str(&v));
                }
                vs.push(v);
            }
            if keys.iter().any(|(k, _)| k == key) {
                errs.duplicate(&format!("{rpath}.key"), &go_str(key));
            }
            vs.sort();
            keys.push((key.to_string(), vs));
        }
        keys.sort();
        if seen.contains(&keys) {
            errs.duplicate(&format!("{path}.matchLabelExpressions"), "\"\"");
        }
        seen.push(keys);
    }
}

fn access_modes(obj: &Value, detail: &str, errs: &mut Errs) {
    let modes = arr(obj, "/spec/accessModes");
    if modes.is_empty() {
        errs.required("spec.accessModes", detail);
    }
    let mut pod_only = false;
    for m in modes {
        let m = m.as_str().unwrap_or_default();
        if !ACCESS_MODES.contains(&m) {
            errs.not_supported("spec.accessModes", m, ACCESS_MODES);
        }
        pod_only |= m == "ReadWriteOncePod";
    }
    if pod_only && modes.len() > 1 {
        errs.forbidden(
            "spec.accessModes",
            "may not use ReadWriteOncePod with other access modes",
        );
    }
}

fn volume_mode(obj: &Value, errs: &mut Errs) {
    if let Some(mode) = present(obj, "/spec/volumeMode") {
        let mode = mode.as_str().unwrap_or_default();
        if !VOLUME_MODES.contains(&mode) {
            errs.not_supported("spec.volumeMode", mode, VOLUME_MODES);
        }
    }
}

fn class_name(obj: &Value, errs: &mut Errs) {
    let class = s(obj, "/spec/storageClassName");
    if !class.is_empty() {
        errs.each(
            "spec.storageClassName",
            class,
            names::dns1123_subdomain(class),
        );
    }
}

/// A quantity that must parse and be above zero, as `ValidatePositiveQuantityValue`.
fn positive_quantity(value: &Value, field: &str, errs: &mut Errs) -> Option<Quantity> {
    let text = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string);
    match Quantity::parse(&text) {
        Err(_) => {
            errs.invalid(
                field,
                &go_value(value),
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            );
            None
        }
        Ok(q) if q <= Quantity::ZERO => {
            errs.invalid(field, &go_str(&text), "must be greater than zero");
            None
        }
        Ok(q) => Some(q),
    }
}

fn path_no_backsteps(path: &str, field: &str, errs: &mut Errs) {
    if path.split('/').any(|p| p == "..") {
        errs.invalid(field, &go_str(path), "must not contain '..'");
    }
}

/// The request of a claim's `spec.resources.requests.storage`, if it parses.
fn requested(obj: &Value) -> Option<Quantity> {
    let v = present(obj, "/spec/resources/requests/storage")?;
    Quantity::parse(v.as_str()?).ok()
}

/// A PersistentVolumeClaim; on update, its spec may only change in `volumeName` (set once), a
/// storage request of a bound claim (never below its recorded capacity), a class set on a claim
/// that had none, and `volumeAttributesClassName`.
pub(super) fn pvc(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    access_modes(obj, "at least 1 access mode is required", errs);
    match present(obj, "/spec/resources/requests/storage") {
        None => errs.required("spec.resources[storage]", ""),
        Some(v) => {
            positive_quantity(v, "spec.resources[storage]", errs);
        }
    }
    if let Some(sel) = present(obj, "/spec/selector")
        && let Err(e) = skiff_meta::selector::LabelSelector::from_json(sel)
    {
        errs.invalid("spec.selector", &go_value(sel), &e.to_string());
    }
    class_name(obj, errs);
    volume_mode(obj, errs);
    let Some(old) = old else { return };
    let bound = s(obj, "/status/phase") == "Bound" || s(old, "/status/phase") == "Bound";
    // a claim made without a class may be given one later (Kubernetes' retroactive default)
    let class_given = present(old, "/spec/storageClassName").is_none()
        && !s(obj, "/spec/storageClassName").is_empty();
    let strip = |v: &Value| {
        let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(m) = spec.as_object_mut() {
            m.remove("volumeAttributesClassName");
            if s(old, "/spec/volumeName").is_empty() {
                m.remove("volumeName");
            }
            if class_given {
                m.remove("storageClassName");
            }
            if bound
                && let Some(req) = m
                    .get_mut("resources")
                    .and_then(|r| r.get_mut("requests"))
                    .and_then(Value::as_object_mut)
            {
                req.remove("storage");
            }
            // an emptied map and an absent one are the same, as Go's semantic equality has it
            if m.get("resources")
                .and_then(|r| r.get("requests"))
                .and_then(Value::as_object)
                .is_some_and(|r| r.is_empty())
                && let Some(r) = m.get_mut("resources").and_then(Value::as_object_mut)
            {
                r.remove("requests");
            }
            if m.get("resources")
                .and_then(Value::as_object)
                .is_some_and(|r| r.is_empty())
            {
                m.remove("resources");
            }
        }
        spec
    };
    if strip(obj) != strip(old) {
        errs.forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        );
    }
    if bound
        && let (Some(new), Some(prev)) = (requested(obj), requested(old))
        && new < prev
    {
        let capacity = present(old, "/status/capacity/storage")
            .and_then(Value::as_str)
            .and_then(|c| Quantity::parse(c).ok());
        if capacity.is_none_or(|c| new <= c) {
            errs.forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            );
        }
    }
}

/// A PersistentVolume; on update its volume source and volume mode are fixed.
pub(super) fn pv(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    access_modes(obj, "", errs);
    match present(obj, "/spec/capacity").and_then(Value::as_object) {
        None => errs.required("spec.capacity", ""),
        Some(cap) if cap.is_empty() => errs.required("spec.capacity", ""),
        Some(cap) => {
            if !cap.contains_key("storage") || cap.len() > 1 {
                let mut names: Vec<&str> = cap.keys().map(String::as_str).collect();
                names.sort_unstable();
                errs.not_supported("spec.capacity", &names.join(","), &["storage"]);
            }
            for (name, q) in cap {
                positive_quantity(q, &format!("spec.capacity[{name}]"), errs);
            }
        }
    }
    let set: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|k| present(obj, &format!("/spec/{k}")).is_some())
        .collect();
    match set.len() {
        0 => errs.required("spec", "must specify a volume type"),
        1 => {}
        _ => errs.forbidden("spec", "may not specify more than 1 volume type"),
    }
    if set.contains(&"hostPath") {
        let path = s(obj, "/spec/hostPath/path");
        if path.is_empty() {
            errs.required("spec.hostPath.path", "");
        }
        path_no_backsteps(path, "spec.hostPath.path", errs);
        let ty = s(obj, "/spec/hostPath/type");
        if !HOST_PATH_TYPES.contains(&ty) {
            errs.not_supported("spec.hostPath.type", ty, &HOST_PATH_TYPES[1..]);
        }
    }
    if set.contains(&"local") {
        let path = s(obj, "/spec/local/path");
        if path.is_empty() {
            errs.required("spec.local.path", "");
        }
        path_no_backsteps(path, "spec.local.path", errs);
        if present(obj, "/spec/nodeAffinity").is_none() {
            errs.required("spec.nodeAffinity", "Local volume requires node affinity");
        }
    }
    if let Some(affinity) = present(obj, "/spec/nodeAffinity") {
        match present(affinity, "/required") {
            None => errs.required("spec.nodeAffinity.required", ""),
            Some(req) if arr(req, "/nodeSelectorTerms").is_empty() => errs.required(
                "spec.nodeAffinity.required.nodeSelectorTerms",
                "must have at least one node selector term",
            ),
            Some(_) => {}
        }
    }
    let policy = s(obj, "/spec/persistentVolumeReclaimPolicy");
    if !["Delete", "Recycle", "Retain"].contains(&policy) {
        errs.not_supported(
            "spec.persistentVolumeReclaimPolicy",
            policy,
            &["Delete", "Recycle", "Retain"],
        );
    }
    class_name(obj, errs);
    volume_mode(obj, errs);
    if let Some(claim) = present(obj, "/spec/claimRef")
        && s(claim, "/name").is_empty()
    {
        errs.required("spec.claimRef.name", "");
    }
    let Some(old) = old else { return };
    let source = |v: &Value| -> Vec<Option<Value>> {
        PV_SOURCES
            .iter()
            .map(|k| present(v, &format!("/spec/{k}")).cloned())
            .collect()
    };
    if source(obj) != source(old) {
        errs.forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        );
    }
    let (mode, old_mode) = (s(obj, "/spec/volumeMode"), s(old, "/spec/volumeMode"));
    if mode != old_mode {
        errs.invalid("spec.volumeMode", &go_str(mode), "field is immutable");
    }
    if let Some(prev) = present(old, "/spec/nodeAffinity")
        && present(obj, "/spec/nodeAffinity") != Some(prev)
    {
        errs.invalid(
            "spec.nodeAffinity",
            &go_value(present(obj, "/spec/nodeAffinity").unwrap_or(&Value::Null)),
            "field is immutable",
        );
    }
}
