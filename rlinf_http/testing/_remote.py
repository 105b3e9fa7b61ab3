"""Fault injection into a fake server in another process (``/_fake/faults`` over HTTP).

:func:`add_faults` / :func:`clear_faults` / :func:`pending_faults` (and their
``async_`` forms) talk to any fake server by URL: a :func:`start_fake_worker`
process, a :class:`FakeServer`, or the workers of ``rlinf-http bench``'s
embedded target. :class:`FakeWorkerProcess` has the same as methods.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ._faults import FaultSpec

__all__ = [
    "FakeServerError",
    "add_faults",
    "async_add_faults",
    "async_clear_faults",
    "async_pending_faults",
    "clear_faults",
    "control_state",
    "pending_faults",
]

_PATH = "/_fake/faults"
_TIMEOUT_S = 10.0


class FakeServerError(RuntimeError):
    """A ``/_fake/*`` hook answered with an error (e.g. a spec it refused)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def _spec_json(spec: FaultSpec) -> dict[str, Any]:
    if not isinstance(spec, FaultSpec):
        raise TypeError(f"expected FaultSpec, got {type(spec).__name__}")
    data = dataclasses.asdict(spec)
    if isinstance(data["body"], bytes):
        data["body"] = data["body"].decode("utf-8")
    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"FaultSpec is not JSON-serializable for a remote server: {exc}") from None
    return data


def _url(base: str) -> str:
    return base.rstrip("/") + _PATH


def _check(resp: Any) -> Any:
    if resp.status_code != 200:
        text = resp.text.strip()
        raise FakeServerError(
            f"{resp.request.method} {resp.request.url} answered {resp.status_code}: {text}",
            resp.status_code,
        )
    return resp.json()


def add_faults(url: str, *specs: FaultSpec, timeout: float = _TIMEOUT_S) -> int:
    """Queue ``specs`` on the fake server at ``url``; returns how many are pending there.

    Raises :class:`FakeServerError` if the server refuses a spec, and
    :class:`httpx.HTTPError` if it cannot be reached.
    """
    import httpx

    body = [_spec_json(s) for s in specs]
    with httpx.Client(trust_env=False, timeout=timeout) as http:
        return int(_check(http.post(_url(url), json=body))["pending"])


def clear_faults(url: str, *, timeout: float = _TIMEOUT_S) -> int:
    """Remove every pending fault of the fake server at ``url``; returns how many."""
    import httpx

    with httpx.Client(trust_env=False, timeout=timeout) as http:
        return int(_check(http.delete(_url(url)))["cleared"])


def pending_faults(url: str, *, timeout: float = _TIMEOUT_S) -> list[FaultSpec]:
    """The faults still pending on the fake server at ``url``."""
    import httpx

    with httpx.Client(trust_env=False, timeout=timeout) as http:
        return [FaultSpec.from_dict(d) for d in _check(http.get(_url(url)))]


def control_state(url: str, *, timeout: float = _TIMEOUT_S) -> dict[str, Any]:
    """The control-plane state of the fake server at ``url`` (``GET /_fake/state``):
    paused mode, weight version, model path, weight-update groups and session,
    released memory."""
    import httpx

    with httpx.Client(trust_env=False, timeout=timeout) as http:
        state: dict[str, Any] = _check(http.get(url.rstrip("/") + "/_fake/state"))
        return state


async def async_add_faults(url: str, *specs: FaultSpec, timeout: float = _TIMEOUT_S) -> int:
    """Async :func:`add_faults`."""
    import httpx

    body = [_spec_json(s) for s in specs]
    async with httpx.AsyncClient(trust_env=False, timeout=timeout) as http:
        return int(_check(await http.post(_url(url), json=body))["pending"])


async def async_clear_faults(url: str, *, timeout: float = _TIMEOUT_S) -> int:
    """Async :func:`clear_faults`."""
    import httpx

    async with httpx.AsyncClient(trust_env=False, timeout=timeout) as http:
        return int(_check(await http.delete(_url(url)))["cleared"])


async def async_pending_faults(url: str, *, timeout: float = _TIMEOUT_S) -> list[FaultSpec]:
    """Async :func:`pending_faults`."""
    import httpx

    async with httpx.AsyncClient(trust_env=False, timeout=timeout) as http:
        return [FaultSpec.from_dict(d) for d in _check(await http.get(_url(url)))]
