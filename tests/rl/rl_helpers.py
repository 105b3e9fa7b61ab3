"""A scripted plan driver for the sans-I/O tests of the RL surface."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from rlinf_http._core.plans import Call, Plan, Sleep
from rlinf_http._core.requests import Operation
from rlinf_http._core.responses import RawResponse, status_error

Reply = tuple[int, Any]  # (status, JSON value | bytes)


def raw(op: Operation[Any], status: int, payload: Any, content_type: str = "") -> RawResponse:
    """The response ``payload`` (JSON value, or bytes as they are) to ``op``."""
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = httpx.Headers({"content-type": content_type} if content_type else {})
    return RawResponse(op.method, "http://x" + op.path, status, headers, content)


def answer(op: Operation[Any], status: int, payload: Any) -> Any:
    """Parse ``payload`` with ``op`` (a 2xx) or return the typed error it maps to."""
    response = raw(op, status, payload)
    if response.is_success:
        return op.parse(response)
    return status_error(response)


class Driver:
    """Runs a plan; ``script(method, path, body)`` answers each Call with (status, body)."""

    def __init__(self, script: Callable[[str, str, Any], Reply]) -> None:
        self.script = script
        self.calls: list[tuple[str, str, Any, Call]] = []

    def run(self, plan: Plan[Any]) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = plan.send(value) if error is None else plan.throw(error)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            assert not isinstance(step, Sleep)
            op = step.op
            body = json.loads(op.content) if op.content else None
            self.calls.append((op.method, op.path, body, step))
            status, payload = self.script(op.method, op.path, body)
            if isinstance(payload, BaseException):
                error = payload
                continue
            response = raw(op, status, payload)
            if response.is_success:
                try:
                    value = op.parse(response)
                except Exception as exc:
                    error = exc
            else:
                error = status_error(response)

    @property
    def paths(self) -> list[str]:
        return [p for _, p, _, _ in self.calls]

    @property
    def bodies(self) -> list[Any]:
        return [b for _, _, b, _ in self.calls]


def ok(body: Any = None, status: int = 200) -> Callable[[str, str, Any], Reply]:
    payload = {"success": True, "message": "Success"} if body is None else body
    return lambda m, p, b: (status, payload)
