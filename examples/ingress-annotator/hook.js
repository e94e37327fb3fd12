#!/usr/bin/env node
// The ingress annotator's sync hook for a DecoratorController: every Ingress it is called for
// gets the annotation `foo: bar`, the one the tutorial's controller sets. Other annotations are
// left alone (bosun applies the returned annotations key by key).
//
// Node's standard library only. Usage: node hook.js [PORT] (default 8081, on 127.0.0.1; set
// HOOK_ADDRESS=0.0.0.0 in a cluster). GET /healthz answers 200.
"use strict";
const http = require("node:http");

const ANNOTATIONS = { foo: "bar" };

function sync(request) {
  // request.object is the Ingress; the response only says what it should carry.
  return { annotations: ANNOTATIONS };
}

function reply(response, code, body) {
  const data = JSON.stringify(body);
  response.writeHead(code, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) });
  response.end(data);
}

const server = http.createServer((request, response) => {
  if (request.method === "GET" && request.url === "/healthz") return reply(response, 200, {});
  if (request.method !== "POST" || request.url !== "/sync") return reply(response, 404, { error: `no hook at ${request.url}` });
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    try {
      reply(response, 200, sync(JSON.parse(Buffer.concat(chunks).toString())));
    } catch (error) {
      reply(response, 400, { error: String(error) });
    }
  });
});

const port = Number(process.argv[2] || 8081);
const address = process.env.HOOK_ADDRESS || "127.0.0.1";
server.listen(port, address, () => console.log(`ingress-annotator hook listening on http://${address}:${port}/sync`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
