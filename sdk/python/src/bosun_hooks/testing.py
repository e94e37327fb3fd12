"""Testing hooks against recorded exchanges — `bosun hook test --save DIR` records one, the
shared protocol vectors are in `protocol/vectors/` — without a cluster."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Union

from .protocol import Object, parse_customize_request, parse_request, response_json


@dataclass
class Vector:
    """One recorded exchange: the directory's `request.json`, `response.json` and
    `expect.json` (what the engine did), and a customize call's, if there was one."""

    name: str
    request: Object
    response: Any
    expect: Object
    customize_request: Optional[Object] = None
    customize_response: Optional[Object] = None

    @property
    def refused(self) -> bool:
        """Whether the engine refused the response (`expect.json`'s outcome is Failed)."""
        return self.expect.get("outcome") == "Failed"


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def vectors(directory: Union[str, Path]) -> Iterator[Vector]:
    """The vectors in `directory`: itself, if it holds a `request.json`, else each subdirectory
    that does, in name order."""
    directory = Path(directory)
    dirs = [directory] if (directory / "request.json").exists() else sorted(path for path in directory.iterdir() if (path / "request.json").exists())
    for path in dirs:
        yield Vector(
            name=path.name,
            request=_load(path / "request.json"),
            response=_load(path / "response.json"),
            expect=_load(path / "expect.json") or {},
            customize_request=_load(path / "customize-request.json"),
            customize_response=_load(path / "customize.json"),
        )


def run_vectors(handler: Callable[[Any], Any], directory: Union[str, Path], customize: Optional[Callable[[Any], Any]] = None) -> List[str]:
    """Calls `handler` with each vector's request (accepted ones only) and compares its answer
    with the recorded response; `customize` likewise with customize requests. Returns what
    differs, one message per vector (empty: all agree)."""
    problems: List[str] = []
    for vector in vectors(directory):
        if vector.refused:
            continue
        answer = response_json(handler(parse_request(vector.request)))
        if answer != vector.response:
            problems.append(f"{vector.name}: the handler answered {json.dumps(answer, sort_keys=True)}, the recording {json.dumps(vector.response, sort_keys=True)}")
        if customize is not None and vector.customize_request is not None:
            answer = response_json(customize(parse_customize_request(vector.customize_request)))
            if answer != vector.customize_response:
                problems.append(f"{vector.name}: the customize handler answered {json.dumps(answer, sort_keys=True)}")
    return problems
