#!/usr/bin/env python3
"""Generates api/proto/src/table.rs: the protobuf schema of the Kubernetes API kinds Skiff decodes.

Sources (Kubernetes v1.35; nothing is fetched, both crates come from crates.io into the cargo
registry cache, e.g. by `cargo fetch` in the workspace):

* k8s-pb 0.9.0 (crates.io): prost code generated from the `generated.proto` files of
  k8s.io/api v0.35 and k8s.io/apimachinery v0.35 (go-to-protobuf output,
  `staging/src/k8s.io/{api,apimachinery}/**/generated.proto` in kubernetes/kubernetes v1.35).
  It gives every message's fields exactly as the .proto files do: tag number, scalar type or
  message type, optional/repeated, map key and value types. prost renames fields to snake_case
  (`podIP` -> `pod_ip`), so it loses the JSON name's capitalisation.
* k8s-openapi 0.29.0, module v1_35 (crates.io): generated from the v1.35 OpenAPI spec. Its serde
  code spells every property's JSON name (`"podIP" => Field::Key_pod_ip`), which is the proto field
  name go-to-protobuf wrote; and a property whose Rust type is not an `Option` is required (Go
  serializes it even when empty). Every proto field is matched to its JSON name by comparing
  names with underscores removed and case folded; a field without a match is an error unless it
  is listed in FALLBACK_OK (messages that have no OpenAPI definition), where the snake_case name
  is camel-cased.

The field numbers and JSON names were cross-checked against the upstream generated.proto text of
k8s.io/api policy/v1 and core/v1 (e.g. `optional string podIP = 6;`).

Zero values. Go's protobuf marshaller writes every non-pointer field, even when it is zero,
while Go's JSON encoder drops a zero value of an `omitempty` field. To make the decoded JSON the
same as the JSON kubectl would have sent, the table marks fields whose zero value is dropped
(flag Z):
* fields listed in gen/zero_values.json: as observed from Go itself (gen/probe_zero.py has
  kubectl decode protobuf objects with every field zero and print their JSON). This covers every
  field of the kinds kubectl creates (Deployment with its pod template, Pod, Job, CronJob,
  Service, Ingress, ConfigMap, Secret, Namespace, RBAC, PDB, PriorityClass, ResourceQuota, ...);
* other strings and bytes: every field that is not required (KEEP_EMPTY lists pointer strings
  where an explicit "" means something);
* other integers and booleans: only the fields listed in OMIT_ZERO_NUMERIC (Go value fields with
  `omitempty`); any other one may be a pointer, where an explicit 0/false is meaningful, so it
  is kept.

Usage: python3 api/proto/gen/gen_table.py [REGISTRY_SRC_DIR]  (writes api/proto/src/table.rs)
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys

K8S_PB = "k8s-pb-0.9.0"
K8S_OPENAPI = "k8s-openapi-0.29.0"
OPENAPI_MODULE = "v1_35"

# (k8s-pb / k8s-openapi module path, proto package)
PACKAGES = [
    ("apimachinery/pkg/apis/meta/v1", "k8s.io.apimachinery.pkg.apis.meta.v1"),
    ("apimachinery/pkg/runtime", "k8s.io.apimachinery.pkg.runtime"),
    ("apimachinery/pkg/api/resource", "k8s.io.apimachinery.pkg.api.resource"),
    ("apimachinery/pkg/util/intstr", "k8s.io.apimachinery.pkg.util.intstr"),
    ("api/core/v1", "k8s.io.api.core.v1"),
    ("api/apps/v1", "k8s.io.api.apps.v1"),
    ("api/batch/v1", "k8s.io.api.batch.v1"),
    ("api/autoscaling/v1", "k8s.io.api.autoscaling.v1"),
    ("api/autoscaling/v2", "k8s.io.api.autoscaling.v2"),
    ("api/networking/v1", "k8s.io.api.networking.v1"),
    ("api/node/v1", "k8s.io.api.node.v1"),
    ("api/coordination/v1", "k8s.io.api.coordination.v1"),
    ("api/discovery/v1", "k8s.io.api.discovery.v1"),
    ("api/policy/v1", "k8s.io.api.policy.v1"),
    ("api/rbac/v1", "k8s.io.api.rbac.v1"),
    ("api/events/v1", "k8s.io.api.events.v1"),
    ("api/scheduling/v1", "k8s.io.api.scheduling.v1"),
    ("api/storage/v1", "k8s.io.api.storage.v1"),
    ("api/authentication/v1", "k8s.io.api.authentication.v1"),
    ("api/authorization/v1", "k8s.io.api.authorization.v1"),
    ("api/certificates/v1", "k8s.io.api.certificates.v1"),
]

META = "k8s.io.apimachinery.pkg.apis.meta.v1"

# Messages whose JSON form is not an object of their fields (see src/decode.rs).
SPECIAL = {
    f"{META}.Time": "Time",
    f"{META}.MicroTime": "MicroTime",
    f"{META}.Duration": "Duration",
    f"{META}.FieldsV1": "FieldsV1",
    f"{META}.Verbs": "Items",
    "k8s.io.api.authentication.v1.ExtraValue": "Items",
    "k8s.io.api.authorization.v1.ExtraValue": "Items",
    "k8s.io.api.certificates.v1.ExtraValue": "Items",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawExtension",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.api.resource.QuantityValue": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
}

# Messages with no OpenAPI definition: their JSON names are the camel-cased prost names.
FALLBACK_OK = {
    f"{META}.{n}"
    for n in [
        "ApplyOptions", "CreateOptions", "Duration", "FieldSelectorRequirement", "Fields",
        "GetOptions", "GroupKind", "GroupResource", "GroupVersion", "GroupVersionKind",
        "GroupVersionResource", "List", "ListOptions", "PartialObjectMetadata",
        "PartialObjectMetadataList", "PatchOptions", "RootPaths", "TableOptions", "Timestamp",
        "TypeMeta", "UpdateOptions", "Verbs", "Table", "TableColumnDefinition", "TableRow",
        "TableRowCondition", "MicroTime", "Time", "FieldsV1", "Patch",
    ]
} | {
    "k8s.io.apimachinery.pkg.runtime.TypeMeta",
    "k8s.io.apimachinery.pkg.runtime.Unknown",
    "k8s.io.apimachinery.pkg.runtime.RawExtension",
    "k8s.io.apimachinery.pkg.api.resource.Quantity",
    "k8s.io.apimachinery.pkg.api.resource.QuantityValue",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
    "k8s.io.api.authentication.v1.ExtraValue",
    "k8s.io.api.authorization.v1.ExtraValue",
    "k8s.io.api.certificates.v1.ExtraValue",
    "k8s.io.api.core.v1.AvoidPods",
    "k8s.io.api.core.v1.PreferAvoidPodsEntry",
    "k8s.io.api.core.v1.PodSignature",
    "k8s.io.api.core.v1.RangeAllocation",
    "k8s.io.api.core.v1.SerializedReference",
    "k8s.io.api.core.v1.List",
}

# Explicit JSON names where the generic rule cannot know them.
JSON_OVERRIDES = {
    (f"{META}.FieldsV1", "raw"): "Raw",
    (f"{META}.Fields", "map"): "Map",
    ("k8s.io.api.core.v1.RangeAllocation", "range"): "range",
}

# Go value (non-pointer) integer/boolean fields tagged `omitempty`: Go's protobuf marshaller
# writes them even when zero, Go's JSON encoder drops them when zero. (message, json name)
OMIT_ZERO_NUMERIC = {
    (f"{META}.ObjectMeta", "generation"),
    ("k8s.io.api.core.v1.Container", "stdin"),
    ("k8s.io.api.core.v1.Container", "stdinOnce"),
    ("k8s.io.api.core.v1.Container", "tty"),
    ("k8s.io.api.core.v1.EphemeralContainerCommon", "stdin"),
    ("k8s.io.api.core.v1.EphemeralContainerCommon", "stdinOnce"),
    ("k8s.io.api.core.v1.EphemeralContainerCommon", "tty"),
    ("k8s.io.api.core.v1.ContainerPort", "hostPort"),
    ("k8s.io.api.core.v1.VolumeMount", "readOnly"),
    ("k8s.io.api.core.v1.Probe", "initialDelaySeconds"),
    ("k8s.io.api.core.v1.Probe", "timeoutSeconds"),
    ("k8s.io.api.core.v1.Probe", "periodSeconds"),
    ("k8s.io.api.core.v1.Probe", "successThreshold"),
    ("k8s.io.api.core.v1.Probe", "failureThreshold"),
    ("k8s.io.api.core.v1.PodSpec", "hostNetwork"),
    ("k8s.io.api.core.v1.PodSpec", "hostPID"),
    ("k8s.io.api.core.v1.PodSpec", "hostIPC"),
    ("k8s.io.api.core.v1.ServicePort", "nodePort"),
    ("k8s.io.api.core.v1.ServiceSpec", "publishNotReadyAddresses"),
    ("k8s.io.api.core.v1.ServiceSpec", "healthCheckNodePort"),
    ("k8s.io.api.core.v1.PersistentVolumeClaimVolumeSource", "readOnly"),
    ("k8s.io.api.core.v1.EventSeries", "count"),
    ("k8s.io.api.core.v1.Event", "count"),
    ("k8s.io.api.apps.v1.DeploymentSpec", "minReadySeconds"),
    ("k8s.io.api.apps.v1.DeploymentSpec", "paused"),
    ("k8s.io.api.apps.v1.ReplicaSetSpec", "minReadySeconds"),
    ("k8s.io.api.core.v1.ReplicationControllerSpec", "minReadySeconds"),
    ("k8s.io.api.core.v1.ReplicationControllerStatus", "fullyLabeledReplicas"),
    ("k8s.io.api.core.v1.ReplicationControllerStatus", "readyReplicas"),
    ("k8s.io.api.core.v1.ReplicationControllerStatus", "availableReplicas"),
    ("k8s.io.api.core.v1.ReplicationControllerStatus", "observedGeneration"),
    ("k8s.io.api.apps.v1.StatefulSetSpec", "minReadySeconds"),
    ("k8s.io.api.apps.v1.DaemonSetSpec", "minReadySeconds"),
    ("k8s.io.api.apps.v1.DeploymentStatus", "observedGeneration"),
    ("k8s.io.api.apps.v1.DeploymentStatus", "replicas"),
    ("k8s.io.api.apps.v1.DeploymentStatus", "updatedReplicas"),
    ("k8s.io.api.apps.v1.DeploymentStatus", "readyReplicas"),
    ("k8s.io.api.apps.v1.DeploymentStatus", "availableReplicas"),
    ("k8s.io.api.apps.v1.DeploymentStatus", "unavailableReplicas"),
    ("k8s.io.api.apps.v1.ReplicaSetStatus", "fullyLabeledReplicas"),
    ("k8s.io.api.apps.v1.ReplicaSetStatus", "readyReplicas"),
    ("k8s.io.api.apps.v1.ReplicaSetStatus", "availableReplicas"),
    ("k8s.io.api.apps.v1.ReplicaSetStatus", "observedGeneration"),
    ("k8s.io.api.apps.v1.StatefulSetStatus", "observedGeneration"),
    ("k8s.io.api.apps.v1.StatefulSetStatus", "readyReplicas"),
    ("k8s.io.api.apps.v1.StatefulSetStatus", "currentReplicas"),
    ("k8s.io.api.apps.v1.StatefulSetStatus", "updatedReplicas"),
    ("k8s.io.api.apps.v1.StatefulSetStatus", "availableReplicas"),
    ("k8s.io.api.apps.v1.DaemonSetStatus", "observedGeneration"),
    ("k8s.io.api.apps.v1.DaemonSetStatus", "updatedNumberScheduled"),
    ("k8s.io.api.apps.v1.DaemonSetStatus", "numberAvailable"),
    ("k8s.io.api.apps.v1.DaemonSetStatus", "numberUnavailable"),
    ("k8s.io.api.batch.v1.JobStatus", "active"),
    ("k8s.io.api.batch.v1.JobStatus", "succeeded"),
    ("k8s.io.api.batch.v1.JobStatus", "failed"),
    ("k8s.io.api.policy.v1.PodDisruptionBudgetStatus", "observedGeneration"),
    ("k8s.io.api.autoscaling.v1.HorizontalPodAutoscalerStatus", "currentReplicas"),
    ("k8s.io.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "currentReplicas"),
    ("k8s.io.api.autoscaling.v1.ScaleSpec", "replicas"),
    ("k8s.io.api.autoscaling.v1.ScaleStatus", "replicas"),
    ("k8s.io.api.scheduling.v1.PriorityClass", "globalDefault"),
}

# Fields of the v1.35 protos that later Kubernetes removed again: decoded as unknown fields
# (skipped), as kubectl 1.37 does. (proto message, snake_case name)
DROP_FIELDS = {
    ("k8s.io.api.core.v1.PodSpec", "workload_ref"),  # alpha in 1.35, gone in 1.36
}

# Optional pointer strings where an explicit "" differs from absent. (message, json name)
KEEP_EMPTY = {
    ("k8s.io.api.core.v1.PersistentVolumeClaimSpec", "storageClassName"),
    ("k8s.io.api.core.v1.PersistentVolumeClaimSpec", "volumeAttributesClassName"),
}

SCALARS = {
    "string": "Str",
    "bytes": "Bytes",
    "bool": "Bool",
    "int32": "I32",
    "int64": "I64",
    "uint32": "U32",
    "uint64": "U64",
    "sint32": "S32",
    "sint64": "S64",
    "fixed32": "Fx32",
    "fixed64": "Fx64",
    "sfixed32": "Sfx32",
    "sfixed64": "Sfx64",
    "float": "Float",
    "double": "Double",
}


def norm(name: str) -> str:
    return name.replace("_", "").lower()


def camel(snake: str) -> str:
    parts = snake.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def registry_src(arg: str | None = None) -> str:
    if arg:
        return arg
    home = os.path.expanduser("~/.cargo/registry/src")
    for d in sorted(glob.glob(os.path.join(home, "*"))):
        if os.path.isdir(os.path.join(d, K8S_PB)):
            return d
    sys.exit(f"{K8S_PB} not found under {home}; run `cargo fetch` or pass the registry src dir")


def parse_prost(path: str, module: str):
    """Yields (struct name, [(tag, snake, attr, rust type)]) from one k8s-pb mod.rs."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^pub struct (\w+) \{$", lines[i])
        if not m:
            i += 1
            continue
        name = m.group(1)
        fields = []
        i += 1
        while lines[i] != "}":
            line = lines[i].strip()
            am = re.match(r"^#\[prost\((.*)\)\]$", line)
            if am:
                attr = am.group(1)
                decl = ""
                i += 1
                while True:
                    decl += " " + lines[i].strip()
                    if decl.rstrip().endswith(",") and decl.count("<") == decl.count(">"):
                        break
                    i += 1
                dm = re.match(r"^\s*pub (?:r#)?(\w+):\s*(.*),$", decl)
                if not dm:
                    sys.exit(f"cannot parse field in {module}.{name}: {decl}")
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                fields.append((tag, dm.group(1), attr, dm.group(2).strip()))
            i += 1
        yield name, fields
        i += 1


