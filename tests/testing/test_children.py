"""Child processes (fake workers, the real router) never outlive the process that
started them, and the router launcher reports a missing extra."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest

from rlinf_http import MissingDependencyError
from rlinf_http.bench.embedded import EmbeddedTarget
from rlinf_http.testing import FakeWorkerProcess, RouterProcess, launch_router, router_available
from rlinf_http.testing import start_fake_worker as start_worker

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl, /proc")
needs_router = pytest.mark.skipif(not router_available(), reason="needs the router extra")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], seconds: float = 15.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_launch_router_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # what `import sglang_router` sees when the package is not installed
    monkeypatch.setitem(sys.modules, "sglang_router", None)
    assert not router_available()
    with pytest.raises(MissingDependencyError, match=r"pip install -e '\.\[router\]'"):
        launch_router([])
    router = RouterProcess([])
    try:
        with pytest.raises(MissingDependencyError), router:
            pass
        assert router.proc is None  # nothing was started
    finally:
        router.cleanup()


@linux_only
def test_worker_started_from_a_short_lived_thread_survives_the_thread() -> None:
    # Linux sends the parent-death signal when the *thread* that forked the child
    # ends: children must not be forked from threads that come and go.
    box: list[FakeWorkerProcess] = []
    t = threading.Thread(target=lambda: box.append(start_worker()))
    t.start()
    t.join(60)
    assert box, "the worker did not start"
    with box[0] as worker:
        time.sleep(0.5)  # a killed child would be gone by now
        assert _alive(worker.pid)
        with httpx.Client(trust_env=False, timeout=10) as client:
            assert client.get(worker.url + "/health").status_code == 200


_PARENT = textwrap.dedent(
    """
    import sys, threading
    from rlinf_http.testing import launch_router, router_available, start_fake_worker
    workers = [start_fake_worker()]
    box = []
    if router_available() and sys.argv[1] == "router":
        # started from a thread, like the bench's embedded target
        t = threading.Thread(target=lambda: box.append(launch_router([workers[0].url])))
        t.start(); t.join()
    pids = [w.pid for w in workers] + [r.proc.pid for r in box]
    print(" ".join(map(str, pids)), flush=True)
    sys.stdin.read()  # wait to be killed
    """
)


@linux_only
@pytest.mark.parametrize("with_router", [False, pytest.param(True, marks=needs_router)])
def test_children_die_with_a_parent_killed_by_sigkill(with_router: bool) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _PARENT, "router" if with_router else "workers"],
        stdin=subprocess.PIPE,  # kept open: the worker must not exit on stdin EOF
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        try:
            assert parent.stdout is not None
            pids = [int(p) for p in parent.stdout.readline().split()]
            assert len(pids) == (2 if with_router else 1), pids
            assert all(_alive(p) for p in pids)
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait(30)
            assert _wait_gone(pids) == []
        finally:
            if parent.poll() is None:
                parent.kill()


@needs_router
def test_embedded_stop_while_the_router_starts() -> None:
    # Ctrl-C during start-up: stop() runs in one thread while start() still waits
    # for the router in another; start() must give up at once and leave nothing.
    target = EmbeddedTarget(num_workers=1, use_router=True, ready_timeout=120)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            target.start()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=start)
    t.start()
    deadline = time.monotonic() + 60
    router = None
    while time.monotonic() < deadline and t.is_alive():
        router = target.router
        if router is not None and router.proc is not None:
            break
        time.sleep(0.005)
    assert router is not None and router.proc is not None, "the router was not started"
    worker_pids = [w.pid for w in target.workers]
    target.stop()
    t.join(30)
    assert not t.is_alive(), "start() kept waiting for a router that was stopped"
    assert errors, "start() returned although stop() ran meanwhile"
    assert target.router is None and target.workers == []
    assert _wait_gone([router.proc.pid, *worker_pids]) == []
