"""The embedded default target: fake sglang workers behind the real sglang-router.

``rlinf-http bench`` without ``--url`` starts ``num_workers`` fake workers
(:func:`rlinf_http.testing.start_fake_worker`: separate processes on loopback,
with the fake server's latency model) and, when the ``sglang-router`` package is
installed, the real router in front of them; otherwise it talks to the first
worker directly (and says so). Everything is torn down on exit, on an exception,
on Ctrl-C and on SIGTERM, also when :meth:`EmbeddedTarget.stop` runs (from another
thread) while :meth:`EmbeddedTarget.start` is still waiting for the router. On
Linux the workers and the router are killed by the kernel when this process
dies, even by ``kill -9`` (a parent-death signal); the workers also watch their
stdin and parent pid.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import threading
import types
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from ..testing import (
    FakeConfig,
    FakeWorkerProcess,
    RouterProcess,
    router_available,
    start_fake_worker,
)

__all__ = ["EmbeddedInfo", "EmbeddedTarget", "sigterm_as_interrupt"]


class EmbeddedInfo(BaseModel):
    """What the embedded default runs."""

    url: str
    router: bool
    num_workers: int
    worker_urls: list[str]
    fake_ttft_ms: float
    fake_itl_ms: float
    fake_load_ms: float = 0.0
    note: str = ""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that clean-up code runs."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While active, SIGTERM raises :class:`KeyboardInterrupt` so ``finally`` blocks run.

    A no-op outside the main thread (signal handlers can only be set there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: types.FrameType | None) -> None:
        raise _Terminated("SIGTERM")

    try:
        old = signal.signal(signal.SIGTERM, on_term)
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, old)


class EmbeddedTarget:
    """Start fake workers (+ router); a context manager that always cleans up."""

    def __init__(
        self,
        num_workers: int = 2,
        ttft_ms: float = 20.0,
        itl_ms: float = 5.0,
        *,
        use_router: bool | None = None,
        incremental: bool = False,
        ready_timeout: float = 60.0,
        load_ms: float = 0.0,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"--num-workers must be >= 1, got {num_workers}")
        self.num_workers = num_workers
        self.ttft_ms = ttft_ms
        self.itl_ms = itl_ms
        self.use_router = router_available() if use_router is None else use_router
        self.incremental = incremental
        self.load_ms = load_ms
        self.ready_timeout = ready_timeout
        self.workers: list[FakeWorkerProcess] = []
        self.router: RouterProcess | None = None
        self.info: EmbeddedInfo | None = None
        self._old_sigterm: Any = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def url(self) -> str:
        if self.info is None:
            raise RuntimeError("the embedded target is not started")
        return self.info.url

    def start(self) -> EmbeddedInfo:
        """Start the workers and the router; on any failure stop what was started.

        A :meth:`stop` from another thread meanwhile (Ctrl-C while this runs in a
        worker thread) kills what was started and makes this raise.
        """
        self._install_sigterm()
        atexit.register(self.stop)
        with self._lock:
            self._stopped = False
        try:
            config = FakeConfig(
                ttft_s=self.ttft_ms / 1000.0,
                itl_s=self.itl_ms / 1000.0,
                incremental_streaming=self.incremental,
                weight_update_s=self.load_ms / 1000.0,
            )
            for _ in range(self.num_workers):
                worker = start_fake_worker(config=config, ready_timeout=self.ready_timeout)
                with self._lock:
                    if self._stopped:
                        worker.stop()
                    else:
                        self.workers.append(worker)
                self._raise_if_stopped()
            urls = [w.url for w in self.workers]
            note = ""
            if self.use_router:
                router = RouterProcess(urls, ready_timeout=self.ready_timeout)
                with self._lock:
                    self.router = router
                self._raise_if_stopped()
                router.start()  # a concurrent stop() kills it: start() raises
                self._raise_if_stopped()
                url = router.url
            else:
                url = urls[0]
                note = (
                    "sglang-router is not installed: benchmarking the first fake worker "
                    "directly (pip install -e '.[router]' in the repository for the real router)"
                )
            self.info = EmbeddedInfo(
                url=url,
                router=self.router is not None,
                num_workers=len(self.workers),
                worker_urls=urls,
                fake_ttft_ms=self.ttft_ms,
                fake_itl_ms=self.itl_ms,
                fake_load_ms=self.load_ms,
                note=note,
            )
            return self.info
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the router and every worker (idempotent; callable from any thread)."""
        with self._lock:
            self._stopped = True
            router, self.router = self.router, None
            workers, self.workers = self.workers, []
        with contextlib.suppress(Exception):
            if router is not None:
                router.cleanup()
        while workers:
            w = workers.pop()
            with contextlib.suppress(Exception):
                w.stop()
        self._restore_sigterm()
        atexit.unregister(self.stop)

    def _raise_if_stopped(self) -> None:
        with self._lock:
            if self._stopped:
                raise RuntimeError("the embedded target was stopped while starting")

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_term(signum: int, frame: types.FrameType | None) -> None:
            raise _Terminated("SIGTERM")

        with contextlib.suppress(ValueError, OSError):
            self._old_sigterm = signal.signal(signal.SIGTERM, on_term)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is None:
            return
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, self._old_sigterm)
        self._old_sigterm = None

    def __enter__(self) -> EmbeddedTarget:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()
