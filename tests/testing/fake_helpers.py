"""Helpers shared by the fake-server tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from rlinf_http.testing import FakeSGLangApp


def asgi_client(app: FakeSGLangApp) -> httpx.AsyncClient:
    """An httpx client talking to ``app`` in-process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake")


def sse_events(raw: str) -> list[Any]:
    """Parse an SSE body strictly: events are exactly ``data: <payload>\\n\\n``."""
    assert raw.endswith("\n\n"), raw[-50:]
    events: list[Any] = []
    for block in raw[:-2].split("\n\n"):
        assert block.startswith("data: "), block
        assert "\n" not in block, block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def wait_for(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``pred`` until true (sync)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
