"""Run a real sglang gateway offline for tests: smg 1.13 or sglang-router 0.3.2.

smg (the Shepherd Model Gateway, the ``smg`` extra) is started as ``python -m
smg launch``, optionally with ``--enable-rl`` (its ``/v1/rl/*`` control plane);
sglang-router (the ``router`` extra) as ``python -m sglang_router.launch_router``.
Either runs in its own process group, bound to loopback, with proxy variables removed and the
HuggingFace hub pointed at a closed loopback port so tokenizer loading can
never reach the network. On Linux the router dies with the process that
started it, even on ``kill -9`` (a parent-death signal, see ``_children.py``).
Without the gateway's extra, starting it raises
:class:`~rlinf_http.MissingDependencyError`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterable, Sequence
from typing import Literal

from .._errors import MissingDependencyError
from ._children import spawn

__all__ = ["Gateway", "RouterProcess", "launch_router", "router_available", "smg_available"]

#: The gateways :func:`launch_router` can start.
Gateway = Literal["smg", "sglang-router"]
#: The extra that installs each gateway.
GATEWAY_EXTRAS: dict[str, str] = {"smg": "smg", "sglang-router": "router"}

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")


def router_available() -> bool:
    """True if the ``sglang_router`` package with its Rust extension is importable."""
    try:
        if importlib.util.find_spec("sglang_router") is None:
            return False
        return importlib.util.find_spec("sglang_router.sglang_router_rs") is not None
    except (ImportError, ValueError):
        return False


def smg_available() -> bool:
    """True if the ``smg`` package (smg 1.13, with its Rust extension) is importable."""
    try:
        if importlib.util.find_spec("smg") is None:
            return False
        return importlib.util.find_spec("smg.smg_rs") is not None
    except (ImportError, ValueError):
        return False


def _available(gateway: Gateway) -> bool:
    return smg_available() if gateway == "smg" else router_available()


#: Starts of a gateway whose picked port another process took meanwhile.
_START_ATTEMPTS = 3


class _PortTaken(RuntimeError):
    """The gateway exited at startup: a port it was given is in use."""


def _free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _closed_port() -> int:
    # a port that nobody listens on (bound then released)
    return _free_port("127.0.0.1")


def router_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for an offline router: no proxies, HF hub on a dead loopback port."""
    env = dict(os.environ if base is None else base)
    for name in _PROXY_VARS:
        env.pop(name, None)
        env.pop(name.upper(), None)
    env["NO_PROXY"] = "127.0.0.1,localhost,::1"
    env["no_proxy"] = "127.0.0.1,localhost,::1"
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    return env


# Router policies its command line does not offer, started by setting
# ``RouterArgs.policy`` after parsing the other arguments.
_HIDDEN_POLICIES = frozenset({"consistent_hashing", "prefix_hash"})
_SET_POLICY = (
    "import sys; from sglang_router.launch_router import launch_router, parse_router_args; "
    "args = parse_router_args(sys.argv[2:]); args.policy = sys.argv[1]; launch_router(args)"
)


