// The SDK reads every request of the shared protocol vectors, and finds what the engine refuses.
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { ProtocolError, checkResponse, loadVectors, parseCustomizeRequest, parseRequest } = require("..");
const { VECTORS } = require("./vectors");

test("every vector request parses into its type", () => {
  const vectors = loadVectors(VECTORS);
  assert.ok(vectors.length >= 10);
  for (const vector of vectors) {
    const request = parseRequest(vector.request);
    if ("object" in vector.request) {
      assert.equal(request.type, "decorator", vector.name);
      assert.deepEqual(request.attachments.toJSON(), vector.request.attachments);
    } else {
      assert.equal(request.type, "composite", vector.name);
      assert.deepEqual(request.children.toJSON(), vector.request.children);
    }
    assert.equal(request.name, "one");
    assert.equal(request.namespace, "vectors");
    assert.equal(request.finalizing, vector.request.finalizing);
  }
});

test("children are found by name whichever key form the hook version uses", () => {
  for (const name of ["composite-update", "composite-v2-keys"]) {
    const [vector] = loadVectors(path.join(VECTORS, name));
    const request = parseRequest(vector.request);
    assert.equal(request.children.get("ConfigMap", "v1", "one-greeting").metadata.name, "one-greeting", name);
    assert.equal(request.children.get("ConfigMap", "v1", "missing"), undefined);
    assert.equal(request.children.objects().length, 1);
  }
});

test("related objects and customize requests", () => {
  const [vector] = loadVectors(path.join(VECTORS, "composite-related"));
  assert.deepEqual(parseRequest(vector.request).related.get("ConfigMap", "v1", "settings").data, { colour: "blue" });
  assert.equal(parseCustomizeRequest(vector.customizeRequest).parent.metadata.name, "one");
});

test("what is not a request is refused", () => {
  for (const body of ["not json", "[]", "{}", '{"controller": {}}']) {
    assert.throws(() => parseRequest(body), ProtocolError, body);
  }
});

test("the engine's refusals are found before answering, and nothing else", () => {
  for (const vector of loadVectors(VECTORS)) {
    const problems = checkResponse(parseRequest(vector.request), vector.response);
    if (vector.refused) assert.ok(problems.length > 0, `${vector.name}: the engine refused it: ${vector.expect.message}`);
    else assert.deepEqual(problems, [], vector.name);
  }
});

test("the module exports what index.d.ts declares", () => {
  const declared = [...require("node:fs").readFileSync(path.join(__dirname, "../index.d.ts"), "utf8").matchAll(/^export declare (?:function|class) (\w+)/gm)].map((match) => match[1]);
  assert.deepEqual(Object.keys(require("..")).sort(), declared.sort());
});
