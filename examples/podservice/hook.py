#!/usr/bin/env python3
"""The PodService sync hook: for each PodService, a Pod running its image, a Service in front
of the Pod and, when `spec.host` is set, an Ingress routing that host to the Service.

Written on bosun's Python SDK (sdk/python, standard library only). Usage: hook.py [--address
ADDRESS] [PORT] (default 127.0.0.1:8080; in a cluster, --address 0.0.0.0). GET /healthz
answers 200; SIGTERM stops it once the calls in flight are answered.
"""
import argparse
import sys
from pathlib import Path

try:
    import bosun_hooks  # noqa: F401 (installed, or on PYTHONPATH in a cluster)
except ImportError:  # run from a checkout of bosun: the SDK beside the examples
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python" / "src"))

from bosun_hooks import CompositeRequest, CompositeResponse, HookServer, child, labels_for

hooks = HookServer()


def desired_children(podservice):
    """The Pod, Service and Ingress this PodService should have."""
    name = podservice["metadata"]["name"]
    spec = podservice["spec"]
    port = spec.get("port", 80)
    labels = labels_for(podservice, {"app.kubernetes.io/name": "podservice"})
    selector = {"app.kubernetes.io/name": "podservice", "app.kubernetes.io/instance": name}
    container = {"name": "app", "image": spec["image"], "ports": [{"name": "http", "containerPort": port}]}
    if spec.get("resources"):
        container["resources"] = spec["resources"]
    children = [
        child("v1", "Pod", name, labels=labels, spec={"containers": [container]}),
        child("v1", "Service", name, labels=labels, spec={"selector": selector, "ports": [{"name": "http", "port": port, "targetPort": "http"}]}),
    ]
    if spec.get("host"):
        backend = {"service": {"name": name, "port": {"number": port}}}
        ingress_spec = {"rules": [{"host": spec["host"], "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]}
        if spec.get("ingressClassName"):
            ingress_spec["ingressClassName"] = spec["ingressClassName"]
        children.append(child("networking.k8s.io/v1", "Ingress", name, labels=labels, spec=ingress_spec))
    return children


def status(request: CompositeRequest):
    """What the PodService's children look like now (as observed before this sync)."""
    name, observed = request.name, request.children
    pod = observed.get_object("Pod", "v1", name)
    service = observed.get_object("Service", "v1", name)
    ingress = observed.get_object("Ingress", "networking.k8s.io/v1", name)
    result = {"children": len(observed.objects())}
    if pod:
        pod_status = pod.get("status", {})
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod_status.get("conditions", []))
        result["pod"] = {"name": name, "phase": pod_status.get("phase", "Pending"), "ready": ready}
        if pod_status.get("podIP"):
            result["pod"]["podIP"] = pod_status["podIP"]
    if service:
        result["service"] = {"name": name, "clusterIP": service["spec"].get("clusterIP", "")}
    if ingress:
        result["ingress"] = {"name": name, "url": f"http://{request.parent['spec'].get('host', '')}/"}
    return result


@hooks.sync
def sync(request: CompositeRequest) -> CompositeResponse:
    return CompositeResponse(status=status(request), children=desired_children(request.parent))


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("port", nargs="?", type=int, default=8080)
    arguments.add_argument("--address", default="127.0.0.1")
    options = arguments.parse_args()
    hooks.serve(options.port, options.address)
