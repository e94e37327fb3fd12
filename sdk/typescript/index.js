// bosun-hooks: Metacontroller and bosun hooks for Node.js, with no runtime dependencies.
// Types are in index.d.ts. Requests are parsed into typed objects, responses are plain objects
// of the documented shapes, children are built with helpers, and HookServer speaks the
// protocol correctly: HTTP/1.1 with Content-Length, JSON errors, GET /healthz, and a graceful
// stop on SIGTERM that lets calls in flight finish.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");

/** A message that does not follow the protocol. */
class ProtocolError extends Error {}

/** The outer key of an object map: `Kind.apiVersion`. */
function groupKey(kind, apiVersion) {
  return `${kind}.${apiVersion}`;
}

/** Objects by type (`Kind.apiVersion`), then by key: the name (v1, parent's namespace) or `namespace/name`. */
class ObjectMap {
  constructor(raw, namespace) {
    if (raw !== undefined && raw !== null && (typeof raw !== "object" || Array.isArray(raw))) {
      throw new ProtocolError(`an object map must be an object, not ${Array.isArray(raw) ? "a list" : typeof raw}`);
    }
    this.raw = raw || {};
    this.namespace = namespace;
  }

  /** The objects of one type, by key (empty when there are none). */
  of(kind, apiVersion) {
    return this.raw[groupKey(kind, apiVersion)] || {};
  }

  /** The object of that type and name (in `namespace`, by default the parent's), whatever the key form. */
  get(kind, apiVersion, name, namespace) {
    const objects = this.of(kind, apiVersion);
    const ns = namespace === undefined ? this.namespace : namespace;
    const keys = (ns ? [`${ns}/${name}`] : []).concat([name]);
    for (const key of keys) {
      if (Object.prototype.hasOwnProperty.call(objects, key)) return objects[key];
    }
    return undefined;
  }

  /** Every object, of every type. */
  objects() {
    return Object.values(this.raw).flatMap((objects) => Object.values(objects));
  }

  toJSON() {
    return this.raw;
  }
}

