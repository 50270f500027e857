#!/usr/bin/env python3
"""Finds, for every scalar field of the kinds kubectl can decode, whether Go's JSON encoder keeps
or drops its zero value; writes gen/zero_values.json, which gen_table.py reads.

Go's protobuf marshaller writes every non-pointer field even when it is zero, and Go's JSON
encoder drops a zero value of a value field tagged `omitempty` but keeps it for a pointer (or a
field without `omitempty`). Neither the .proto files nor OpenAPI say which is which, so this
asks Go itself: a fake API server answers `kubectl create configmap ... -o json` with a
protobuf object of another kind in which every scalar field is present with its zero value
(each message type is filled out once), and kubectl decodes it and prints its JSON. A field
missing from that JSON is "omit", a field present is "keep".

It also writes each body it served and kubectl's JSON of it as test vectors
tests/data/go-{zero,one}-KIND-1.37.{pb,json}: every field of those kinds, as Go decodes them.

Usage: python3 api/proto/gen/probe_zero.py [KUBECTL]   (a recent kubectl; the committed file was
made with kubectl v1.37.1)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import capture  # noqa: E402
import gen_table  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zero_values.json")
META = gen_table.META


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(num: int, wt: int) -> bytes:
    return varint((num << 3) | wt)


def ld(num: int, data: bytes) -> bytes:
    return key(num, 2) + varint(len(data)) + data


ZERO = {
    "Str": lambda n: ld(n, b""),
    "Bytes": lambda n: ld(n, b""),
    "Fx32": lambda n: key(n, 5) + bytes(4),
    "Sfx32": lambda n: key(n, 5) + bytes(4),
    "Float": lambda n: key(n, 5) + bytes(4),
    "Fx64": lambda n: key(n, 1) + bytes(8),
    "Sfx64": lambda n: key(n, 1) + bytes(8),
    "Double": lambda n: key(n, 1) + bytes(8),
}

SPECIAL_VALUE = {
    "Time": key(1, 0) + varint(1),
    "MicroTime": key(1, 0) + varint(1),
    "Duration": key(1, 0) + varint(1),
    "FieldsV1": ld(1, b"{}"),
    "RawExtension": ld(1, b"{}"),
    "Quantity": ld(1, b"1"),
    "IntOrString": key(1, 0) + varint(0) + key(2, 0) + varint(0),
    "Items": ld(1, b"x"),
}


ONE = {
    "Str": lambda n: ld(n, b"x"),
    "Bytes": lambda n: ld(n, b"x"),
    "Fx32": lambda n: key(n, 5) + (1).to_bytes(4, "little"),
    "Sfx32": lambda n: key(n, 5) + (1).to_bytes(4, "little"),
    "Float": lambda n: key(n, 5) + bytes.fromhex("0000803f"),
    "Fx64": lambda n: key(n, 1) + (1).to_bytes(8, "little"),
    "Sfx64": lambda n: key(n, 1) + (1).to_bytes(8, "little"),
    "Double": lambda n: key(n, 1) + bytes.fromhex("000000000000f03f"),
}


class Filler:
    """Fills every scalar with its zero value, or (one=True) with a non-zero value, which shows
    whether kubectl knows the field at all."""

    def __init__(self, messages, one: bool = False):
        self.messages = messages
        self.expanded = set()
        self.values = ONE if one else ZERO
        self.varint = 1 if one else 0

    def fill(self, full: str):
        """-> (bytes, shape) with shape [(kind, json, extra)] describing what was probed."""
        special = gen_table.SPECIAL.get(full)
        if special:
            return SPECIAL_VALUE[special], None
        if full in self.expanded:
            return self.go_zero(full, ()), None
        self.expanded.add(full)
        out = bytearray()
        shape = []
        for tag, json_name, ty, repeated, _omit, inline in self.messages[full][1]:
            if full == f"{META}.ObjectMeta" and json_name == "managedFields":
                continue  # kubectl's printer strips managedFields
            if isinstance(ty, str):
                if ty.startswith("Map"):
                    val = b""
                    if "Str" in ty or "Bytes" in ty:
                        val = ld(2, b"")
                    out += ld(tag, ld(1, b"k") + val)
                    continue
                if repeated:
                    continue
                if ty in self.values:
                    out += self.values[ty](tag)
                else:
                    out += key(tag, 0) + varint(self.varint)
                shape.append(("scalar", json_name, None))
                continue
            ctor, target = ty
            child, child_shape = self.fill(target)
            if ctor.startswith("Map"):
                out += ld(tag, ld(1, b"k") + ld(2, child))
                shape.append(("map", json_name, (target, child_shape)))
            else:
                out += ld(tag, child)
                kind = "inline" if inline else ("list" if repeated else "msg")
                shape.append((kind, json_name, (target, child_shape)))
        return bytes(out), shape


    def go_zero(self, full: str, path: tuple) -> bytes:
        """A zero struct as Go writes it: every scalar (zero) and every singular message,
        recursively (nothing for repeated fields and maps)."""
        special = gen_table.SPECIAL.get(full)
        if special:
            return SPECIAL_VALUE[special]
        if full in path or len(path) > 40:
            return b""
        out = bytearray()
        for tag, _json, ty, repeated, _omit, _inline in self.messages[full][1]:
            if repeated:
                continue
            if isinstance(ty, str):
                if not ty.startswith("Map"):
                    out += ZERO[ty](tag) if ty in ZERO else key(tag, 0) + varint(0)
                continue
            ctor, target = ty
            if ctor == "Msg":
                out += ld(tag, self.go_zero(target, path + (full,)))
        return bytes(out)


def walk(full: str, shape, obj, result: dict) -> None:
    if shape is None or not isinstance(obj, dict):
        return
    for kind, json_name, extra in shape:
        if kind == "scalar":
            result[f"{full}.{json_name}"] = "keep" if json_name in obj else "omit"
            continue
        target, child_shape = extra
        if kind == "inline":
            walk(target, child_shape, obj, result)
            continue
        value = obj.get(json_name)
        if kind == "list" and isinstance(value, list) and value:
            value = value[0]
        elif kind == "map" and isinstance(value, dict):
            value = value.get("k")
        walk(target, child_shape, value, result)


# (apiVersion, kind, kubectl command that decodes the answer as that kind). Bigger kinds first:
# each message type is probed through the first kind that contains it.
COMMANDS = [
    ("apps/v1", "Deployment", ["create", "deployment", "d", "--image=i"]),
    ("v1", "Pod", ["run", "p", "--image=i"]),
    ("batch/v1", "Job", ["create", "job", "j", "--image=i"]),
    ("batch/v1", "CronJob", ["create", "cronjob", "c", "--image=i", "--schedule=* * * * *"]),
    ("v1", "Service", ["create", "service", "clusterip", "s", "--tcp=80"]),
    ("networking.k8s.io/v1", "Ingress", ["create", "ingress", "i", "--rule=a.com/=s:80"]),
    ("policy/v1", "PodDisruptionBudget", ["create", "pdb", "p", "--selector=a=b", "--min-available=1"]),
    ("v1", "ResourceQuota", ["create", "quota", "q", "--hard=pods=1"]),
    ("v1", "Secret", ["create", "secret", "generic", "s"]),
    ("v1", "ConfigMap", ["create", "configmap", "x"]),
    ("v1", "Namespace", ["create", "namespace", "n"]),
    ("v1", "ServiceAccount", ["create", "serviceaccount", "sa"]),
    ("rbac.authorization.k8s.io/v1", "Role", ["create", "role", "r", "--verb=get", "--resource=pods"]),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", ["create", "rolebinding", "rb", "--role=r", "--user=u"]),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", ["create", "clusterrole", "cr", "--verb=get", "--resource=pods"]),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", ["create", "clusterrolebinding", "crb", "--clusterrole=cr", "--user=u"]),
    ("scheduling.k8s.io/v1", "PriorityClass", ["create", "priorityclass", "pc", "--value=1"]),
    ("authentication.k8s.io/v1", "SelfSubjectReview", ["auth", "whoami"]),
]


def main() -> None:
    kubectl = sys.argv[1] if len(sys.argv) > 1 else "/usr/bin/kubectl"
    src = gen_table.registry_src()
    messages, kinds, problems, _ = gen_table.build(src, {})
    if problems:
        sys.exit("\n".join(problems))
    by_lower = {full.lower(): full for full in messages}
    kind_msg = {(v, k): full for v, k, full in kinds}

    response = {}

    def do_post(self):
        self.read_body()
        data = response["body"]
        self.send_response(201)
        self.send_header("Content-Type", "application/vnd.kubernetes.protobuf")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    capture.Handler.do_POST = do_post
    server = ThreadingHTTPServer(("127.0.0.1", 0), capture.Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tmp = tempfile.mkdtemp()
    kubeconfig = os.path.join(tmp, "config")
    with open(kubeconfig, "w") as fh:
        fh.write(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
            f"    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n"
            "  context: {cluster: c, user: u, namespace: default}\ncurrent-context: c\n"
            "users:\n- name: u\n  user: {}\n"
        )
    env = dict(os.environ, KUBECONFIG=kubeconfig, HOME=tmp)

    def probe(one: bool) -> dict:
        result: dict = {}
        filler = Filler(messages, one)
        for api_version, kind, args in COMMANDS:
            target = by_lower[kind_msg[(api_version, kind)].lower()]
            before = set(filler.expanded)
            raw, shape = filler.fill(target)
            type_meta = ld(1, api_version.encode()) + ld(2, kind.encode())
            response["body"] = b"k8s\x00" + ld(1, type_meta) + ld(2, raw)
            res = subprocess.run([kubectl, *args, "-o", "json"], env=env, capture_output=True,
                                 text=True, timeout=60)
            ok = res.returncode == 0 and res.stdout.startswith("{")
            obj = json.loads(res.stdout) if ok else {}
            if obj.get("kind") != kind:
                print(f"not probed: {api_version} {kind}: {res.stderr.strip()[:300]}")
                filler.expanded = before  # let a later kind probe these messages
                continue
            walk(target, shape, obj, result)
            # The same body and kubectl's JSON of it are a test vector (decoded by Go).
            name = f"go-{'one' if one else 'zero'}-{kind.lower()}-1.37"
            with open(os.path.join(capture.DATA, f"{name}.pb"), "wb") as fh:
                fh.write(response["body"])
            with open(os.path.join(capture.DATA, f"{name}.json"), "w", encoding="utf-8") as fh:
                json.dump(obj, fh, indent=1)
                fh.write("\n")
        return result

    zero = probe(False)
    known = probe(True)
    result = {k: v for k, v in zero.items() if known.get(k) == "keep"}
    for k in sorted(set(zero) - set(result)):
        print(f"kubectl does not know {k}; not probed")
    server.shutdown()
    with open(OUT, "w", encoding="utf-8") as fh:
        json.dump(dict(sorted(result.items())), fh, indent=0)
        fh.write("\n")
    omit = sum(1 for v in result.values() if v == "omit")
    print(f"wrote {OUT}: {len(result)} fields, {omit} drop their zero value")


if __name__ == "__main__":
    main()
