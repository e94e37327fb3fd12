#!/usr/bin/env node
// The ingress annotator's sync hook for a DecoratorController: every Ingress it is called for
// gets the annotation `foo: bar`, the one the tutorial's controller sets. Other annotations are
// left alone (bosun applies the returned annotations key by key).
//
// Written on bosun's hook SDK for Node.js (sdk/typescript, no dependencies). Usage: node
// hook.js [PORT] (default 8081, on 127.0.0.1; set HOOK_ADDRESS=0.0.0.0 in a cluster).
// GET /healthz answers 200; SIGTERM stops it once the calls in flight are answered.
"use strict";

/** @type {typeof import("bosun-hooks")} */
let sdk;
try {
  sdk = require("bosun-hooks"); // installed, or beside the hook (bosun dev)
} catch {
  sdk = require("../../sdk/typescript"); // run from a checkout of bosun
}

const ANNOTATIONS = { foo: "bar" };

/** @param {import("bosun-hooks").Request} request @returns {import("bosun-hooks").DecoratorResponse} */
function sync(request) {
  // request.object is the Ingress; the response only says what it should carry.
  return { annotations: ANNOTATIONS };
}

module.exports = { sync };

if (require.main === module) {
  const hooks = new sdk.HookServer().sync(sync);
  hooks.serve({ port: Number(process.argv[2] || 8081), address: process.env.HOOK_ADDRESS || "127.0.0.1" });
}