def resolve_path(module: str, rust_type: str) -> str:
    """`super::super::x::Y` relative to `module` (a/b/c) -> proto full name."""
    parts = module.split("/")
    segs = rust_type.split("::")
    while segs and segs[0] == "super":
        parts = parts[:-1]
        segs = segs[1:]
    full = parts + segs
    return "k8s.io." + ".".join(full)


def inner_message_type(rust_type: str) -> str:
    t = rust_type
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<"):
        if t.startswith(wrapper):
            t = t[len(wrapper):-1]
    return t.replace(" ", "").rstrip(",")


def map_value_type(rust_type: str) -> str:
    m = re.match(
        r"^::prost::alloc::collections::BTreeMap<\s*::prost::alloc::string::String,\s*(.*)>$",
        rust_type,
    )
    if not m:
        sys.exit(f"unexpected map type {rust_type}")
    return m.group(1).replace(" ", "").rstrip(",")


def parse_openapi(src: str, module: str):
    """lower-cased struct name -> {normalized json name: (json name, required)}."""
    out = {}
    d = os.path.join(src, K8S_OPENAPI, "src", OPENAPI_MODULE, module)
    for f in glob.glob(os.path.join(d, "*.rs")):
        text = open(f, encoding="utf-8").read()
        sm = re.search(r"^pub struct (\w+) \{\n(.*?)^\}", text, re.S | re.M)
        if not sm:
            continue
        struct, body = sm.group(1), sm.group(2)
        optional = {}
        for fm in re.finditer(r"^    pub (?:r#)?(\w+): (.*),$", body, re.M):
            optional[fm.group(1)] = fm.group(2).startswith("Option<")
        names = {}
        for km in re.finditer(r'^\s*"([^"]+)" => Field::Key_(\w+),$', text, re.M):
            json_name, rust = km.group(1), km.group(2)
            names[norm(json_name)] = (json_name, not optional.get(rust, True))
        out[struct.lower()] = (struct, names)
    return out