function body(input) {
  let value = input;
  if (typeof input === "string" || Buffer.isBuffer(input)) {
    try {
      value = JSON.parse(input.toString());
    } catch (error) {
      throw new ProtocolError(`the request is not JSON: ${error.message}`);
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new ProtocolError("the request is not a JSON object");
  return value;
}

function object(value, key) {
  const found = value[key];
  if (typeof found !== "object" || found === null || Array.isArray(found)) throw new ProtocolError(`the request has no ${JSON.stringify(key)} object`);
  return found;
}

const namespaceOf = (item) => (item.metadata || {}).namespace;

/** A sync or finalize request: a DecoratorController's when it has `object`, else a CompositeController's. */
function parseRequest(input) {
  const value = body(input);
  const controller = object(value, "controller");
  const finalizing = Boolean(value.finalizing);
  if ("object" in value) {
    const target = object(value, "object");
    const namespace = namespaceOf(target);
    return {
      type: "decorator", controller, object: target, finalizing,
      attachments: new ObjectMap(value.attachments, namespace), related: new ObjectMap(value.related, namespace),
      name: target.metadata.name, namespace,
    };
  }
  const parent = object(value, "parent");
  const namespace = namespaceOf(parent);
  return {
    type: "composite", controller, parent, finalizing,
    children: new ObjectMap(value.children, namespace), related: new ObjectMap(value.related, namespace),
    name: parent.metadata.name, namespace,
  };
}

/** A customize request. */
function parseCustomizeRequest(input) {
  const value = body(input);
  return { type: "customize", controller: object(value, "controller"), parent: object(value, "parent") };
}

/** A child object; no namespace (the engine puts it in the parent's). */
/** An AdmissionController's validate or mutate request (docs/admission.md). */
function parseAdmissionRequest(input) {
  const value = body(input);
  if (typeof value.operation !== "string") throw new ProtocolError("an admission request needs `operation`");
  return {
    type: "admission",
    operation: value.operation,
    object: value.object ?? null,
    oldObject: value.oldObject ?? null,
    kind: value.kind || {},
    resource: value.resource || {},
    subResource: value.subResource,
    name: value.name || "",
    namespace: value.namespace,
    userInfo: value.userInfo || {},
    dryRun: Boolean(value.dryRun),
    controller: value.controller || {},
  };
}

/** An AdmissionController's convert request: `objects`, each to be returned in `desiredAPIVersion`. */
function parseConversionRequest(input) {
  const value = body(input);
  if (typeof value.desiredAPIVersion !== "string" || !Array.isArray(value.objects)) {
    throw new ProtocolError("a conversion request needs `desiredAPIVersion` and `objects`");
  }
  return { type: "conversion", desiredAPIVersion: value.desiredAPIVersion, objects: value.objects, controller: value.controller || {} };
}

/** An admission answer that admits, with warnings kubectl prints. */
function allow(...warnings) {
  return warnings.length ? { allowed: true, warnings } : { allowed: true };
}

/** An admission answer that refuses with `message`. */
function deny(message, ...warnings) {
  return warnings.length ? { allowed: false, message, warnings } : { allowed: false, message };
}

function child(apiVersion, kind, name, options = {}) {
  const { labels, annotations, ...fields } = options;
  const metadata = { name };
  if (labels && Object.keys(labels).length) metadata.labels = { ...labels };
  if (annotations && Object.keys(annotations).length) metadata.annotations = { ...annotations };
  return { apiVersion, kind, metadata, ...fields };
}

/** `<parent>-<suffix>` as a DNS-1123 label, shortened with a hash of the whole when longer than `maxLength`. */
function ownerSafeName(parent, suffix = "", maxLength = 63) {
  const base = parent.metadata.name + (suffix ? `-${suffix}` : "");
  const name = base.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "") || "child";
  if (name.length <= maxLength) return name;
  const digest = crypto.createHash("sha256").update(base).digest("hex").slice(0, 8);
  return `${name.slice(0, maxLength - 9).replace(/-+$/, "")}-${digest}`;
}

/** The usual labels of a parent's children, plus `extra`. */
function labelsFor(parent, extra = {}) {
  return { "app.kubernetes.io/instance": parent.metadata.name, "app.kubernetes.io/managed-by": "bosun", ...extra };
}

/** kubectl's guess at a resource name from a kind (the engine asks discovery). */
function plural(kind) {
  const lower = kind.toLowerCase();
  if (/[^aeiou]y$/.test(lower)) return `${lower.slice(0, -1)}ies`;
  if (/(s|x|z|ch|sh)$/.test(lower)) return `${lower}es`;
  return `${lower}s`;
}

/** What the engine would refuse in `response` to `request`, as messages (empty: nothing). */
function checkResponse(request, response) {
  const decorator = request.type === "decorator";
  const field = decorator ? "attachments" : "children";
  const items = response[field] === undefined || response[field] === null ? [] : response[field];
  if (!Array.isArray(items)) return [`${field} must be a list, not ${typeof items}`];
  const spec = request.controller.spec || {};
  const declared = new Set((spec[decorator ? "attachments" : "childResources"] || []).map((rule) => `${rule.apiVersion} ${rule.resource}`));
  const problems = [];
  items.forEach((item, index) => {
    const where = `${field}[${index}]`;
    if (typeof item !== "object" || item === null || Array.isArray(item)) return problems.push(`${where} is not an object`);
    const metadata = item.metadata || {};
    if (!item.apiVersion || !item.kind) return problems.push(`${where} has no apiVersion or kind`);
    if (!metadata.name) problems.push(`${where} (${item.kind}) has no metadata.name`);
    if (request.namespace && metadata.namespace && metadata.namespace !== request.namespace) {
      problems.push(`${where} is in namespace ${JSON.stringify(metadata.namespace)}, but a parent in namespace ${JSON.stringify(request.namespace)} can only own children in its own`);
    }
    if (!declared.has(`${item.apiVersion} ${plural(item.kind)}`)) problems.push(`${where} is a ${item.kind} in ${item.apiVersion}, which the controller does not declare`);
  });
  return problems;
}

/** Serves one handler per hook: `hooks.sync(handler)`, `hooks.finalize(…)`, `hooks.customize(…)`, `hooks.route(path, …)`. */
class HookServer {
  constructor() {
    this.routes = new Map();
  }

  route(path, handler, parse = parseRequest) {
    this.routes.set(path, (input) => handler(parse(input)));
    return this;
  }

  sync(handler) {
    return this.route("/sync", handler);
  }

  finalize(handler) {
    return this.route("/finalize", handler);
  }

  customize(handler) {
    return this.route("/customize", handler, parseCustomizeRequest);
  }

  /** An AdmissionController's validate hook, at `/validate`. */
  validate(handler) {
    return this.route("/validate", handler, parseAdmissionRequest);
  }

  /** An AdmissionController's mutate hook, at `/mutate`: answer `{ object }`, the object as it should be stored. */
  mutate(handler) {
    return this.route("/mutate", handler, parseAdmissionRequest);
  }

  /** An AdmissionController's convert hook, at `/convert`: answer `{ objects }`. */
  convert(handler) {
    return this.route("/convert", handler, parseConversionRequest);
  }

  /** Serves in the background; resolves once listening (port 0: a free one). */
  start({ port = 0, address = "127.0.0.1" } = {}) {
    const server = http.createServer((request, response) => this.handle(request, response));
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, address, () => {
        const actual = server.address().port;
        resolve({
          port: actual,
          url: `http://${address}:${actual}`,
          // Stops taking connections, and resolves once the calls in flight are answered.
          stop: () => new Promise((done) => {
            server.close(() => done());
            server.closeIdleConnections();
          }),
        });
      });
    });
  }

  /** Serves until SIGTERM or SIGINT, then stops once the calls in flight are answered. */
  async serve({ port = 8080, address = "127.0.0.1" } = {}) {
    const running = await this.start({ port, address });
    console.log(`hooks listening on ${running.url} (${[...this.routes.keys()].sort().join(", ")})`);
    await new Promise((resolve) => {
      process.once("SIGTERM", resolve);
      process.once("SIGINT", resolve);
    });
    await running.stop();
  }

  /**
   * Answers one call as an exec hook: the request read from standard input, handled by the
   * hook at `path`, the response written to standard output. Resolves to the exit status: 0,
   * or 1 (with why on standard error) when the request is not one or the handler fails.
   */
  async runOnce(path = "/sync", { stdin = process.stdin, stdout = process.stdout } = {}) {
    const route = this.routes.get(path);
    if (!route) {
      console.error(`no hook at ${path}; there are ${[...this.routes.keys()].sort().join(", ")}`);
      return 1;
    }
    const chunks = [];
    for await (const chunk of stdin) chunks.push(Buffer.from(chunk));
    let answer;
    try {
      answer = await route(Buffer.concat(chunks));
    } catch (error) {
      console.error(`hook ${path} failed: ${error.name}: ${error.message}`);
      return 1;
    }
    await new Promise((resolve) => stdout.write(JSON.stringify(answer), resolve));
    return 0;
  }

  handle(request, response) {
    const reply = (code, value) => {
      const data = Buffer.from(JSON.stringify(value));
      response.writeHead(code, { "Content-Type": "application/json", "Content-Length": data.length });
      response.end(data);
    };
    const path = (request.url || "").split("?")[0];
    if (request.method === "GET") return reply(path === "/healthz" ? 200 : 404, path === "/healthz" ? { status: "ok" } : { error: `nothing at ${path}` });
    const route = this.routes.get(path);
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", async () => {
      if (request.method !== "POST" || !route) return reply(404, { error: `no hook at ${path}` });
      let answer;
      try {
        answer = await route(Buffer.concat(chunks));
      } catch (error) {
        if (error instanceof ProtocolError) return reply(400, { error: error.message });
        console.error(`hook ${path} failed:`, error);
        return reply(500, { error: `${error.name}: ${error.message}` });
      }
      reply(200, answer);
    });
  }
}

