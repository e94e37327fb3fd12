// The __NAME__ hook: each __KIND__ gets a ConfigMap holding its `spec.message`.__ADMISSION_SUMMARY__
//
// `bosun dev --project .` builds it (npm install, tsc) and runs it (node dist/hook.js PORT);
// `bosun hook test controller.yaml sample.yaml` shows what it would do. vendor/bosun-hooks is
// bosun's SDK for Node.js, without dependencies.
import { HookServer, Request, __RESPONSE__, child, labelsFor, ownerSafeName__ADMISSION_IMPORTS__ } from "bosun-hooks";

export function sync(request: Request): __RESPONSE__ {
  if (request.type !== "__TYPE__") throw new Error("__NAME__ is a __CONTROLLER__");
  const parent = request.__SUBJECT__;
  const spec = (parent.spec ?? {}) as { message?: string };
  const message = String(spec.message ?? "");
  const configMap = child("v1", "ConfigMap", ownerSafeName(parent, "message"), { labels: labelsFor(parent), data: { message } });
  if (request.namespace === undefined) configMap.metadata.namespace = "default"; // a cluster-scoped __KIND__ keeps its ConfigMap in default
  return { status: { message }, __CHILDREN__: [configMap] };
}
__ADMISSION_HOOKS__
if (require.main === module) {
  new HookServer().sync(sync)__ADMISSION_ROUTES__.serve({ port: Number(process.argv[2] ?? 8080) });
}
