// The ingress annotator's hook answers the exchanges recorded with `bosun hook test --save
// vectors/<name>` as it answered then: `node --test examples/ingress-annotator/test/*.test.js`.
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { runVectors } = require("../../../sdk/typescript");
const { sync } = require("../hook");

test("the hook answers as recorded", async () => {
  assert.deepEqual(await runVectors(sync, path.join(__dirname, "../vectors")), []);
});
