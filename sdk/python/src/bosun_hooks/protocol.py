"""The hook protocol's messages as Python types: what the engine sends a sync, finalize or
customize hook, and what the hook answers (Metacontroller's JSON, field for field)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

Object = Dict[str, Any]
"""A Kubernetes object, as JSON: `apiVersion`, `kind`, `metadata`, …"""


class ProtocolError(ValueError):
    """A message that does not follow the protocol."""


def group_key(kind: str, api_version: str) -> str:
    """The outer key of an object map: `Kind.apiVersion`, e.g. `Ingress.networking.k8s.io/v1`."""
    return f"{kind}.{api_version}"


class ObjectMap(Mapping[str, Dict[str, Object]]):
    """Objects by type (`Kind.apiVersion`), then by key: the name for objects in the parent's
    namespace (hook version v1), or `namespace/name` (v2, and v1 for other namespaces)."""

    def __init__(self, raw: Optional[Mapping[str, Mapping[str, Object]]], namespace: Optional[str]):
        if raw is not None and not isinstance(raw, Mapping):
            raise ProtocolError(f"an object map must be an object, not {type(raw).__name__}")
        self._raw: Dict[str, Dict[str, Object]] = {key: dict(objects or {}) for key, objects in (raw or {}).items()}
        self._namespace = namespace

    def __getitem__(self, key: str) -> Dict[str, Object]:
        return self._raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def of(self, kind: str, api_version: str) -> Dict[str, Object]:
        """The objects of one type, by key (empty when there are none)."""
        return self._raw.get(group_key(kind, api_version), {})

    def get_object(self, kind: str, api_version: str, name: str, namespace: Optional[str] = None) -> Optional[Object]:
        """The object of that type and name (in `namespace`, by default the parent's), whichever
        key form the hook version uses."""
        objects = self.of(kind, api_version)
        namespace = namespace if namespace is not None else self._namespace
        for key in ([f"{namespace}/{name}"] if namespace else []) + [name]:
            if key in objects:
                return objects[key]
        return None

    def objects(self) -> List[Object]:
        """Every object, of every type."""
        return [item for objects in self._raw.values() for item in objects.values()]

    def to_json(self) -> Dict[str, Dict[str, Object]]:
        return {key: dict(objects) for key, objects in self._raw.items()}


def _object(body: Mapping[str, Any], key: str) -> Object:
    value = body.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"the request has no {key!r} object")
    return value


def _namespace(item: Object) -> Optional[str]:
    return (item.get("metadata") or {}).get("namespace")


class _AboutAnObject:
    """The name and namespace of the parent (or target) a request is about."""

    def _subject(self) -> Object:
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The parent's (or target's) name."""
        return self._subject()["metadata"]["name"]

    @property
    def namespace(self) -> Optional[str]:
        """The parent's (or target's) namespace; None when it is cluster-scoped."""
        return _namespace(self._subject())


@dataclass(frozen=True)
class CompositeRequest(_AboutAnObject):
    """A CompositeController's sync or finalize request."""

    controller: Object
    parent: Object
    children: ObjectMap
    related: ObjectMap
    finalizing: bool = False

    def _subject(self) -> Object:
        return self.parent


@dataclass(frozen=True)
class DecoratorRequest(_AboutAnObject):
    """A DecoratorController's sync or finalize request: `object` is the target."""

    controller: Object
    object: Object
    attachments: ObjectMap
    related: ObjectMap
    finalizing: bool = False

    def _subject(self) -> Object:
        return self.object


@dataclass(frozen=True)
class CustomizeRequest:
    """A customize request: which related objects does this parent (or target) need?"""

    controller: Object
    parent: Object


Request = Union[CompositeRequest, DecoratorRequest]


def _body(body: Union[bytes, str, Mapping[str, Any]]) -> Mapping[str, Any]:
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError as error:
            raise ProtocolError(f"the request is not JSON: {error}") from None
    if not isinstance(body, Mapping):
        raise ProtocolError("the request is not a JSON object")
    return body


def parse_request(body: Union[bytes, str, Mapping[str, Any]]) -> Request:
    """A sync or finalize request: a DecoratorController's when it has `object`, else a
    CompositeController's."""
    body = _body(body)
    controller = _object(body, "controller")
    finalizing = bool(body.get("finalizing", False))
    if "object" in body:
        target = _object(body, "object")
        namespace = _namespace(target)
        return DecoratorRequest(controller, target, ObjectMap(body.get("attachments"), namespace), ObjectMap(body.get("related"), namespace), finalizing)
    parent = _object(body, "parent")
    namespace = _namespace(parent)
    return CompositeRequest(controller, parent, ObjectMap(body.get("children"), namespace), ObjectMap(body.get("related"), namespace), finalizing)


def parse_customize_request(body: Union[bytes, str, Mapping[str, Any]]) -> CustomizeRequest:
    """A customize request."""
    body = _body(body)
    return CustomizeRequest(_object(body, "controller"), _object(body, "parent"))


@dataclass
class Event:
    """An event the engine records on the parent (bosun's extension; Metacontroller ignores it).
    `reason` is one word (at most 128 characters); `type` is Normal or Warning."""

    reason: str
    message: str
    type: str = "Normal"

    def to_json(self) -> Object:
        return {"type": self.type, "reason": self.reason, "message": self.message}


def _common(response: Object, resync_after_seconds: Optional[float], finalized: Optional[bool], events: List[Event]) -> Object:
    if resync_after_seconds is not None:
        response["resyncAfterSeconds"] = resync_after_seconds
    if finalized is not None:
        response["finalized"] = finalized
    if events:
        response["events"] = [event.to_json() for event in events]
    return response


@dataclass
class CompositeResponse:
    """A CompositeController hook's answer: the parent's status, every child it should have
    (one left out is deleted), and optionally when to sync again and whether finalizing is
    done."""

    status: Optional[Object] = None
    children: List[Object] = field(default_factory=list)
    resync_after_seconds: Optional[float] = None
    finalized: Optional[bool] = None
    events: List[Event] = field(default_factory=list)

    def to_json(self) -> Object:
        response: Object = {"children": list(self.children)}
        if self.status is not None:
            response["status"] = self.status
        return _common(response, self.resync_after_seconds, self.finalized, self.events)


@dataclass
class DecoratorResponse:
    """A DecoratorController hook's answer: labels and annotations for the target (a value of
    None removes one), its status, and every attachment it should have."""

    labels: Optional[Dict[str, Optional[str]]] = None
    annotations: Optional[Dict[str, Optional[str]]] = None
    status: Optional[Object] = None
    attachments: List[Object] = field(default_factory=list)
    resync_after_seconds: Optional[float] = None
    finalized: Optional[bool] = None
    events: List[Event] = field(default_factory=list)

    def to_json(self) -> Object:
        response: Object = {"attachments": list(self.attachments)}
        for key, value in (("labels", self.labels), ("annotations", self.annotations), ("status", self.status)):
            if value is not None:
                response[key] = value
        return _common(response, self.resync_after_seconds, self.finalized, self.events)


@dataclass
class RelatedRule:
    """One rule of a customize answer: objects of `resource` in `api_version`, by label
    selector or by names (in `namespace`, when given)."""

    api_version: str
    resource: str
    label_selector: Optional[Object] = None
    names: Optional[List[str]] = None
    namespace: Optional[str] = None

    def to_json(self) -> Object:
        rule: Object = {"apiVersion": self.api_version, "resource": self.resource}
        if self.label_selector is not None:
            rule["labelSelector"] = self.label_selector
        if self.names is not None:
            rule["names"] = self.names
        if self.namespace is not None:
            rule["namespace"] = self.namespace
        return rule


@dataclass
class CustomizeResponse:
    """A customize hook's answer: the rules that select the related objects."""

    related_resources: List[RelatedRule] = field(default_factory=list)

    def to_json(self) -> Object:
        return {"relatedResources": [rule.to_json() for rule in self.related_resources]}


Response = Union[CompositeResponse, DecoratorResponse, CustomizeResponse, Mapping[str, Any]]


def response_json(response: Response) -> Object:
    """The JSON of a response: a response type's, or a mapping as it is."""
    if hasattr(response, "to_json"):
        return response.to_json()  # type: ignore[union-attr]
    if isinstance(response, Mapping):
        return dict(response)
    raise ProtocolError(f"a hook must answer with a response or a dict, not {type(response).__name__}")
