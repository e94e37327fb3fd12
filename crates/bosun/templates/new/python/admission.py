

DEFAULT_MESSAGE = "Hello from a __KIND__"


@hooks.mutate
def mutate(request: AdmissionRequest) -> AdmissionResponse:
    """A __KIND__ without `spec.message` gets the default one (admission.yaml: before it is stored)."""
    spec = (request.object or {}).get("spec") or {}
    if request.object is None or "message" in spec:
        return AdmissionResponse.allow()
    defaulted = {**request.object, "spec": {**spec, "message": DEFAULT_MESSAGE}}
    return AdmissionResponse(object=defaulted, warnings=[f"spec.message defaulted to {DEFAULT_MESSAGE!r}"])


@hooks.validate
def validate(request: AdmissionRequest) -> AdmissionResponse:
    """A __KIND__ whose `spec.message` is empty is refused, with what to do instead."""
    if ((request.object or {}).get("spec") or {}).get("message") == "":
        return AdmissionResponse.deny("spec.message is empty: write a message, or leave the field out for the default")
    return AdmissionResponse.allow()
