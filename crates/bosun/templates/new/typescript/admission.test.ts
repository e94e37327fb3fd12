// The admission hooks, called as bosun calls them: `npm run build && npm test`.
import test from "node:test";
import assert from "node:assert/strict";
import { parseAdmissionRequest } from "bosun-hooks";
import { DEFAULT_MESSAGE, mutate, validate } from "./hook";

const request = (spec: Record<string, unknown>) =>
  parseAdmissionRequest({ operation: "CREATE", object: { apiVersion: "__GROUP__/__VERSION__", kind: "__KIND__", metadata: { name: "sample" }, spec } });

test("an empty message is refused", () => {
  const answer = validate(request({ message: "" }));
  assert.equal(answer.allowed, false);
  assert.match(answer.message ?? "", /spec.message is empty/);
});

test("a message is allowed as it is", () => {
  assert.notEqual(validate(request({ message: "hi" })).allowed, false);
  assert.equal(mutate(request({ message: "hi" })).object, undefined);
});

test("a missing message is defaulted", () => {
  const answer = mutate(request({}));
  assert.equal((answer.object?.spec as { message?: string }).message, DEFAULT_MESSAGE);
  assert.notEqual(validate(request(answer.object?.spec as Record<string, unknown>)).allowed, false);
});
