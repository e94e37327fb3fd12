#!/usr/bin/env python3
"""The PodService admission hooks: `validate` refuses an image that is not pinned to a tag
(`nginx`, `nginx:latest`), `mutate` gives a PodService without memory limits a default one.
bosun serves the HTTPS endpoint the API server calls and forwards each review here in its
small protocol (docs/admission.md): the object in, a verdict (and the object as it should be
stored) out.

Written on bosun's Python SDK (sdk/python, standard library only). Usage: admission.py
[--address ADDRESS] [PORT] (default 127.0.0.1:8081).
"""
import argparse
import copy
import json
import sys
from pathlib import Path

try:
    import bosun_hooks  # noqa: F401 (installed, or on PYTHONPATH in a cluster)
except ImportError:  # run from a checkout of bosun: the SDK beside the examples
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python" / "src"))

from bosun_hooks import AdmissionRequest, AdmissionResponse, HookServer

DEFAULT_MEMORY = "128Mi"

hooks = HookServer()


@hooks.validate
def validate(request: AdmissionRequest) -> AdmissionResponse:
    image = request.object["spec"].get("image", "")
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if tag in ("", "latest"):
        return AdmissionResponse.deny(f"spec.image {json.dumps(image)} is not pinned: name a tag, such as nginx:1.27")
    return AdmissionResponse.allow()


@hooks.mutate
def mutate(request: AdmissionRequest) -> AdmissionResponse:
    defaulted = copy.deepcopy(request.object)
    limits = defaulted["spec"].setdefault("resources", {}).setdefault("limits", {})
    if "memory" in limits:
        return AdmissionResponse.allow()
    limits["memory"] = DEFAULT_MEMORY
    return AdmissionResponse(object=defaulted, warnings=[f"spec.resources.limits.memory defaulted to {DEFAULT_MEMORY}"])


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("port", nargs="?", type=int, default=8081)
    arguments.add_argument("--address", default="127.0.0.1")
    options = arguments.parse_args()
    hooks.serve(options.port, options.address)
