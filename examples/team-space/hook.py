#!/usr/bin/env python3
"""The TeamSpace sync hook: a Namespace `team-<name>` per TeamSpace and, with `spec.viewers`, a
RoleBinding `viewers` in it giving that group the `view` ClusterRole. The engine ties both to
the TeamSpace by label and deletes them with it (the controller's bosun.dev/children-anywhere).

Written on bosun's Python SDK (sdk/python, standard library only). Usage: hook.py [--address
ADDRESS] [PORT] (default 127.0.0.1:8080).
"""
import argparse
import sys
from pathlib import Path

try:
    import bosun_hooks  # noqa: F401 (installed, or on PYTHONPATH in a cluster)
except ImportError:  # run from a checkout of bosun: the SDK beside the examples
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python" / "src"))

from bosun_hooks import CompositeRequest, CompositeResponse, HookServer, child

hooks = HookServer()


@hooks.sync
def sync(request: CompositeRequest) -> CompositeResponse:
    namespace = f"team-{request.name}"
    children = [child("v1", "Namespace", namespace)]
    viewers = request.parent.get("spec", {}).get("viewers")
    if viewers:
        role_binding = child(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "viewers",
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            subjects=[{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": viewers}],
        )
        role_binding["metadata"]["namespace"] = namespace
        children.append(role_binding)
    bindings = request.children.of("RoleBinding", "rbac.authorization.k8s.io/v1")
    return CompositeResponse(status={"namespace": namespace, "roleBindings": len(bindings)}, children=children)


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("port", nargs="?", type=int, default=8080)
    arguments.add_argument("--address", default="127.0.0.1")
    options = arguments.parse_args()
    hooks.serve(options.port, options.address)
