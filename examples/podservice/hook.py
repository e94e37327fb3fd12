#!/usr/bin/env python3
"""The PodService sync hook: for each PodService, a Pod running its image, a Service in front
of the Pod and, when `spec.host` is set, an Ingress routing that host to the Service.

Standard library only, as in the tutorial. Usage: hook.py [--address ADDRESS] [PORT]
(default 127.0.0.1:8080; in a cluster, --address 0.0.0.0). GET /healthz answers 200.
"""
import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def desired_children(podservice):
    """The Pod, Service and Ingress this PodService should have."""
    name = podservice["metadata"]["name"]
    spec = podservice["spec"]
    port = spec.get("port", 80)
    labels = {"app.kubernetes.io/name": "podservice", "app.kubernetes.io/instance": name}
    container = {
        "name": "app",
        "image": spec["image"],
        "ports": [{"name": "http", "containerPort": port}],
    }
    if spec.get("resources"):
        container["resources"] = spec["resources"]
    children = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [container]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": port, "targetPort": "http"}],
            },
        },
    ]
    if spec.get("host"):
        ingress_spec = {
            "rules": [{
                "host": spec["host"],
                "http": {"paths": [{
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": name, "port": {"number": port}}},
                }]},
            }],
        }
        if spec.get("ingressClassName"):
            ingress_spec["ingressClassName"] = spec["ingressClassName"]
        children.append({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name, "labels": labels},
            "spec": ingress_spec,
        })
    return children


def status(podservice, observed):
    """What the PodService's children look like now (the children as observed before this sync)."""
    name = podservice["metadata"]["name"]
    pod = observed.get("Pod.v1", {}).get(name)
    service = observed.get("Service.v1", {}).get(name)
    ingress = observed.get("Ingress.networking.k8s.io/v1", {}).get(name)
    result = {"children": sum(len(children) for children in observed.values())}
    if pod:
        pod_status = pod.get("status", {})
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod_status.get("conditions", []))
        result["pod"] = {"name": name, "phase": pod_status.get("phase", "Pending"), "ready": ready}
        if pod_status.get("podIP"):
            result["pod"]["podIP"] = pod_status["podIP"]
    if service:
        result["service"] = {"name": name, "clusterIP": service["spec"].get("clusterIP", "")}
    if ingress:
        result["ingress"] = {"name": name, "url": f"http://{podservice['spec'].get('host', '')}/"}
    return result


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/sync":
            return self.reply(404, {"error": f"no hook at {self.path}"})
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        podservice = request["parent"]
        self.reply(200, {
            "status": status(podservice, request["children"]),
            "children": desired_children(podservice),
        })

    def do_GET(self):
        self.reply(200 if self.path == "/healthz" else 404, {})

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass  # one line per request is noise; bosun's metrics count the calls


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("port", nargs="?", type=int, default=8080)
    arguments.add_argument("--address", default="127.0.0.1")
    options = arguments.parse_args()
    server = ThreadingHTTPServer((options.address, options.port), Hook)
    print(f"podservice hook listening on http://{options.address}:{options.port}/sync", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a local hook is stopped