def parse_kinds(src: str, module: str):
    """[(api_version, kind, struct, list_kind or None)] for the resources of one package."""
    kinds = []
    d = os.path.join(src, K8S_OPENAPI, "src", OPENAPI_MODULE, module)
    for f in sorted(glob.glob(os.path.join(d, "*.rs"))):
        text = open(f, encoding="utf-8").read()
        m = re.search(
            r"impl crate::Resource for (\w+) \{\n\s*const API_VERSION: &'static str = \"([^\"]+)\";"
            r".*?const KIND: &'static str = \"([^\"]+)\";",
            text,
            re.S,
        )
        if not m:
            continue
        lm = re.search(r"const LIST_KIND: &'static str = \"([^\"]+)\";", text)
        kinds.append((m.group(2), m.group(3), m.group(1), lm.group(1) if lm else None))
    return kinds


def field_type(module: str, attr: str, rust_type: str):
    """-> (type, repeated) where type is a scalar name or (constructor, message full name)."""
    repeated = "repeated" in attr.split(", ")
    base = re.match(r"^(\w+)", attr).group(1)
    if base in ("btree_map", "map", "hash_map"):
        mm = re.search(r'map = "string, (\w+)"', attr)
        if not mm:
            raise ValueError(f"map key is not a string: {attr}")
        vk = mm.group(1)
        if vk == "string":
            return "Map(MapVal::Str)", False
        if vk == "bytes":
            return "Map(MapVal::Bytes)", False
        if vk == "message":
            return ("Map(MapVal::Msg", resolve_path(module, map_value_type(rust_type))), False
        raise ValueError(f"map value {vk} not supported")
    if base == "message":
        return ("Msg", resolve_path(module, inner_message_type(rust_type))), repeated
    if base in SCALARS:
        return SCALARS[base], repeated
    raise ValueError(f"type {attr} not supported")


