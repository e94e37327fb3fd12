#!/usr/bin/env python3
"""The TeamSpace sync hook: a Namespace `team-<name>` per TeamSpace and, with `spec.viewers`, a
RoleBinding `viewers` in it giving that group the `view` ClusterRole. The engine ties both to
the TeamSpace by label and deletes them with it (the controller's bosun.dev/children-anywhere).

Standard library only. Usage: hook.py [--address ADDRESS] [PORT] (default 127.0.0.1:8080).
"""
import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def desired(team):
    namespace = f"team-{team['metadata']['name']}"
    children = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    viewers = team.get("spec", {}).get("viewers")
    if viewers:
        children.append({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "viewers", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": viewers}],
        })
    return namespace, children


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/sync":
            return self.reply(404, {"error": f"no hook at {self.path}"})
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        namespace, children = desired(request["parent"])
        bindings = request["children"].get("RoleBinding.rbac.authorization.k8s.io/v1", {})
        self.reply(200, {"status": {"namespace": namespace, "roleBindings": len(bindings)}, "children": children})

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
