#!/usr/bin/env python3
"""The PodService admission hooks: `validate` refuses an image that is not pinned to a tag
(`nginx`, `nginx:latest`), `mutate` gives a PodService without memory limits a default one.
bosun serves the HTTPS endpoint the API server calls and forwards each review here in its
small protocol (docs/admission.md): the object in, a verdict (and the object as it should be
stored) out.

Standard library only. Usage: admission.py [--address ADDRESS] [PORT] (default 127.0.0.1:8081).
"""
import argparse
import copy
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_MEMORY = "128Mi"


def validate(podservice):
    image = podservice["spec"].get("image", "")
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if tag in ("", "latest"):
        return {"allowed": False, "message": f"spec.image {json.dumps(image)} is not pinned: name a tag, such as nginx:1.27"}
    return {"allowed": True}


def mutate(podservice):
    defaulted = copy.deepcopy(podservice)
    limits = defaulted["spec"].setdefault("resources", {}).setdefault("limits", {})
    if "memory" not in limits:
        limits["memory"] = DEFAULT_MEMORY
        return {"object": defaulted, "warnings": [f"spec.resources.limits.memory defaulted to {DEFAULT_MEMORY}"]}
    return {}


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        hooks = {"/validate": validate, "/mutate": mutate}
        if self.path not in hooks:
            return self.reply(404, {"error": f"no hook at {self.path}"})
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.reply(200, hooks[self.path](request["object"]))

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
    parser.add_argument("port", nargs="?", type=int, default=8081)
    parser.add_argument("--address", default="127.0.0.1")
    arguments = parser.parse_args()
    ThreadingHTTPServer((arguments.address, arguments.port), Hook).serve_forever()
