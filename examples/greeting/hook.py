#!/usr/bin/env python3
"""The Greeting controller's sync hook: one ConfigMap per Greeting, carrying its message.

Standard library only, as most Metacontroller hooks are. Listens on 127.0.0.1, port from
the first argument (default 8080).
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class SyncHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        greeting = request["parent"]
        name = greeting["metadata"]["name"]
        children = request["children"]["ConfigMap.v1"]
        response = {
            "status": {"configMaps": len(children)},
            "children": [{
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{name}-greeting"},
                "data": {"message": greeting["spec"]["message"]},
            }],
        }
        body = json.dumps(response).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    server = HTTPServer(("127.0.0.1", port), SyncHandler)
    print(f"greeting hook listening on http://127.0.0.1:{port}/sync", flush=True)
    server.serve_forever()
