"""The official Python `kubernetes` client's CustomObjectsApi against a Skiff server.

Installs a CRD (status and scale subresources), then creates, lists, gets, patches (merge),
writes status and scale, watches and deletes its objects.

Usage: python custom_objects.py KUBECONFIG
Prints one line per step and exits non-zero on the first failure.
"""
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL, NS = "example.com", "v1", "gadgets", "default"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
        "versions": [{
            "name": VERSION,
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {
                            "size": {"type": "string", "enum": ["small", "large"]},
                            "replicas": {"type": "integer", "minimum": 0, "default": 1},
                        },
                    },
                    "status": {
                        "type": "object",
                        "properties": {"phase": {"type": "string"}, "replicas": {"type": "integer"}},
                    },
                },
            }},
            "subresources": {
                "status": {},
                "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
            },
        }],
    },
}


def gadget(name, size, labels=None):
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Gadget",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"size": size},
    }


def wait_established(ext, name, timeout=30):
    deadline = time.monotonic() + timeout
    w = watch.Watch()
    for ev in w.stream(ext.list_custom_resource_definition, field_selector=f"metadata.name={name}",
                       timeout_seconds=timeout):
        conditions = (ev["object"].status.conditions or []) if ev["object"].status else []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            w.stop()
            return
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"{name} was not established within {timeout}s")


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    ext = client.ApiextensionsV1Api()
    co = client.CustomObjectsApi()

    crd = ext.create_custom_resource_definition(CRD)
    assert crd.metadata.uid, crd
    wait_established(ext, f"{PLURAL}.{GROUP}")
    crd = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    assert crd.status.accepted_names.kind == "Gadget", crd.status
    assert crd.status.stored_versions == [VERSION], crd.status
    print("crd established", crd.metadata.name)

    created = co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, gadget("g1", "small", {"tier": "a"}))
    assert created["metadata"]["uid"], created
    assert created["spec"]["replicas"] == 1, created  # defaulted
    co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, gadget("g2", "large", {"tier": "b"}))
    print("created", created["metadata"]["name"], created["metadata"]["resourceVersion"])

    try:
        co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, gadget("g1", "small"))
        raise AssertionError("duplicate create succeeded")
    except ApiException as e:
        assert e.status == 409, e
    try:
        co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, gadget("bad", "huge"))
        raise AssertionError("invalid create succeeded")
    except ApiException as e:
        assert e.status == 422, e
        assert "spec.size" in e.body, e.body
    print("refused", 409, 422)

    listed = co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    assert listed["kind"] == "GadgetList", listed
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == ["g1", "g2"], listed
    selected = co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, label_selector="tier=a")
    assert [i["metadata"]["name"] for i in selected["items"]] == ["g1"], selected
    everywhere = co.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert len(everywhere["items"]) == 2, everywhere
    print("listed", len(listed["items"]))

    got = co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "g1")
    assert got["spec"] == {"size": "small", "replicas": 1}, got

    patched = co.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "g1", {"spec": {"size": "large"}})
    assert patched["spec"] == {"size": "large", "replicas": 1}, patched
    assert patched["metadata"]["generation"] == 2, patched["metadata"]
    print("patched", patched["metadata"]["resourceVersion"])

    status = co.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "g1", {"status": {"phase": "Ready", "replicas": 1}})
    assert status["status"] == {"phase": "Ready", "replicas": 1}, status
    assert status["metadata"]["generation"] == 2, "a status write keeps the generation"
    got = co.get_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "g1")
    assert got["status"]["phase"] == "Ready", got
    print("status", got["status"]["phase"])

    scale = co.patch_namespaced_custom_object_scale(GROUP, VERSION, NS, PLURAL, "g1", {"spec": {"replicas": 4}})
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 4, scale
    got = co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "g1")
    assert got["spec"]["replicas"] == 4, got
    scale = co.get_namespaced_custom_object_scale(GROUP, VERSION, NS, PLURAL, "g1")
    assert scale["status"]["replicas"] == 1, scale
    print("scaled", 4)

    # Replace with the read object; a stale resourceVersion conflicts.
    got["spec"]["size"] = "small"
    replaced = co.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "g1", got)
    assert replaced["spec"]["size"] == "small", replaced
    try:
        co.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "g1", got)
        raise AssertionError("stale replace succeeded")
    except ApiException as e:
        assert e.status == 409, e
    print("replaced", replaced["metadata"]["resourceVersion"])

    # Watch: events for changes made after the watch starts.
    rv = co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["metadata"]["resourceVersion"]
    events = []
    started = threading.Event()
    done = threading.Event()

    def watcher():
        w = watch.Watch()
        started.set()
        for ev in w.stream(co.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL,
                           resource_version=rv, timeout_seconds=30):
            events.append((ev["type"], ev["object"]["metadata"]["name"]))
            if ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == "g3":
                w.stop()
        done.set()

    t = threading.Thread(target=watcher)
    t.start()
    started.wait()
    co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, gadget("g3", "small"))
    co.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "g3", {"metadata": {"labels": {"seen": "yes"}}})
    co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "g3")
    assert done.wait(40), f"watch did not see the delete: {events}"
    t.join()
    assert [e for e in events if e[1] == "g3"] == [("ADDED", "g3"), ("MODIFIED", "g3"), ("DELETED", "g3")], events
    print("watched", events)

    deleted = co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "g2")
    assert deleted is not None
    try:
        co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "g2")
        raise AssertionError("deleted object still readable")
    except ApiException as e:
        assert e.status == 404, e
    co.delete_collection_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    left = co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"]
    assert left == [], left
    print("deleted", "g2", "collection")
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