/** The vectors in `directory`: itself if it holds request.json, else each subdirectory that does. */
function loadVectors(directory) {
  const read = (dir, name) => {
    const file = path.join(dir, name);
    return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : undefined;
  };
  const dirs = fs.existsSync(path.join(directory, "request.json"))
    ? [directory]
    : fs.readdirSync(directory).sort().map((name) => path.join(directory, name)).filter((dir) => fs.existsSync(path.join(dir, "request.json")));
  return dirs.map((dir) => {
    const expect = read(dir, "expect.json") || {};
    return {
      name: path.basename(dir), request: read(dir, "request.json"), response: read(dir, "response.json"), expect,
      customizeRequest: read(dir, "customize-request.json"), customizeResponse: read(dir, "customize.json"),
      refused: expect.outcome === "Failed",
    };
  });
}

/** Calls `handler` with each accepted vector's request and compares its answer with the recording; returns what differs. */
async function runVectors(handler, directory) {
  const problems = [];
  for (const vector of loadVectors(directory)) {
    if (vector.refused) continue;
    const answer = JSON.parse(JSON.stringify(await handler(parseRequest(vector.request))));
    if (!sameJson(answer, vector.response)) {
      problems.push(`${vector.name}: the handler answered ${JSON.stringify(answer)}, the recording ${JSON.stringify(vector.response)}`);
    }
  }
  return problems;
}

function sameJson(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => Object.prototype.hasOwnProperty.call(b, key) && sameJson(a[key], b[key]));
}

module.exports = {
  HookServer, ObjectMap, ProtocolError, allow, checkResponse, child, deny, groupKey, labelsFor, loadVectors, ownerSafeName,
  parseAdmissionRequest, parseConversionRequest, parseCustomizeRequest, parseRequest, runVectors,
};
