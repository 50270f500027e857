#!/usr/bin/env python3
"""Generates ../src/schema/table.rs: patch metadata and the type graph of the built-in kinds.

Input: the `_definitions.json` of the Kubernetes OpenAPI (v2 definitions converted to JSON schema)
as shipped by the PyPI package `kubernetes-validate`, which keeps the x-kubernetes-* extensions:

    pip download --no-deps -d /tmp/kv kubernetes-validate==1.37.0
    unzip -q /tmp/kv/kubernetes_validate-*.whl -d /tmp/kv
    python3 gen/gen_schema.py \
        /tmp/kv/kubernetes_validate/kubernetes-json-schema/v1.35.0-local/_definitions.json \
        > src/schema/table.rs

Only types reachable from ROOTS are emitted. Run from api/patch/.
"""
import json
import re
import sys

ROOTS = [
    "io.k8s.api.core.v1.Namespace",
    "io.k8s.api.core.v1.Pod",
    "io.k8s.api.core.v1.PodTemplate",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.Endpoints",
    "io.k8s.api.core.v1.ConfigMap",
    "io.k8s.api.core.v1.Secret",
    "io.k8s.api.core.v1.Node",
    "io.k8s.api.core.v1.Event",
    "io.k8s.api.core.v1.ServiceAccount",
    "io.k8s.api.core.v1.PersistentVolume",
    "io.k8s.api.core.v1.PersistentVolumeClaim",
    "io.k8s.api.core.v1.ResourceQuota",
    "io.k8s.api.core.v1.LimitRange",
    "io.k8s.api.core.v1.ReplicationController",
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.apps.v1.ReplicaSet",
    "io.k8s.api.apps.v1.DaemonSet",
    "io.k8s.api.apps.v1.StatefulSet",
    "io.k8s.api.apps.v1.ControllerRevision",
    "io.k8s.api.batch.v1.Job",
    "io.k8s.api.batch.v1.CronJob",
    "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler",
    "io.k8s.api.autoscaling.v1.Scale",
    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
    "io.k8s.api.networking.v1.Ingress",
    "io.k8s.api.networking.v1.IngressClass",
    "io.k8s.api.networking.v1.NetworkPolicy",
    "io.k8s.api.storage.v1.StorageClass",
    "io.k8s.api.node.v1.RuntimeClass",
    "io.k8s.api.scheduling.v1.PriorityClass",
    "io.k8s.api.coordination.v1.Lease",
    "io.k8s.api.discovery.v1.EndpointSlice",
    "io.k8s.api.policy.v1.PodDisruptionBudget",
    "io.k8s.api.rbac.v1.Role",
    "io.k8s.api.rbac.v1.ClusterRole",
    "io.k8s.api.rbac.v1.RoleBinding",
    "io.k8s.api.rbac.v1.ClusterRoleBinding",
    "io.k8s.api.events.v1.Event",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
]

DEFS = {}


def ref_name(schema):
    ref = schema.get("$ref")
    if ref is None:
        return None
    return ref.rsplit("/", 1)[1]


def types_of(schema):
    t = schema.get("type")
    if t is None:
        return set()
    if isinstance(t, str):
        return {t}
    return set(t) - {"null"}


def is_struct(name):
    d = DEFS[name]
    return "object" in types_of(d) and "properties" in d


def is_untyped_object(name):
    d = DEFS[name]
    return "object" in types_of(d) and "properties" not in d and "additionalProperties" not in d


def value_shape(schema):
    """Returns (kind, type_name) for a schema of a value: S scalar, O object, M map, L list."""
    name = ref_name(schema)
    if name is not None:
        if is_struct(name):
            return ("O", name)
        if is_untyped_object(name):
            return ("O", None)
        return ("S", None)
    t = types_of(schema)
    if "array" in t:
        return ("L", None)
    if "object" in t:
        if "additionalProperties" in schema:
            return ("M", None)
        return ("O", None)
    return ("S", None)


def field_info(schema):
    kind, tname = value_shape(schema)
    info = {
        "kind": kind,
        "type": tname,
        "strategy": schema.get("x-kubernetes-patch-strategy", ""),
        "merge_key": schema.get("x-kubernetes-patch-merge-key"),
        "list_type": schema.get("x-kubernetes-list-type"),
        "map_keys": schema.get("x-kubernetes-list-map-keys", []),
        "map_type": schema.get("x-kubernetes-map-type"),
    }
    if kind == "L":
        ek, et = value_shape(schema.get("items", {}))
        if ek in ("L", "M"):
            sys.stderr.write(f"warning: list of {ek} treated as opaque elements\n")
        info["type"] = et
    elif kind == "M":
        vk, vt = value_shape(schema.get("additionalProperties") or {})
        if vk in ("L", "M"):
            sys.stderr.write(f"warning: map of {vk} treated as opaque values\n")
        info["type"] = vt
    if kind == "L" and not info["map_keys"] and info["list_type"] is None and info["merge_key"]:
        # Server-side apply derives the key of an untagged merge list from its merge key.
        info["map_keys"] = [info["merge_key"]]
    if info["map_type"] is None and info["type"] is not None and kind == "O":
        info["map_type"] = DEFS[info["type"]].get("x-kubernetes-map-type")
    return info


