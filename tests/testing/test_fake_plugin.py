"""The pytest plugin (fixtures fake_app / fake_server), exercised in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFTEST = 'pytest_plugins = ["rlinf_http.testing.pytest_plugin"]\n'
TESTS = """
import httpx
import pytest
from rlinf_http.testing import FakeSGLangApp, FakeServer


def test_fake_app(fake_app):
    assert isinstance(fake_app, FakeSGLangApp)


def test_fake_server(fake_server):
    assert isinstance(fake_server, FakeServer)
    with httpx.Client(trust_env=False) as c:
        assert c.get(fake_server.url + "/health").status_code == 200
    assert fake_server.app.stats["requests"] == {"/health": 1}
"""


def test_plugin_fixtures(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_user.py").write_text(TESTS)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
