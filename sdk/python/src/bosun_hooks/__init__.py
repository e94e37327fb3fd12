"""Write Metacontroller and bosun hooks in Python, with the standard library only.

    from bosun_hooks import CompositeRequest, CompositeResponse, HookServer, child, owner_safe_name

    hooks = HookServer()

    @hooks.sync
    def sync(request: CompositeRequest) -> CompositeResponse:
        name = owner_safe_name(request.parent, "greeting")
        config_map = child("v1", "ConfigMap", name, data={"message": request.parent["spec"]["message"]})
        return CompositeResponse(status={"configMaps": 1}, children=[config_map])

    hooks.serve(8080)

Admission and conversion hooks of an AdmissionController use `@hooks.validate`, `@hooks.mutate`
and `@hooks.convert` (AdmissionRequest/AdmissionResponse, ConversionRequest/ConversionResponse).

`bosun_hooks.testing` replays recorded exchanges (`bosun hook test --save`) against a handler.
"""

from .admission import (
    AdmissionRequest,
    AdmissionResponse,
    ConversionRequest,
    ConversionResponse,
    parse_admission_request,
    parse_conversion_request,
)
from .children import check_response, child, labels_for, owner_safe_name
from .protocol import (
    CompositeRequest,
    CompositeResponse,
    CustomizeRequest,
    CustomizeResponse,
    DecoratorRequest,
    DecoratorResponse,
    Event,
    Object,
    ObjectMap,
    ProtocolError,
    RelatedRule,
    Request,
    group_key,
    parse_customize_request,
    parse_request,
    response_json,
)
from .server import HookServer, RunningServer

__version__ = "0.1.0"

__all__ = [
    "AdmissionRequest",
    "AdmissionResponse",
    "ConversionRequest",
    "ConversionResponse",
    "CompositeRequest",
    "CompositeResponse",
    "CustomizeRequest",
    "CustomizeResponse",
    "DecoratorRequest",
    "DecoratorResponse",
    "Event",
    "HookServer",
    "Object",
    "ObjectMap",
    "ProtocolError",
    "RelatedRule",
    "Request",
    "RunningServer",
    "check_response",
    "child",
    "group_key",
    "labels_for",
    "owner_safe_name",
    "parse_admission_request",
    "parse_conversion_request",
    "parse_customize_request",
    "parse_request",
    "response_json",
]
