"""The official Python `kubernetes` client against a Skiff server: CRUD and watch.

Usage: python client_crud.py KUBECONFIG
Prints one line per step and exits non-zero on the first failure.
"""
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    version = client.VersionApi().get_code()
    print("version", version.git_version)

    names = [ns.metadata.name for ns in core.list_namespace().items]
    assert "default" in names, names
    print("namespaces", ",".join(sorted(names)))

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))

    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg", labels={"app": "py"}), data={"k": "v"})
    created = core.create_namespaced_config_map("py", cm)
    assert created.metadata.uid, created
    print("created", created.metadata.name, created.metadata.resource_version)

    try:
        core.create_namespaced_config_map("py", cm)
        raise AssertionError("duplicate create succeeded")
    except ApiException as e:
        assert e.status == 409, e
        print("duplicate", e.status, e.reason)

    got = core.read_namespaced_config_map("cfg", "py")
    assert got.data == {"k": "v"}, got.data

    got.data["k"] = "w"
    replaced = core.replace_namespaced_config_map("cfg", "py", got)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    print("replaced", replaced.metadata.resource_version)

    stale = got
    stale.metadata.resource_version = created.metadata.resource_version
    try:
        core.replace_namespaced_config_map("cfg", "py", stale)
        raise AssertionError("stale replace succeeded")
    except ApiException as e:
        assert e.status == 409, e
        print("stale", e.status)

    patched = core.patch_namespaced_config_map("cfg", "py", {"data": {"extra": "1"}})
    assert patched.data == {"k": "w", "extra": "1"}, patched.data

    listed = core.list_namespaced_config_map("py", label_selector="app=py")
    assert [c.metadata.name for c in listed.items] == ["cfg"], listed
    print("listed", len(listed.items))

    # Paginated list.
    for i in range(5):
        core.create_namespaced_config_map("py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"page-{i}")))
    seen, token = [], None
    while True:
        page = core.list_namespaced_config_map("py", limit=2, _continue=token)
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    # Every namespace also holds the cluster's CA bundle, as in Kubernetes.
    expected = ["cfg", "kube-root-ca.crt"] + [f"page-{i}" for i in range(5)]
    assert sorted(seen) == sorted(expected), seen
    print("paginated", len(seen))

    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="d"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "d"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "d"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x/y:1")]),
            ),
        ),
    )
    d = apps.create_namespaced_deployment("py", dep)
    assert d.spec.strategy.type == "RollingUpdate", d.spec.strategy
    scale = apps.read_namespaced_deployment_scale("d", "py")
    assert scale.spec.replicas == 1
    apps.patch_namespaced_deployment_scale("d", "py", {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("d", "py").spec.replicas == 4
    print("scaled", 4)

    # Watch: events for changes made after the watch starts.
    rv = core.list_namespaced_config_map("py").metadata.resource_version
    events = []
    done = threading.Event()

    def watcher():
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, "py", resource_version=rv, timeout_seconds=20):
            events.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED" and ev["object"].metadata.name == "cfg":
                w.stop()
        done.set()

    t = threading.Thread(target=watcher)
    t.start()
    import time
    time.sleep(1)
    core.create_namespaced_config_map("py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w1")))
    core.patch_namespaced_config_map("w1", "py", {"data": {"a": "b"}})
    core.delete_namespaced_config_map("cfg", "py")
    assert done.wait(30), "watch did not see the delete"
    t.join()
    assert ("ADDED", "w1") in events and ("MODIFIED", "w1") in events and ("DELETED", "cfg") in events, events
    print("watched", events)

    core.delete_namespaced_config_map("w1", "py")
    try:
        core.read_namespaced_config_map("w1", "py")
        raise AssertionError("deleted object still readable")
    except ApiException as e:
        assert e.status == 404, e
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
