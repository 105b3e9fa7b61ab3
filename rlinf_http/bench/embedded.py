"""The embedded default target: fake sglang workers behind a real gateway (smg by default).

``rlinf-http bench`` without ``--url`` starts ``num_workers`` fake workers
(:func:`rlinf_http.testing.start_fake_worker`: separate processes on loopback,
with the fake server's latency model) and a real gateway in front of them:
smg 1.13 with ``--enable-rl`` (the ``smg`` extra) by default, or sglang-router
0.3.2 (``gateway="sglang-router"``, the ``router`` extra). Without the default
gateway installed it falls back to the other one, then to the first worker
directly (and says so); a gateway asked for by name must be installed.
Everything is torn down on exit, on an exception, on Ctrl-C and on SIGTERM,
also when :meth:`EmbeddedTarget.stop` runs (from another thread) while
:meth:`EmbeddedTarget.start` is still waiting for the gateway. On Linux the
workers and the gateway are killed by the kernel when this process
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

from .._errors import MissingDependencyError
from ..testing import (
    FakeConfig,
    FakeWorkerProcess,
    Gateway,
    RouterProcess,
    router_available,
    smg_available,
    start_fake_worker,
)
from ..testing._router import GATEWAY_EXTRAS

__all__ = ["EmbeddedInfo", "EmbeddedTarget", "default_gateway", "sigterm_as_interrupt"]


def default_gateway() -> Gateway | None:
    """The gateway the embedded default starts: smg if installed, else sglang-router, else none."""
    if smg_available():
        return "smg"
    if router_available():
        return "sglang-router"
    return None


class EmbeddedInfo(BaseModel):
    """What the embedded default runs."""

    url: str
    router: bool
    #: ``"smg"`` (started with ``--enable-rl``), ``"sglang-router"`` or ``None`` (direct)
    gateway: str | None = None
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
    """Start fake workers (+ a gateway); a context manager that always cleans up.

    ``gateway``: ``"smg"`` (with ``--enable-rl``) or ``"sglang-router"``;
    ``None`` picks :func:`default_gateway`. ``use_router=False`` talks to the
    first worker directly.
    """

    def __init__(
        self,
        num_workers: int = 2,
        ttft_ms: float = 20.0,
        itl_ms: float = 5.0,
        *,
        use_router: bool | None = None,
        gateway: Gateway | None = None,
        incremental: bool = False,
        ready_timeout: float = 60.0,
        load_ms: float = 0.0,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"--num-workers must be >= 1, got {num_workers}")
        if gateway is not None and gateway not in GATEWAY_EXTRAS:
            raise ValueError(f"--gateway must be smg or sglang-router, got {gateway!r}")
        if gateway is not None and use_router is False:
            raise ValueError("--gateway needs the gateway: not with --no-router")
        if gateway is not None and not (
            smg_available() if gateway == "smg" else router_available()
        ):
            extra = GATEWAY_EXTRAS[gateway]
            raise MissingDependencyError(
                f"--gateway {gateway} needs the '{extra}' extra; from a clone of the "
                f"repository: pip install -e '.[{extra}]'"
            )
        self.num_workers = num_workers
        self.ttft_ms = ttft_ms
        self.itl_ms = itl_ms
        chosen = gateway or default_gateway()
        self.use_router = chosen is not None if use_router is None else use_router
        #: the gateway started in front of the workers (``None``: direct)
        self.gateway: Gateway | None = chosen if self.use_router else None
        if self.use_router and self.gateway is None:
            raise MissingDependencyError(
                "no gateway is installed: pip install -e '.[smg]' (or '.[router]') "
                "in the repository"
            )
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
            if self.gateway is not None:
                router = RouterProcess(
                    urls,
                    ready_timeout=self.ready_timeout,
                    gateway=self.gateway,
                    enable_rl=self.gateway == "smg",
                )
                with self._lock:
                    self.router = router
                self._raise_if_stopped()
                router.start()  # a concurrent stop() kills it: start() raises
                self._raise_if_stopped()
                url = router.url
            else:
                url = urls[0]
                note = (
                    "no gateway (--no-router): benchmarking the first fake worker directly"
                    if default_gateway() is not None
                    else "no gateway is installed: benchmarking the first fake worker "
                    "directly (pip install -e '.[smg]' in the repository for the real "
                    "smg gateway)"
                )
            self.info = EmbeddedInfo(
                url=url,
                router=self.router is not None,
                gateway=self.gateway if self.router is not None else None,
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
