#!/usr/bin/env bash
# The Greeting controller's sync hook as a program (an exec hook, exec-controller.yaml):
# bosun runs it once per sync with the request on standard input and reads the response from
# standard output — the same JSON as hook.py's, without a server. bash and jq only.
set -euo pipefail
jq '{
  status: {configMaps: (.children["ConfigMap.v1"] | length)},
  children: [{
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {name: "\(.parent.metadata.name)-greeting"},
    data: {message: .parent.spec.message}
  }]
}'
