#!/usr/bin/env node
// The BlueGreen sync hook: two Deployments, <name>-blue and <name>-green, running the same
// template; the engine updates them one after the other (RollingInPlace). Node's standard
// library only. Usage: node hook.js [PORT] (default 8080, on 127.0.0.1).
"use strict";
const http = require("http");

const COLORS = ["blue", "green"];

function deployment(bluegreen, color) {
  const name = bluegreen.metadata.name;
  const template = bluegreen.spec.template || {};
  const metadata = template.metadata || {};
  const labels = Object.assign({}, metadata.labels, { "examples.bosun.dev/bluegreen": name, "examples.bosun.dev/color": color });
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: `${name}-${color}`, labels: { "examples.bosun.dev/color": color } },
    spec: {
      replicas: bluegreen.spec.replicas === undefined ? 1 : bluegreen.spec.replicas,
      selector: { matchLabels: { "examples.bosun.dev/bluegreen": name, "examples.bosun.dev/color": color } },
      template: { metadata: { labels, annotations: metadata.annotations || {} }, spec: template.spec || {} },
    },
  };
}

function sync(request) {
  const bluegreen = request.parent;
  const observed = request.children["Deployment.apps/v1"] || {};
  const status = {};
  for (const color of COLORS) {
    const current = observed[`${bluegreen.metadata.name}-${color}`];
    status[color] = { availableReplicas: (current && current.status && current.status.availableReplicas) || 0 };
  }
  return { status, children: COLORS.map((color) => deployment(bluegreen, color)) };
}

const port = Number(process.argv[2] || 8080);
http
  .createServer((req, res) => {
    if (req.method === "GET" && req.url === "/healthz") {
      res.writeHead(200).end("{}");
      return;
    }
    if (req.method !== "POST" || req.url !== "/sync") {
      res.writeHead(404).end("{}");
      return;
    }
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const reply = JSON.stringify(sync(JSON.parse(body)));
      res.writeHead(200, { "Content-Type": "application/json" }).end(reply);
    });
  })
  .listen(port, "127.0.0.1");
