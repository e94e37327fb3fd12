#!/usr/bin/env python3
"""The PodSet sync hook: `spec.replicas` Pods named <podset>-0 … from `spec.template`, in order,
and a status with how many are Ready. Rolling them one at a time on a template change is the
engine's job (the CompositeController's RollingRecreate update strategy); the hook only says
what the PodSet as it is asked about wants.

Standard library only. Usage: hook.py [--address ADDRESS] [PORT] (default 127.0.0.1:8080).
"""
import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def desired_pods(podset):
    name = podset["metadata"]["name"]
    spec = podset["spec"]
    template = spec.get("template", {})
    metadata = template.get("metadata", {})
    pods = []
    for ordinal in range(spec.get("replicas", 1)):
        pods.append({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-{ordinal}",
                "labels": dict(metadata.get("labels", {}), **{"examples.bosun.dev/podset": name}),
                "annotations": metadata.get("annotations", {}),
            },
            "spec": dict(template.get("spec", {}), hostname=f"{name}-{ordinal}"),
        })
    return pods


def is_ready(pod):
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/sync":
            return self.reply(404, {"error": f"no hook at {self.path}"})
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        pods = request["children"].get("Pod.v1", {}).values()
        self.reply(200, {
            "status": {"replicas": len(pods), "readyReplicas": sum(1 for pod in pods if is_ready(pod))},
            "children": desired_pods(request["parent"]),
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

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", nargs="?", type=int, default=8080)
    parser.add_argument("--address", default="127.0.0.1")
    arguments = parser.parse_args()
    ThreadingHTTPServer((arguments.address, arguments.port), Hook).serve_forever()
