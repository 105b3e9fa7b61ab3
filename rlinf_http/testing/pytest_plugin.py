"""pytest fixtures for the fake SGLang server.

Enable with ``pytest_plugins = ["rlinf_http.testing.pytest_plugin"]`` in a
``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._app import FakeSGLangApp
from ._server import FakeServer

__all__ = ["fake_app", "fake_server"]


@pytest.fixture
def fake_app() -> FakeSGLangApp:
    """A fresh :class:`FakeSGLangApp` with the default config (use with ASGITransport)."""
    return FakeSGLangApp()


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A :class:`FakeServer` on 127.0.0.1 with a free port; stopped after the test."""
    with FakeServer() as server:
        yield server
