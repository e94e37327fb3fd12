#!/usr/bin/env python3
"""The __NAME__ hook: each __KIND__ gets a ConfigMap holding its `spec.message`.__ADMISSION_SUMMARY__

`bosun dev --project .` runs it (python3 hook.py PORT); `bosun hook test controller.yaml
sample.yaml` shows what it would do. bosun_hooks/ is bosun's Python SDK, standard library only.
"""
import sys

from bosun_hooks import __REQUEST__, __RESPONSE__, HookServer, child, labels_for, owner_safe_name__ADMISSION_IMPORTS__

hooks = HookServer()


@hooks.sync
def sync(request: __REQUEST__) -> __RESPONSE__:
    parent = request.__SUBJECT__
    message = str(parent.get("spec", {}).get("message", ""))
    config_map = child("v1", "ConfigMap", owner_safe_name(parent, "message"), labels=labels_for(parent), data={"message": message})
    if request.namespace is None:  # a cluster-scoped __KIND__ keeps its ConfigMap in default
        config_map["metadata"]["namespace"] = "default"
    return __RESPONSE__(status={"message": message}, __CHILDREN__=[config_map])
__ADMISSION_HOOKS__

if __name__ == "__main__":
    hooks.serve(int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