def _fmt_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class RouterProcess:
    """A running gateway process, smg or sglang-router (see :func:`launch_router`).

    Use as a context manager; :meth:`stop` kills the whole process group.
    ``url`` is the router's base URL, ``log_path`` its combined stdout/stderr.
    """

    def __init__(
        self,
        worker_urls: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        policy: str = "round_robin",
        extra_args: Iterable[str] = (),
        ready_timeout: float = 60.0,
        gateway: Gateway = "sglang-router",
        enable_rl: bool = False,
    ) -> None:
        if gateway not in GATEWAY_EXTRAS:
            raise ValueError(f"gateway must be 'smg' or 'sglang-router', got {gateway!r}")
        if enable_rl and gateway != "smg":
            raise ValueError("enable_rl needs gateway='smg' (sglang-router has no RL plane)")
        #: ``"smg"`` or ``"sglang-router"``
        self.gateway: Gateway = gateway
        #: smg's ``--enable-rl`` (``/v1/rl/*``)
        self.enable_rl = enable_rl
        self.worker_urls = [u.rstrip("/") for u in worker_urls]
        self.host = host
        #: whether ``port`` is one we picked (then another is picked when it is taken)
        self._own_port = not port
        self.port = port or _free_port(host)
        self.prometheus_port = _free_port("127.0.0.1")
        self.policy = policy
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopped = False
        fd, self.log_path = tempfile.mkstemp(prefix=f"rlinf-{gateway}-", suffix=".log")
        os.close(fd)

    @property
    def url(self) -> str:
        """Base URL of the router (no trailing slash)."""
        return f"http://{_fmt_host(self.host)}:{self.port}"

    def command(self) -> list[str]:
        """The command line used to start the gateway.

        smg takes every policy as a flag. sglang-router 0.3.2 knows
        ``consistent_hashing`` and ``prefix_hash`` but does not offer them on its
        command line: they are set on the parsed arguments.
        """
        if self.gateway == "smg":
            cmd = [sys.executable, "-m", "smg", "launch", "--policy", self.policy]
            if self.enable_rl:
                cmd.append("--enable-rl")
        elif self.policy in _HIDDEN_POLICIES:
            cmd = [sys.executable, "-c", _SET_POLICY, self.policy]
        else:
            cmd = [sys.executable, "-m", "sglang_router.launch_router", "--policy", self.policy]
        cmd += [
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--prometheus-host",
            "127.0.0.1",
            "--prometheus-port",
            str(self.prometheus_port),
        ]
        if self.worker_urls:
            cmd += ["--worker-urls", *self.worker_urls]
        return cmd + self.extra_args

    def log_tail(self, limit: int = 6000) -> str:
        """The last ``limit`` characters of the router log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def start(self) -> RouterProcess:
        """Start the router and wait until all workers are healthy."""
        if not _available(self.gateway):
            extra = GATEWAY_EXTRAS[self.gateway]
            raise MissingDependencyError(
                f"launch_router(gateway={self.gateway!r}) needs the '{extra}' extra (the "
                f"{self.gateway} package); from a clone of the repository: "
                f"pip install -e '.[{extra}]'"
            )
        with self._lock:  # stop() from another thread either precedes or sees the process
            if self.proc is not None:
                raise RuntimeError("router already started")
        # The ports we pick are free when picked, not when the gateway binds them:
        # another process may take one in between. Then the gateway exits at once
        # ("Address already in use") and it is started again on new ports.
        for attempt in range(_START_ATTEMPTS):
            with self._lock:
                if self._stopped:
                    raise RuntimeError("router stopped before it started")
                with open(self.log_path, "ab") as log:
                    self.proc = spawn(
                        self.command(),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=router_env(),
                        start_new_session=True,
                    )
            try:
                self._wait_ready()
            except _PortTaken:
                if self._own_port and attempt + 1 < _START_ATTEMPTS:
                    with self._lock:
                        self.proc = None
                    self.port = _free_port(self.host)
                    self.prometheus_port = _free_port("127.0.0.1")
                    with open(self.log_path, "wb"):  # the next start's log alone
                        pass
                    continue
                self.cleanup()
                raise
            except BaseException:
                self.cleanup()  # the log tail is already in the exception message
                raise
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_ready(self) -> None:
        import httpx

        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        want = len(self.worker_urls)
        last = "no answer"
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while time.monotonic() < deadline:
                code = self.proc.poll()
                if code is not None:
                    tail = self.log_tail()
                    error = _PortTaken if "Address already in use" in tail else RuntimeError
                    raise error(
                        f"{self.gateway} exited with code {code} during startup; log tail:\n{tail}"
                    )
                try:
                    r = client.get(self.url + "/readiness")
                    last = f"{r.status_code} {r.text[:200]}"
                    if r.status_code == 200:
                        data = r.json()
                        if int(data.get("healthy_workers", -1)) >= want:
                            return
                    elif r.status_code == 503 and want == 0:
                        return
                except (httpx.HTTPError, ValueError) as e:
                    last = repr(e)
                time.sleep(0.1)
        raise TimeoutError(
            f"{self.gateway} not ready after {self.ready_timeout}s (last /readiness: {last}); "
            f"log tail:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Kill the router's process group (SIGTERM, then SIGKILL) and reap it.

        Safe from another thread while :meth:`start` waits for readiness: the
        router dies and :meth:`start` raises.
        """
        with self._lock:
            self._stopped = True
            proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            # smg 1.13 always waits its 5 s drain settle time on SIGTERM (even idle), so
            # any shorter grace ended in the SIGKILL below anyway: no wait for it
            grace = 0.0 if self.gateway == "smg" else timeout
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # make sure nothing of the group survives
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)

    def cleanup(self) -> None:
        """Stop the router and delete its log file."""
        self.stop()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)

    def __enter__(self) -> RouterProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.cleanup()


def launch_router(
    worker_urls: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    policy: str = "round_robin",
    extra_args: Iterable[str] = (),
    ready_timeout: float = 60.0,
    gateway: Gateway = "sglang-router",
    enable_rl: bool = False,
) -> RouterProcess:
    """Start a real gateway in front of ``worker_urls`` and wait until ready.

    ``gateway`` is ``"smg"`` (smg 1.13; ``enable_rl=True`` adds ``--enable-rl``)
    or ``"sglang-router"`` (0.3.2, the default here for compatibility).

    Returns a started :class:`RouterProcess`; use it as a context manager::

        with launch_router([w1.url, w2.url]) as router:
            httpx.post(router.url + "/generate", json={"text": "hi"})

    Raises :class:`~rlinf_http.MissingDependencyError` without the gateway's
    extra (``smg`` or ``router``), and ``RuntimeError``/``TimeoutError`` (with
    the gateway's log tail) if it dies or does not report
    ``healthy_workers == len(worker_urls)``.
    On Linux the router is killed when this process dies, even by ``kill -9``.
    """
    return RouterProcess(
        worker_urls,
        host=host,
        port=port,
        policy=policy,
        extra_args=extra_args,
        ready_timeout=ready_timeout,
        gateway=gateway,
        enable_rl=enable_rl,
    ).start()
