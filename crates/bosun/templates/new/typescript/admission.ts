
export const DEFAULT_MESSAGE = "Hello from a __KIND__";

/** A __KIND__ without `spec.message` gets the default one (admission.yaml: before it is stored). */
export function mutate(request: AdmissionRequest): AdmissionResponse {
  const object = request.object;
  const spec = (object?.spec ?? {}) as { message?: unknown };
  if (object === null || spec.message !== undefined) return allow();
  return { object: { ...object, spec: { ...spec, message: DEFAULT_MESSAGE } }, warnings: [`spec.message defaulted to "${DEFAULT_MESSAGE}"`] };
}

/** A __KIND__ whose `spec.message` is empty is refused, with what to do instead. */
export function validate(request: AdmissionRequest): AdmissionResponse {
  const spec = (request.object?.spec ?? {}) as { message?: unknown };
  if (spec.message === "") return deny("spec.message is empty: write a message, or leave the field out for the default");
  return allow();
}
