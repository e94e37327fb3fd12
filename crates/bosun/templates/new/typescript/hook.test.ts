// Replays the exchanges recorded with `bosun hook test controller.yaml sample.yaml --save
// vectors/sample`: `npm run build && npm test`.
import test from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { runVectors } from "bosun-hooks";
import { sync } from "./hook";

const vectors = path.join(__dirname, "..", "vectors");

test("the hook answers as recorded", { skip: !existsSync(vectors) && "nothing recorded yet: bosun hook test controller.yaml sample.yaml --save vectors/sample" }, async () => {
  assert.deepEqual(await runVectors(sync, vectors), []);
});
