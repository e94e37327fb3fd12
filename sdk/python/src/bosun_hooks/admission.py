"""Admission and conversion hooks of a bosun AdmissionController (docs/admission.md): the
requests bosun sends a `validate`, `mutate` or `convert` hook, and the answers it takes. bosun
serves the endpoint the API server calls, its certificates and the webhook configurations; a
hook only decides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

from .protocol import Object, ProtocolError, _body


@dataclass(frozen=True)
class AdmissionRequest:
    """What a validate or mutate hook is asked about: the object (None for a delete), the old
    object (updates and deletes), the operation, who asks, whether it is a dry run."""

    operation: str
    object: Optional[Object]
    old_object: Optional[Object]
    kind: Object
    resource: Object
    name: str
    namespace: Optional[str]
    user_info: Object
    dry_run: bool
    controller: Object
    sub_resource: Optional[str] = None


def parse_admission_request(body: Union[bytes, str, Mapping[str, Any]]) -> AdmissionRequest:
    """A validate or mutate request."""
    body = _body(body)
    if not isinstance(body.get("operation"), str):
        raise ProtocolError("an admission request needs `operation`")
    return AdmissionRequest(
        operation=body["operation"],
        object=body.get("object"),
        old_object=body.get("oldObject"),
        kind=body.get("kind") or {},
        resource=body.get("resource") or {},
        name=body.get("name") or "",
        namespace=body.get("namespace"),
        user_info=body.get("userInfo") or {},
        dry_run=bool(body.get("dryRun", False)),
        controller=body.get("controller") or {},
        sub_resource=body.get("subResource"),
    )


@dataclass
class AdmissionResponse:
    """A validate or mutate hook's answer. `allowed=False` refuses with `message`; `warnings`
    are shown by kubectl either way; a mutate hook sets `object` to the object as it should be
    stored (bosun computes the patch) or `patch` to a JSON patch."""

    allowed: bool = True
    message: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    object: Optional[Object] = None
    patch: Optional[List[Object]] = None

    @classmethod
    def allow(cls, *warnings: str) -> "AdmissionResponse":
        return cls(allowed=True, warnings=list(warnings))

    @classmethod
    def deny(cls, message: str, *warnings: str) -> "AdmissionResponse":
        return cls(allowed=False, message=message, warnings=list(warnings))

    def to_json(self) -> Object:
        response: Object = {"allowed": self.allowed}
        if self.message is not None:
            response["message"] = self.message
        if self.warnings:
            response["warnings"] = list(self.warnings)
        if self.object is not None:
            response["object"] = self.object
        if self.patch is not None:
            response["patch"] = self.patch
        return response


@dataclass(frozen=True)
class ConversionRequest:
    """What a convert hook is asked: `objects`, each to be returned in `desired_api_version`."""

    desired_api_version: str
    objects: List[Object]
    controller: Object


def parse_conversion_request(body: Union[bytes, str, Mapping[str, Any]]) -> ConversionRequest:
    """A convert request."""
    body = _body(body)
    desired = body.get("desiredAPIVersion")
    objects = body.get("objects")
    if not isinstance(desired, str) or not isinstance(objects, list):
        raise ProtocolError("a conversion request needs `desiredAPIVersion` and `objects`")
    return ConversionRequest(desired, objects, body.get("controller") or {})


@dataclass
class ConversionResponse:
    """A convert hook's answer: the objects converted, in the same order — or, to refuse,
    `message` saying why."""

    objects: Optional[List[Object]] = None
    message: Optional[str] = None

    def to_json(self) -> Object:
        response: Dict[str, Any] = {}
        if self.objects is not None:
            response["objects"] = self.objects
        if self.message is not None:
            response["message"] = self.message
        return response
