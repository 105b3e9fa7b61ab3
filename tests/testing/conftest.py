"""Fixtures for the fake-server tests (async tests run on asyncio and trio)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from rlinf_http.testing import FakeConfig, FakeServer


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig()) as srv:
        yield srv


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        yield client
