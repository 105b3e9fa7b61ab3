"""Helpers for control-plane tests on real sockets: fake workers' stats and faults over HTTP."""

from __future__ import annotations

import atexit
import threading
import time
from typing import Any

import httpx

_lock = threading.Lock()
_shared: httpx.Client | None = None


def _http() -> httpx.Client:
    """One pooled client for every helper call: a new ``httpx.Client`` costs ~15 ms (its
    SSL context), which polling loops such as :func:`wait_until` paid on every probe."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = httpx.Client(trust_env=False, timeout=10)
            atexit.register(_shared.close)
        return _shared


def fake_stats(url: str) -> dict[str, Any]:
    """``GET /_fake/stats`` of a fake worker (a child process or an in-process server)."""
    stats: dict[str, Any] = _http().get(url + "/_fake/stats").raise_for_status().json()
    return stats


def add_fault(url: str, **spec: Any) -> None:
    """``POST /_fake/faults``: inject a FaultSpec into a fake worker."""
    _http().post(url + "/_fake/faults", json=spec).raise_for_status()


def clear_faults(url: str) -> None:
    _http().delete(url + "/_fake/faults").raise_for_status()


def requests_to(url: str, path: str) -> int:
    return int(fake_stats(url)["requests"].get(path, 0))


def wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    """Poll ``condition()`` until it is true (a deadline only against hangs, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def running(url: str) -> int:
    """Generations running on a fake worker now (``/v1/loads``)."""
    loads = _http().get(url + "/v1/loads").raise_for_status().json()
    return sum(int(rank["num_running_reqs"]) for rank in loads["loads"])


def control_state(url: str) -> dict[str, Any]:
    """``GET /_fake/state``: a fake worker's paused mode, weight version, groups..."""
    state: dict[str, Any] = _http().get(url + "/_fake/state").raise_for_status().json()
    return state


def sent_by(url: str, path: str) -> str:
    """Who sent a fake worker its last request on ``path``: ``"client"`` (rlinf-http's
    user-agent) or ``"smg"`` (smg proxies with no user-agent and ``accept: */*``)."""
    headers = fake_stats(url)["last_headers"][path]
    if headers.get("user-agent", "").startswith("rlinf-http/"):
        return "client"
    assert "user-agent" not in headers and headers.get("accept") == "*/*", headers
    return "smg"
