// Compiled (not run) by `npm run typecheck`: every type of index.d.ts in use, as a hook author
// writes it.
import { CompositeResponse, CustomizeResponse, DecoratorResponse, HookServer, Request, checkResponse, child, labelsFor, ownerSafeName, parseRequest, runVectors } from "../index";

const hooks = new HookServer();

hooks.sync((request: Request): CompositeResponse | DecoratorResponse => {
  if (request.type === "decorator") {
    return { labels: { seen: "yes", gone: null }, annotations: { note: "x" }, attachments: [], status: { attachments: 0 } };
  }
  const existing = request.children.get("ConfigMap", "v1", ownerSafeName(request.parent, "config"));
  const config = child("v1", "ConfigMap", ownerSafeName(request.parent, "config"), { labels: labelsFor(request.parent), data: { seen: String(Boolean(existing)) } });
  const response: CompositeResponse = { status: { children: request.children.objects().length }, children: [config], resyncAfterSeconds: 30, events: [{ type: "Normal", reason: "Synced", message: "ok" }] };
  const problems: string[] = checkResponse(request, response);
  return problems.length ? { children: [] } : response;
});

hooks.customize((request): CustomizeResponse => ({ relatedResources: [{ apiVersion: "v1", resource: "secrets", labelSelector: { matchLabels: { app: request.parent.metadata.name } } }] }));

async function replay(): Promise<string[]> {
  const request = parseRequest('{"controller": {}, "parent": {}}');
  void request.name;
  return runVectors(() => ({ children: [] }), "vectors");
}
void replay;
