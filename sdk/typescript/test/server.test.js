// The server as the engine meets it: HTTP/1.1 with Content-Length, several calls on one
// connection, JSON errors, a health path, and a stop that lets a call in flight finish.
const test = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const path = require("node:path");
const { HookServer, child, loadVectors } = require("..");
const { VECTORS } = require("./vectors");

const [vector] = loadVectors(path.join(VECTORS, "composite-create"));

function post(agent, url, pathname, body) {
  const data = Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const request = http.request(`${url}${pathname}`, { method: "POST", agent, headers: { "Content-Type": "application/json", "Content-Length": data.length } }, (response) => {
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode, length: response.headers["content-length"], body: JSON.parse(Buffer.concat(chunks).toString()), socket: request.socket }));
    });
    request.on("error", reject);
    request.end(data);
  });
}

function server(release) {
  const hooks = new HookServer();
  hooks.sync(async (request) => {
    if (request.parent.spec.slow) await release;
    if (request.parent.spec.fail) throw new Error("the handler failed");
    return { status: { seen: request.name }, children: [child("v1", "ConfigMap", `${request.name}-c`, { data: {} })] };
  });
  hooks.customize(() => ({ relatedResources: [] }));
  return hooks.start();
}

test("calls on one connection are answered with Content-Length", async () => {
  const running = await server();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const first = await post(agent, running.url, "/sync", vector.request);
  const second = await post(agent, running.url, "/sync", vector.request);
  assert.equal(first.socket, second.socket, "one connection");
  for (const answer of [first, second]) {
    assert.equal(answer.status, 200);
    assert.equal(Number(answer.length), Buffer.byteLength(JSON.stringify(answer.body)));
    assert.deepEqual(answer.body.status, { seen: "one" });
  }
  assert.deepEqual((await post(agent, running.url, "/customize", { controller: {}, parent: vector.request.parent })).body, { relatedResources: [] });
  agent.destroy();
  await running.stop();
});

test("errors are JSON with a status", async () => {
  const running = await server();
  const agent = new http.Agent();
  assert.equal((await post(agent, running.url, "/sync", "not json")).status, 400);
  assert.equal((await post(agent, running.url, "/elsewhere", vector.request)).status, 404);
  const failing = JSON.parse(JSON.stringify(vector.request));
  failing.parent.spec.fail = true;
  const failed = await post(agent, running.url, "/sync", failing);
  assert.equal(failed.status, 500);
  assert.match(failed.body.error, /the handler failed/);
  const health = await new Promise((resolve) => http.get(`${running.url}/healthz`, (response) => resolve(response.statusCode)));
  assert.equal(health, 200);
  await running.stop();
});

test("a stop lets the call in flight finish", async () => {
  let open;
  const release = new Promise((resolve) => (open = resolve));
  const running = await server(release);
  const slow = JSON.parse(JSON.stringify(vector.request));
  slow.parent.spec.slow = true;
  const call = post(new http.Agent(), running.url, "/sync", slow);
  await new Promise((resolve) => setTimeout(resolve, 100));
  let stopped = false;
  const stopping = running.stop().then(() => (stopped = true));
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(stopped, false, "still in flight");
  open();
  assert.equal((await call).status, 200);
  await stopping;
});

// runOnce: the hook as an exec hook, one call on standard input and output.
test("runOnce answers one call from stdin on stdout, and fails with an exit status", async () => {
  const { Readable, Writable } = require("node:stream");
  const hooks = new HookServer().sync((request) => {
    if (request.parent.spec && request.parent.spec.fail) throw new Error("the handler failed");
    return { status: { seen: request.name }, children: [] };
  });
  const run = async (body, route) => {
    let written = "";
    const stdout = new Writable({ write(chunk, _encoding, done) { written += chunk; done(); } });
    const status = await hooks.runOnce(route, { stdin: Readable.from([Buffer.from(body)]), stdout });
    return { status, written };
  };
  const ok = await run(JSON.stringify(vector.request), "/sync");
  assert.equal(ok.status, 0);
  assert.deepEqual(JSON.parse(ok.written), { status: { seen: vector.request.parent.metadata.name }, children: [] });
  const failing = { ...vector.request, parent: { ...vector.request.parent, spec: { fail: true } } };
  assert.deepEqual(await run(JSON.stringify(failing), "/sync"), { status: 1, written: "" });
  assert.deepEqual(await run("not json", "/sync"), { status: 1, written: "" });
  assert.deepEqual(await run("{}", "/finalize"), { status: 1, written: "" });
});
