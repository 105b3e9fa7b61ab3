"""Ctrl-C on a fleet whose worker hangs (issue 21, item 3), with real processes.

Two fake workers behind the real sglang-router; one is stopped with SIGSTOP, so
it takes connections but never answers. A program pausing the fleet is then
interrupted with SIGINT: it must end within seconds (the continuing of the
workers is bounded) and say which workers may be left paused and how to
continue them. A second SIGINT ends it at once. Every process dies with the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from control_helpers import control_state, wait_until
from gateways import fake_workers

from rlinf_http.testing import (
    FakeWorkerProcess,
    RouterProcess,
    launch_router,
    router_available,
    smg_available,
)

pytestmark = pytest.mark.skipif(
    not router_available(), reason="sglang-router (with its Rust extension) is not installed"
)

#: The programs take the bound on the clean-up after Ctrl-C as their second argument:
#: most cases shorten it (they wait it out on the stopped worker), one sync and one
#: async case keep the library's default, so "ends within seconds" is the real bound.
SET_BOUND = """
import rlinf_http._brackets
if sys.argv[2] != "default":
    rlinf_http._brackets.INTERRUPT_CLEANUP_TIMEOUT_S = float(sys.argv[2])
"""

SYNC = (
    """
import logging, sys, time
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from rlinf_http import InferenceHTTPClient
"""
    + SET_BOUND
    + """

client = InferenceHTTPClient(sys.argv[1], max_retries=0)
with client.fleet() as fleet:
    print("fleet", flush=True)
    sys.stdin.readline()  # the test stops a worker, or not, before the pause
    with fleet.paused("retract"):
        print("in block", flush=True)
        time.sleep(600)
"""
)

ASYNC = (
    """
import asyncio, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from rlinf_http import InferenceHTTPClient
"""
    + SET_BOUND
    + """

async def main() -> None:
    client = InferenceHTTPClient(sys.argv[1], max_retries=0)
    async with await client.async_fleet() as fleet:
        print("fleet", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        async with fleet.async_paused("retract"):
            print("in block", flush=True)
            await asyncio.sleep(600)

asyncio.run(main())
"""
)


@pytest.fixture(
    params=[
        "sglang-router",
        pytest.param(
            "smg-rl", marks=pytest.mark.skipif(not smg_available(), reason="smg not installed")
        ),
    ]
)
def cluster(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[RouterProcess, FakeWorkerProcess, FakeWorkerProcess]]:
    """Two workers behind sglang-router (direct path) or smg --enable-rl (gateway path)."""
    rl = {"gateway": "smg", "enable_rl": True} if request.param == "smg-rl" else {}
    with fake_workers(2) as (live, hung):
        with launch_router([live.url, hung.url], ready_timeout=60, **rl) as router:  # type: ignore[arg-type]
            try:
                yield router, live, hung
            finally:  # before the gateway stops: a stopped process cannot even be terminated
                os.kill(hung.pid, signal.SIGCONT)


@pytest.fixture
def program() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _start(
    program: list[subprocess.Popen[str]], source: str, url: str, bound: str = "default"
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source), url, bound],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    program.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == "fleet\n"
    return proc


def _ended_within(proc: subprocess.Popen[str], seconds: float) -> tuple[float, str]:
    started = time.monotonic()
    try:
        _, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"still running {seconds} s after SIGINT; stderr:\n{err}")
    return time.monotonic() - started, err


@pytest.mark.parametrize("source", [SYNC, ASYNC], ids=["sync", "async"])
@pytest.mark.parametrize("when", ["pausing", "in the block"])
def test_ctrl_c_with_a_hung_worker_ends_and_says_so(
    cluster: tuple[RouterProcess, FakeWorkerProcess, FakeWorkerProcess],
    program: list[subprocess.Popen[str]],
    source: str,
    when: str,
    request: pytest.FixtureRequest,
) -> None:
    router, live, hung = cluster
    # the library's default bound (5 s) in two cases; the others wait out a shorter one
    cases_with_default = {("sglang-router", SYNC, "pausing"), ("smg-rl", ASYNC, "in the block")}
    default = (request.node.callspec.params["cluster"], source, when) in cases_with_default
    proc = _start(program, source, router.url, "default" if default else "1.5")
    assert proc.stdin is not None and proc.stdout is not None
    if when == "pausing":  # the stopped worker never answers the pause
        os.kill(hung.pid, signal.SIGSTOP)
        proc.stdin.write("\n")
        proc.stdin.flush()
        wait_until(lambda: control_state(live.url)["paused"] == "retract", "the live pause")
    else:  # the worker hangs after the pause: it never answers the continue
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "in block\n"
        os.kill(hung.pid, signal.SIGSTOP)
    proc.send_signal(signal.SIGINT)
    took, err = _ended_within(proc, 20)
    assert took < 12, err
    assert proc.returncode != 0
    # the user is told which worker may be left paused, and how to continue it
    assert "WARNING" in err and hung.url in err and "continue_generation()" in err, err
    assert live.url not in err.split("WARNING", 1)[1].split("\n", 1)[0], err
    # the worker that answered was continued
    assert control_state(live.url)["paused"] is None


def test_second_ctrl_c_ends_at_once(
    cluster: tuple[RouterProcess, FakeWorkerProcess, FakeWorkerProcess],
    program: list[subprocess.Popen[str]],
) -> None:
    router, _live, hung = cluster
    proc = _start(program, SYNC, router.url)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "in block\n"
    os.kill(hung.pid, signal.SIGSTOP)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)  # now continuing the workers, waiting on the stopped one
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    took, err = _ended_within(proc, 10)
    assert took < 2, err
    assert "continue_generation was interrupted" in err and "continue_generation()" in err, err
