#!/usr/bin/env python3
"""A DecoratorController's sync hook: every Namespace labelled `team` gets a `team-info`
ConfigMap (an attachment), a label saying so, and an annotation naming its team; the hook
also asks for an event on the Namespace (a bosun extension to the hook protocol).

Standard library only. Listens on 127.0.0.1, port from the first argument (default 8081).
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class SyncHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        namespace = request["object"]["metadata"]
        team = namespace.get("labels", {}).get("team", "")
        existing = request["attachments"]["ConfigMap.v1"]
        response = {
            "labels": {"teams.example.com/has-info": "true"},
            "annotations": {"teams.example.com/team": team},
            "attachments": [{
                "apiVersion": "v1",
                "kind": "ConfigMap",
                # The target is cluster-scoped: say where the attachment goes.
                "metadata": {"name": "team-info", "namespace": namespace["name"]},
                "data": {"team": team, "contact": f"{team}@example.com"},
            }],
        }
        if not existing:
            response["events"] = [{"type": "Normal", "reason": "TeamInfoCreated", "message": f"team-info for team {team}"}]
        body = json.dumps(response).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8081
    server = HTTPServer(("127.0.0.1", port), SyncHandler)
    print(f"team-namespaces hook listening on http://127.0.0.1:{port}/sync", flush=True)
    server.serve_forever()