def load_observed() -> dict:
    """gen/zero_values.json (written by gen/probe_zero.py): for each probed scalar field
    "package.Message.jsonName", whether Go's JSON keeps ("keep") or drops ("omit") its zero."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zero_values.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def build(src: str, observed: dict):
    """-> (messages {full: (name, [(tag, json, type, repeated, omit, inline)])}, kinds,
    problems, OpenAPI spellings of message names)"""
    raw = {}  # full name -> (prost name, [(tag, snake, type, repeated)])
    own_names = {}  # full name -> {normalized: (json, required)} from its OpenAPI definition
    openapi_names = {}  # full name -> struct name as spelled by OpenAPI
    kinds = []
    problems = []
    for module, package in PACKAGES:
        pb_file = os.path.join(src, K8S_PB, "src", module, "mod.rs")
        oa = parse_openapi(src, module)
        for name, fields in parse_prost(pb_file, module):
            full = f"{package}.{name}"
            oa_struct = oa.get(name.lower())
            if oa_struct:
                openapi_names[full] = oa_struct[0]
                own_names[full] = oa_struct[1]
            typed = []
            for tag, snake, attr, rust_type in fields:
                if (full, snake) in DROP_FIELDS:
                    continue
                try:
                    ty, repeated = field_type(module, attr, rust_type)
                except ValueError as e:
                    problems.append(f"{full}.{snake}: {e}")
                    continue
                typed.append((tag, snake, ty, repeated))
            raw[full] = (name, typed)
        for api_version, kind, struct, list_kind in parse_kinds(src, module):
            kinds.append((api_version, kind, f"{package}.{struct}"))
            if list_kind:
                kinds.append((api_version, list_kind, f"{package}.{struct}List"))

    # Inline (embedded) Go structs: a message field of a message that has an OpenAPI definition
    # but no property of that name. Its own fields are properties of the parent.
    inline = set()
    extra_names = {}
    changed = True
    while changed:
        changed = False
        for full, (name, fields) in raw.items():
            names = dict(extra_names.get(full, {}))
            names.update(own_names.get(full, {}))
            if not names:
                continue
            for tag, snake, ty, repeated in fields:
                if (full, snake) in JSON_OVERRIDES or norm(snake) in names:
                    continue
                if isinstance(ty, tuple) and ty[0] == "Msg" and not repeated:
                    inline.add((full, snake))
                    child = extra_names.setdefault(ty[1], {})
                    before = len(child)
                    for k, v in names.items():
                        child.setdefault(k, v)
                    changed |= len(child) != before

    messages = {}
    fallback = set()
    for full, (name, fields) in raw.items():
        names = dict(extra_names.get(full, {}))
        names.update(own_names.get(full, {}))
        out_fields = []
        for tag, snake, ty, repeated in fields:
            required = False
            if (full, snake) in JSON_OVERRIDES:
                json_name = JSON_OVERRIDES[(full, snake)]
            elif (full, snake) in inline:
                json_name = ""
            elif norm(snake) in names:
                json_name, required = names[norm(snake)]
            elif not names:
                json_name = camel(snake)
                fallback.add(full)
            else:
                problems.append(f"{full}.{snake}: no JSON name")
                continue
            omit = False
            seen = observed.get(f"{full}.{json_name}")
            if seen and not repeated and isinstance(ty, str) and not ty.startswith("Map"):
                omit = seen == "omit"
            elif not repeated and isinstance(ty, str) and not ty.startswith("Map"):
                if ty in ("Str", "Bytes"):
                    omit = not required and (full, json_name) not in KEEP_EMPTY
                else:
                    omit = (full, json_name) in OMIT_ZERO_NUMERIC
            out_fields.append((tag, json_name, ty, repeated, omit, (full, snake) in inline))
        out_fields.sort()
        tags = [f[0] for f in out_fields]
        if len(set(tags)) != len(tags):
            problems.append(f"{full}: duplicate field numbers")
        messages[full] = (name, out_fields)
    unexpected = sorted(m for m in fallback if m not in FALLBACK_OK and not m.endswith("List"))
    print(f"{len(fallback)} messages without an OpenAPI definition use camel-cased names:")
    for m in unexpected:
        print(f"  {m}")
    return messages, kinds, problems, openapi_names


def main() -> None:
    src = registry_src(sys.argv[1] if len(sys.argv) > 1 else None)
    messages, kinds, problems, openapi_names = build(src, load_observed())

    # Match OpenAPI struct spellings (AWSElasticBlockStore...) to prost ones (Aws...).
    by_lower = {full.lower(): full for full in messages}
    index = {full: i for i, full in enumerate(sorted(messages))}
    for full, name in list(OMIT_ZERO_NUMERIC) + list(KEEP_EMPTY):
        if full not in messages or not any(f[1] == name for f in messages[full][1]):
            problems.append(f"listed field {full}.{name} does not exist")

    # DeleteOptions is accepted in every group version (it is registered in each one).
    versions = sorted({k[0] for k in kinds})
    for v in versions + ["meta.k8s.io/v1"]:
        kinds.append((v, "DeleteOptions", f"{META}.DeleteOptions"))
    kinds.append(("meta.k8s.io/v1", "Status", f"{META}.Status"))

    def ty_expr(ty) -> str:
        if isinstance(ty, str):
            return ty
        ctor, target = ty
        if target not in index:
            problems.append(f"unknown message type {target}")
            return "Msg(0)"
        close = "))" if ctor.startswith("Map") else ")"
        return f"{ctor}({index[target]}{close}"

    rows = []
    for full in sorted(messages):
        name, fields = messages[full]
        special = SPECIAL.get(full, "None")
        fs = []
        for tag, json_name, ty, repeated, omit, inl in fields:
            flags = []
            if repeated:
                flags.append("R")
            if omit:
                flags.append("Z")
            if inl:
                flags.append("I")
            fs.append(f'f({tag}, "{json_name}", {ty_expr(ty)}, {"|".join(flags) or "0"})')
        display = openapi_names.get(full, name)
        pkg = full.rsplit(".", 1)[0]
        rows.append(
            f'    // {index[full]}\n    Msg {{ name: "{pkg}.{display}", special: Special::{special}, '
            f"fields: &[{', '.join(fs)}] }},"
        )

    kind_rows = []
    seen = set()
    for api_version, kind, full in sorted(kinds):
        target = by_lower.get(full.lower())
        if target is None:
            problems.append(f"kind {api_version} {kind}: no message {full}")
            continue
        if (api_version, kind) in seen:
            continue
        seen.add((api_version, kind))
        kind_rows.append(f'    ("{api_version}", "{kind}", {index[target]}),')

    if problems:
        sys.exit("generation failed:\n  " + "\n  ".join(problems))

    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "table.rs")
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(
            "//! The protobuf schema of the Kubernetes v1.35 API kinds Skiff decodes; generated by\n"
            "//! `api/proto/gen/gen_table.py` (which names its sources). Do not edit by hand.\n\n"
            "use crate::schema::{I, MapVal, Msg, R, Special, Ty::*, Z, f};\n\n"
            "/// Every message, indexed by the numbers in `Msg(..)`.\n"
            "#[rustfmt::skip]\n"
            "pub(crate) static MSGS: &[Msg] = &[\n"
        )
        fh.write("\n".join(rows))
        fh.write(
            "\n];\n\n/// (apiVersion, kind, message index), sorted.\n#[rustfmt::skip]\n"
            "pub(crate) static KINDS: &[(&str, &str, u16)] = &[\n"
        )
        fh.write("\n".join(kind_rows))
        fh.write("\n];\n")
    print(f"wrote {out}: {len(messages)} messages, {len(kind_rows)} kinds")


if __name__ == "__main__":
    main()
