"""Building children, and checking a response as the engine will before it writes anything."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, List, Mapping, Optional

from .protocol import CompositeRequest, DecoratorRequest, Object, Request

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def owner_safe_name(parent: Object, suffix: str = "", max_length: int = 63) -> str:
    """A child name derived from its parent's: `<parent>-<suffix>`, lowercased to a DNS-1123
    label. Names that would be longer than `max_length` (63 suits every kind; 253 most) are
    shortened with a hash of the whole, so two parents never get the same child name."""
    base = parent["metadata"]["name"] + (f"-{suffix}" if suffix else "")
    name = _NOT_DNS.sub("-", base.lower()).strip("-") or "child"
    if len(name) <= max_length:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    return f"{name[: max_length - 9].rstrip('-')}-{digest}"


def labels_for(parent: Object, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The usual labels of a parent's children: `app.kubernetes.io/instance` (the parent's name)
    and `app.kubernetes.io/managed-by: bosun`, plus `extra`."""
    labels = {"app.kubernetes.io/instance": parent["metadata"]["name"], "app.kubernetes.io/managed-by": "bosun"}
    labels.update(extra or {})
    return labels


def child(
    api_version: str,
    kind: str,
    name: str,
    *,
    labels: Optional[Mapping[str, str]] = None,
    annotations: Optional[Mapping[str, str]] = None,
    **fields: Any,
) -> Object:
    """A child object: `apiVersion`, `kind`, `metadata` (name, labels, annotations) and the
    other top-level fields (`spec=…`, `data=…`). No namespace: the engine puts it in the
    parent's."""
    metadata: Object = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **fields}


def _plural(kind: str) -> str:
    """kubectl's guess at a resource name from a kind (the engine asks discovery)."""
    lower = kind.lower()
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lower[:-1] + "ies"
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    return lower + "s"


def check_response(request: Request, response: Mapping[str, Any]) -> List[str]:
    """What the engine would refuse in `response` to `request`, as messages (empty: nothing).
    The engine refuses a response as a whole and writes nothing, so a hook can check itself
    before answering, or a test can. Child types are matched by a guessed plural of their kind."""
    problems: List[str] = []
    field = "attachments" if isinstance(request, DecoratorRequest) else "children"
    items = response.get(field, [])
    if items is None:
        items = []
    if not isinstance(items, list):
        return [f"{field} must be a list, not {type(items).__name__}"]
    spec = request.controller.get("spec") or {}
    declared = spec.get("attachments" if isinstance(request, DecoratorRequest) else "childResources") or []
    types = {(rule.get("apiVersion"), rule.get("resource")) for rule in declared}
    parent_namespace = request.namespace
    for index, item in enumerate(items):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where} is not an object")
            continue
        metadata = item.get("metadata") or {}
        if not item.get("apiVersion") or not item.get("kind"):
            problems.append(f"{where} has no apiVersion or kind")
            continue
        if not metadata.get("name"):
            problems.append(f"{where} ({item['kind']}) has no metadata.name")
        namespace = metadata.get("namespace")
        if parent_namespace and namespace and namespace != parent_namespace:
            problems.append(f"{where} is in namespace {namespace!r}, but a parent in namespace {parent_namespace!r} can only own children in its own")
        if (item["apiVersion"], _plural(item["kind"])) not in types:
            problems.append(f"{where} is a {item['kind']} in {item['apiVersion']}, which the controller does not declare")
    if isinstance(request, CompositeRequest) and "status" in response and not isinstance(response["status"], (dict, type(None))):
        problems.append("status must be an object")
    return problems
