"""The bench's readiness wait says why it still waits, and stops at once on what
waiting cannot fix (a typo'd host).

No test resolves a real name: the CLI runs with a ``sitecustomize`` (on
PYTHONPATH, so spawned client processes get it too) whose ``socket.getaddrinfo``
knows loopback only and answers every other name as a resolver does for a name
that does not exist. As root, one more test uses the real resolver in a mount
namespace whose nsswitch.conf says ``hosts: files`` (no DNS query either)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("numpy")
pytest.importorskip("typer")

_NO_DNS = """
import socket
_real = socket.getaddrinfo
def _loopback_only(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name in ("localhost", "127.0.0.1", "::1", "0.0.0.0"):
        return _real(host, *args, **kwargs)
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
socket.getaddrinfo = _loopback_only
"""


def _bench(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_NO_DNS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *sys.path]))
    return subprocess.run(
        [sys.executable, "-c", "from rlinf_http.cli import main; main()", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp_path,
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("processes", ["1", "2"])
def test_typo_host_fails_at_once_saying_why(tmp_path: Path, processes: str) -> None:
    started = time.monotonic()
    proc = _bench(
        tmp_path,
        "--url",
        "http://routr.invalid:30000",
        "--num-prompts",
        "4",
        "--processes",
        processes,
        "-q",
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    assert "does not resolve" in proc.stderr, proc.stderr
    assert elapsed < 60  # not the 300 s --ready-timeout
    assert not [x for x in proc.stderr.splitlines() if x.startswith("waiting for")]


def test_wait_notices_say_why_and_the_timeout_too(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    proc = _bench(tmp_path, "--url", url, "--num-prompts", "4", "--ready-timeout", "3", "-q")
    assert proc.returncode == 1, proc.stderr
    notices = [x for x in proc.stderr.splitlines() if x.startswith("waiting for")]
    assert notices, proc.stderr
    assert all("last: connection refused" in x for x in notices), proc.stderr
    assert "not ready within --ready-timeout 3 s; last: connection refused" in proc.stderr


def test_sweep_wait_notices_say_why(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    proc = _bench(
        tmp_path,
        "--url",
        url,
        "--num-prompts",
        "4",
        "--sweep-concurrency",
        "1,2",
        "--ready-timeout",
        "3",
        "-q",
    )
    assert proc.returncode == 1, proc.stderr
    notices = [x for x in proc.stderr.splitlines() if x.startswith("waiting for")]
    assert notices and all("last: connection refused" in x for x in notices), proc.stderr


def _can_unshare() -> bool:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    if any(os.path.exists(p) for p in ("/run/nscd/socket", "/var/run/nscd/socket")):
        return False  # nscd would answer with the host's configuration
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m (Linux)")
def test_typo_host_with_the_real_resolver_in_a_files_only_namespace(tmp_path: Path) -> None:
    """The real getaddrinfo, in a mount namespace whose nsswitch.conf says
    ``hosts: files``: a name not in /etc/hosts fails without any DNS query."""
    nss = tmp_path / "nsswitch.conf"
    nss.write_text("hosts: files\n")
    script = (
        f"mount --bind {nss} /etc/nsswitch.conf && exec {sys.executable} -c "
        "'from rlinf_http.cli import main; main()' bench --url http://routr.invalid:30000 -q"
    )
    started = time.monotonic()
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert "does not resolve" in proc.stderr, proc.stderr
    assert time.monotonic() - started < 60
