"""The official Python `kubernetes` client reads Services and EndpointSlices from Skiff.

Usage: python endpoint_slices.py KUBECONFIG NAMESPACE SERVICE POD_IP
Prints what it found and `ok` last; exits non-zero on the first failure.
"""
import sys

from kubernetes import client, config


def main(kubeconfig, namespace, service, pod_ip):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    discovery = client.DiscoveryV1Api()

    svc = core.read_namespaced_service(service, namespace)
    assert svc.spec.cluster_ip, svc
    print("service", svc.metadata.name, svc.spec.cluster_ip)

    slices = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=" + service
    )
    assert slices.items, "no EndpointSlice for " + service
    found = False
    for s in slices.items:
        assert s.address_type == "IPv4", s.address_type
        labels = s.metadata.labels or {}
        assert labels.get("endpointslice.kubernetes.io/managed-by"), labels
        for e in s.endpoints or []:
            print("endpoint", s.metadata.name, ",".join(e.addresses), e.node_name, e.conditions.ready)
            if pod_ip in e.addresses and e.conditions.ready:
                found = True
        for p in s.ports or []:
            print("port", p.name, p.port, p.protocol)
    assert found, "no ready endpoint " + pod_ip

    every = discovery.list_endpoint_slice_for_all_namespaces()
    assert any(s.metadata.name.startswith(service) for s in every.items)
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:5])