def rust_str(s):
    return json.dumps(s)


def opt_str(s):
    return "None" if s is None else f"Some({rust_str(s)})"


def emit_field(info, required):
    kind = {"S": "Scalar", "O": "Object", "M": "Map", "L": "List"}[info["kind"]]
    strategies = [s for s in info["strategy"].split(",") if s]
    retain = "retainKeys" in strategies
    replace = "replace" in strategies
    if info["kind"] == "L":
        if "merge" in strategies:
            if info["merge_key"]:
                lst = f"Some(Merge {{ key: {rust_str(info['merge_key'])} }})"
            else:
                lst = "Some(Set)"
        else:
            lst = "Some(Atomic)"
    else:
        lst = "None"
    if (
        info["kind"] == "S"
        and not strategies
        and info["list_type"] is None
        and info["map_type"] is None
    ):
        return "REQUIRED_SCALAR" if required else "SCALAR"
    keys = "&[" + ", ".join(rust_str(k) for k in info["map_keys"]) + "]"
    return (
        f"fi({kind}, {opt_str(info['type'])}, {lst}, {str(retain).lower()}, {str(replace).lower()}, "
        f"{keys}, {opt_str(info['list_type'])}, {opt_str(info['map_type'])}, {str(required).lower()})"
    )


def main():
    global DEFS
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    DEFS = doc.get("$defs") or doc.get("definitions")
    seen = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for prop in DEFS[name].get("properties", {}).values():
            info = field_info(prop)
            if info["type"] is not None and info["type"] not in seen:
                todo.append(info["type"])

    out = []
    # The version comes from the schema's directory name (`v1.35.0-local`); it must be
    # skiff_meta::KUBERNETES_MINOR (tools/tests/tidy.rs checks).
    m = re.search(r"v1\.(\d+)\.\d+", sys.argv[1])
    if not m:
        sys.exit("the schema path must name its Kubernetes version (…/v1.MINOR.0-local/…)")
    out.append(
        f"//! Generated patch metadata and type graph of the Kubernetes v1.{m.group(1)} built-in kinds "
        "(see gen/gen_schema.py); do not edit."
    )
    out.append("")
    body_start = len(out)
    out.append("#[rustfmt::skip]")
    out.append("pub(super) static TYPES: &[TypeDef] = &[")
    for name in sorted(seen):
        d = DEFS[name]
        atomic = d.get("x-kubernetes-map-type") == "atomic"
        out.append(f"    TypeDef {{ name: {rust_str(name)}, atomic: {str(atomic).lower()}, fields: &[")
        for pname in sorted(d.get("properties", {})):
            info = field_info(d["properties"][pname])
            required = pname in d.get("required", [])
            out.append(f"        ({rust_str(pname)}, {emit_field(info, required)}),")
        out.append("    ] },")
    out.append("];")
    out.append("")
    kinds = []
    for name in sorted(seen):
        for gvk in DEFS[name].get("x-kubernetes-group-version-kind", []):
            gv = gvk["version"] if gvk["group"] == "" else f"{gvk['group']}/{gvk['version']}"
            kinds.append((gv, gvk["kind"], name))
    out.append("#[rustfmt::skip]")
    out.append("pub(super) static KINDS: &[KindDef] = &[")
    for gv, kind, name in sorted(kinds):
        out.append(f"    KindDef {{ api_version: {rust_str(gv)}, kind: {rust_str(kind)}, type_name: {rust_str(name)} }},")
    out.append("];")
    body = "\n".join(out[body_start:])
    kinds_used = [k for k in ("List", "Map", "Object", "Scalar") if f"fi({k}," in body]
    strategies_used = [k for k in ("Atomic", "Merge", "Set") if f"Some({k}" in body]
    header = out[:body_start] + [
        "use super::FieldKind::{" + ", ".join(kinds_used) + "};",
        "use super::ListStrategy::{" + ", ".join(strategies_used) + "};",
        "use super::{KindDef, REQUIRED_SCALAR, SCALAR, TypeDef, fi};",
        "",
    ]
    print("\n".join(header + out[body_start:]))


if __name__ == "__main__":
    main()
