"""The CLI as a first-time user meets it: each mistake is one short line, never a Traceback.

Exit status 2 is a usage error (bad arguments), 1 a failure (the server or the
network), 0 success. Every command runs as a new process, as a user runs it.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from rlinf_http import __version__


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from rlinf_http.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _check_short_error(done: subprocess.CompletedProcess[str], status: int) -> str:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    message = done.stderr.strip()
    assert message.startswith("error:"), message
    assert len(message.splitlines()) <= 3, message
    return message


def test_help_and_version() -> None:
    helped = _run("-h")
    assert helped.returncode == 0 and "Usage" in helped.stdout and helped.stderr == ""
    version = _run("--version")
    assert version.returncode == 0 and __version__ in version.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("health", "not-a-url"), "not-a-url"),
        (("bench", "--num-prompts", "0"), "--num-prompts"),
        (("bench", "--request-rate", "fast"), "--request-rate"),
        (("serve-fake", "--port", "99999"), "--port"),
        (("serve-fake", "--port", "-1"), "--port"),
        (("generate", "http://127.0.0.1:9"), "prompt"),
    ],
    ids=["health-url", "num-prompts", "request-rate", "port-high", "port-negative", "no-prompt"],
)
def test_usage_errors_exit_2(args: tuple[str, ...], needle: str) -> None:
    assert needle in _check_short_error(_run(*args), 2)


def test_generate_on_a_closed_port_exits_1() -> None:
    message = _check_short_error(_run("generate", f"localhost:{_closed_port()}", "hi"), 1)
    assert "APIConnectionError" in message


def test_serve_fake_on_a_busy_port_exits_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        message = _check_short_error(_run("serve-fake", "--port", str(busy.getsockname()[1])), 1)
    assert "in use" in message
