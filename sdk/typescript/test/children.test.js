// Child helpers: names safe for any kind, the usual labels, objects in the expected shape.
const test = require("node:test");
const assert = require("node:assert/strict");
const { child, labelsFor, ownerSafeName } = require("..");

const parent = { apiVersion: "x/v1", kind: "Thing", metadata: { name: "Web_Front", namespace: "a" } };

test("a child name is the parent's with a suffix, as a DNS label", () => {
  assert.equal(ownerSafeName(parent, "config"), "web-front-config");
  assert.equal(ownerSafeName(parent), "web-front");
});

test("a long name is shortened with a hash that tells parents apart", () => {
  const one = ownerSafeName({ metadata: { name: "a".repeat(60) } }, "config");
  const other = ownerSafeName({ metadata: { name: "a".repeat(61) } }, "config");
  assert.ok(one.length <= 63);
  assert.notEqual(one, other);
  assert.match(one, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
});

test("children and labels", () => {
  const labels = labelsFor(parent, { tier: "web" });
  assert.equal(labels["app.kubernetes.io/instance"], "Web_Front");
  const made = child("v1", "ConfigMap", "web-front-config", { labels, data: { a: "b" } });
  assert.deepEqual(made, { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "web-front-config", labels }, data: { a: "b" } });
});
