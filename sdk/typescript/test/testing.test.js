// runVectors replays recorded exchanges against a handler and says where it differs.
const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { child, runVectors } = require("..");
const { VECTORS } = require("./vectors");

// The hook composite-create was recorded with.
const greeting = (request) => ({ status: { greetings: 1 }, children: [child("v1", "ConfigMap", `${request.name}-greeting`, { data: { greeting: request.parent.spec.greeting } })] });

test("a handler that answers as recorded passes", async () => {
  assert.deepEqual(await runVectors(greeting, path.join(VECTORS, "composite-create")), []);
});

test("one that does not is named, and refused exchanges are not replayed", async () => {
  const problems = await runVectors(() => ({ children: [] }), VECTORS);
  assert.ok(problems.some((problem) => problem.startsWith("composite-create:")), problems.join("\n"));
  assert.ok(!problems.some((problem) => problem.startsWith("refused-")));
});
