"""Ctrl-C under ``bench --ray``: progress lines, a prompt stop, nothing left behind."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

import pytest

from rlinf_http.testing import FakeConfig, FakeServer

_CLI = [sys.executable, "-c", "from rlinf_http.cli import main; main()"]


def _descendants(root: int) -> set[int]:
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    out: set[int] = set()
    frontier = [root]
    while frontier:
        p = frontier.pop()
        for k, v in parent.items():
            if v == p and k not in out:
                out.add(k)
                frontier.append(k)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_under_ray_stops_within_seconds_and_leaves_nothing() -> None:
    pytest.importorskip("ray")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    with FakeServer(config=FakeConfig(ttft_s=0.005, itl_s=0.002)) as srv:
        proc = subprocess.Popen(
            [
                *_CLI,
                "bench",
                "--url",
                srv.url,
                "--num-prompts",
                "20000",
                "--max-concurrency",
                "8",
                "--random-input-len",
                "8",
                "--random-output-len",
                "64",
                "--ray",
                "local",
                "--ray-actors",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        seen: set[int] = set()
        stop_watch = threading.Event()

        def watch() -> None:  # every process the CLI starts (Ray's included)
            while not stop_watch.is_set():
                seen.update(_descendants(proc.pid))
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        lines: queue.Queue[str] = queue.Queue()
        errors: list[str] = []

        def read(stream: IO[str], into: Callable[[str], object]) -> None:
            for line in stream:
                into(line)

        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            threading.Thread(target=read, args=(proc.stdout, lines.put), daemon=True),
            threading.Thread(target=read, args=(proc.stderr, errors.append), daemon=True),
        ]
        for r in readers:
            r.start()
        try:
            out: list[str] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not any(x.startswith("progress: ") for x in out):
                with contextlib.suppress(queue.Empty):
                    out.append(lines.get(timeout=0.5))
            assert any(x.startswith("progress: ") for x in out), "".join(out + errors)
            assert len(seen) >= 3, seen  # raylet, gcs, actors...
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
            elapsed = time.monotonic() - t0
            for r in readers:
                r.join(10)
            err = "".join(errors)
        finally:
            stop_watch.set()
            watcher.join()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for r in readers:
                r.join(10)
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == 130, err
        assert elapsed < 10.0, elapsed
        assert "interrupted" in err
        # Ray's own notices (token auth, SIGTERM handler, "Started a local Ray
        # instance") are not bench output
        noise = [x for x in err.splitlines() if "ray" in x.lower() or "Ray" in x]
        assert not noise, err
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in seen):
            time.sleep(0.2)
        left = [p for p in seen if _alive(p)]
        assert not left, (left, err)


_SLOW_CLEANUP = """
import sys, time
from rlinf_http.cli import _second_interrupt_exits
with _second_interrupt_exits():
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("cleaning up", flush=True)
        time.sleep(60)  # a clean-up that takes long
sys.exit(3)
"""


def test_a_second_ctrl_c_exits_at_once() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CLEANUP],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "cleaning up"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - t0 < 2.0
        assert proc.returncode == 130, err
        assert "Ctrl-C again" in err and "exiting now" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
