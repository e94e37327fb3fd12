// Admission and conversion hooks: the SDK reads every request of the shared admission vectors
// (protocol/admission/) and, served through HookServer's validate, mutate and convert, answers
// each vector's response.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { HookServer, ProtocolError, allow, deny, parseAdmissionRequest, parseConversionRequest } = require("..");

const ADMISSION = path.resolve(__dirname, "../../../protocol/admission");

function vectors() {
  return fs.readdirSync(ADMISSION).sort().map((name) => {
    const read = (file) => JSON.parse(fs.readFileSync(path.join(ADMISSION, name, file), "utf8"));
    return { name, hook: read("review.json").hook, request: read("request.json"), response: read("response.json") };
  });
}

test("every admission vector parses and is answered through the server", async () => {
  const answers = {};
  const hooks = new HookServer()
    .validate((request) => answers.validate(request))
    .mutate((request) => answers.mutate(request))
    .convert((request) => answers.convert(request));
  const running = await hooks.start();
  try {
    const all = vectors();
    assert.ok(all.length >= 6);
    for (const vector of all) {
      const parsed = vector.hook === "convert" ? parseConversionRequest(vector.request) : parseAdmissionRequest(vector.request);
      if (vector.hook === "convert") {
        assert.deepEqual(parsed.objects, vector.request.objects, vector.name);
      } else {
        assert.deepEqual(parsed.object, vector.request.object, vector.name);
        assert.equal(parsed.userInfo.username, "alice", vector.name);
      }
      answers[vector.hook] = () => vector.response;
      const response = await fetch(`${running.url}/${vector.hook}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(vector.request),
      });
      assert.deepEqual(await response.json(), vector.response, vector.name);
    }
  } finally {
    await running.stop();
  }
});

test("allow and deny build the answers", () => {
  assert.deepEqual(deny("no", "careful"), { allowed: false, message: "no", warnings: ["careful"] });
  assert.deepEqual(allow(), { allowed: true });
  assert.throws(() => parseAdmissionRequest({ object: {} }), ProtocolError);
  assert.throws(() => parseConversionRequest({ objects: [] }), ProtocolError);
});
