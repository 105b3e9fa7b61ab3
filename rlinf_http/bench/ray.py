"""Load from a Ray cluster: ``--ray [ADDRESS] --ray-actors N``.

The schedule is dealt (request by request, or RL group by RL group) over ``N``
async Ray actors, placed with the ``SPREAD`` strategy so that they land on
different nodes when there are several. Each actor runs the ordinary
single-process shard (:func:`rlinf_http.bench.runner._run_shard`: one event loop,
one pooled client, readiness wait and warm-up), then waits. When every actor is
ready the driver picks one start instant on its own clock, converts it to each
actor's clock (offset measured NTP-style: the actor's ``time.time()`` against
the midpoint of the driver's round trip) and releases them together. The actors
return their raw per-request records; the driver shifts them onto one timeline
and computes every metric with the same code as a local run.

``ADDRESS``: ``"local"`` starts a local Ray cluster on 127.0.0.1 (no dashboard,
usage stats off) and stops it at the end; ``"auto"`` or ``"ray://host:10001"`` /
``"host:6379"`` connect to a running cluster (whose nodes need rlinf-http
installed). If Ray is already initialised in this process it is used as is.

The driver is a coroutine: every Ray call it makes blocks a worker thread for
at most :data:`_POLL_S`, so a cancellation (Ctrl-C) reaches it within that
time; it then kills the actors (their in-flight requests die with them) and
stops the local cluster it started. While the run lasts it polls the actors'
request counts and reports them to ``progress(done, failed, total)``. Ray's
own log lines are not forwarded to the driver's terminal, and Ray's Python
loggers are kept at ERROR.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._errors import MissingDependencyError

if TYPE_CHECKING:
    from .config import BenchConfig, Progress, Status
    from .shard import _Shard
    from .workload import WorkItem

__all__ = ["async_run_on_ray", "clock_offset", "require_ray"]

_T = TypeVar("_T")

#: seconds between "all actors ready" and the common start
_START_MARGIN_S = 0.5
_POLL_S = 0.5


def require_ray() -> Any:
    """``import ray`` or a clear :class:`MissingDependencyError`."""
    try:
        import ray  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise MissingDependencyError(
            "--ray needs Ray: the 'ray' extra (rlinf-http[ray]; in a clone of the "
            f"repository: pip install -e '.[ray]') ({exc})"
        ) from None
    return ray


def clock_offset(before: float, remote: float, after: float) -> float:
    """Remote clock - local clock, from a round trip (remote read at the midpoint)."""
    return remote - (before + after) / 2.0


class _BenchActor:
    """One load generator (an async Ray actor: its own event loop)."""

    def __init__(self) -> None:
        import asyncio

        self._ready = asyncio.Event()
        self._go = asyncio.Event()
        self._start = 0.0
        self._counts = (0, 0)

    def clock(self) -> float:
        return time.time()

    def node(self) -> str:
        import ray  # type: ignore[import-not-found,unused-ignore]

        return str(ray.get_runtime_context().get_node_id())

    def counts(self) -> tuple[int, int]:
        """Measured requests done and failed so far."""
        return self._counts

    async def run(
        self,
        config: BenchConfig,
        items: list[WorkItem],
        schedule: list[float],
        process: int,
        max_concurrency: int | None,
        warmups: list[WorkItem],
    ) -> _Shard:
        from .shard import _run_shard

        async def go() -> float:
            self._ready.set()
            await self._go.wait()
            return self._start

        def count(done: int, failed: int, total: int) -> None:
            self._counts = (done, failed)

        return await _run_shard(
            config,
            items,
            schedule,
            process=process,
            max_concurrency=max_concurrency,
            warmups=warmups,
            fetch_info=process == 0,
            go=go,
            progress=count,
        )

    async def wait_ready(self) -> bool:
        await self._ready.wait()
        return True

    async def start(self, start_wall: float) -> None:
        self._start = start_wall
        self._go.set()


def _quiet_ray_loggers() -> None:
    """Ray's Python loggers at ERROR (its notices are not bench output)."""
    for name in ("ray", "ray.data", "ray.tune", "ray.serve", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _init(ray: Any, address: str, actors: int) -> None:
    """Connect to a cluster, or start a local one on 127.0.0.1."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _quiet_ray_loggers()
    quiet: dict[str, Any] = {
        "log_to_driver": False,
        "configure_logging": False,
        "logging_level": logging.ERROR,
    }
    if address == "local":
        ray.init(
            address="local",
            num_cpus=max(actors, 1),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **quiet,
        )
    else:
        ray.init(address=address, **quiet)


async def _blocking(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)`` in a worker thread (callers keep it short: <= _POLL_S)."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def _teardown(ray: Any, actors: Sequence[Any], shutdown: bool) -> None:
    for a in actors:
        try:
            ray.kill(a)  # its requests in flight die with it
        except Exception:  # already gone
            pass
    if shutdown:
        ray.shutdown()


async def async_run_on_ray(
    config: BenchConfig,
    items: Sequence[WorkItem],
    schedule: Sequence[float],
    status: Status | None = None,
    progress: Progress | None = None,
) -> tuple[list[_Shard], dict[str, Any]]:
    """Run the plan from ``config.ray_actors`` actors; shards on the driver's clock.

    Cancellable: a cancellation (Ctrl-C) lands within :data:`_POLL_S`, kills the
    actors and stops a cluster this call started.
    """
    from .shard import _split, split_plan
    from .workload import warmup_items

    ray = require_ray()
    address = config.ray_address or "local"
    owned = not ray.is_initialized()  # this call starts (and must stop) the connection
    actors: list[Any] = []
    try:
        if owned:
            await _blocking(_init, ray, address, config.ray_actors)
        actor_cls = ray.remote(num_cpus=1)(_BenchActor)
        parts = [p for p in split_plan(items, schedule, config.ray_actors) if p[0]]
        n = len(parts)
        total = sum(len(its) for its, _ in parts)
        limits = _split(config.max_concurrency, n) if config.max_concurrency else [0] * n
        warm = warmup_items(list(items), config.warmup_requests)
        actors = [
            actor_cls.options(scheduling_strategy="SPREAD", max_concurrency=16).remote()
            for _ in range(n)
        ]
        offsets: list[float] = []
        for a in actors:
            before = time.time()
            remote = await _blocking(ray.get, a.clock.remote())
            offsets.append(clock_offset(before, remote, time.time()))
        nodes = await _blocking(ray.get, [a.node.remote() for a in actors])
        runs = [
            a.run.remote(
                config,
                its,
                sched,
                i,
                max(1, limits[i]) if config.max_concurrency else None,
                warm,
            )
            for i, (a, (its, sched)) in enumerate(zip(actors, parts, strict=True))
        ]
        pending = [a.wait_ready.remote() for a in actors]
        waited = time.monotonic()
        deadline = waited + config.ready_timeout + 120.0
        notice = waited + 5.0
        while pending:
            _, pending = await _blocking(
                ray.wait, pending, num_returns=len(pending), timeout=_POLL_S
            )
            early, _ = await _blocking(ray.wait, runs, num_returns=len(runs), timeout=0)
            if early:
                await _blocking(ray.get, early)  # failed before it was ready: raise its error
                raise RuntimeError("a Ray actor finished before the common start")
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{len(pending)} Ray actor(s) never became ready")
            if status is not None and now >= notice:
                status(
                    f"waiting for {len(pending)} of {n} Ray actor(s) to be ready "
                    f"(target readiness and warm-up): {now - waited:.0f} s"
                )
                notice = now + 5.0
        start = time.time() + _START_MARGIN_S
        await _blocking(
            ray.get, [a.start.remote(start + off) for a, off in zip(actors, offsets, strict=True)]
        )
        running = list(runs)
        while running:
            finished, running = await _blocking(
                ray.wait, running, num_returns=len(running), timeout=_POLL_S
            )
            if finished:
                await _blocking(ray.get, finished)  # an actor failed: raise its error now
            if progress is not None:
                await _report(ray, actors, total, progress)
        shards: list[_Shard] = await _blocking(ray.get, runs)
        for shard, off in zip(shards, offsets, strict=True):
            shard.start_wall -= off  # onto the driver's clock
        info = {
            "address": address,
            "actors": n,
            "nodes": sorted(set(nodes)),
            "clock_offsets_ms": [1000.0 * o for o in offsets],
        }
        return sorted(shards, key=lambda s: s.process), info
    finally:
        with anyio.CancelScope(shield=True):
            await _blocking(_teardown, ray, actors, owned and ray.is_initialized())


async def _report(ray: Any, actors: Sequence[Any], total: int, progress: Progress) -> None:
    """Sum the actors' counts (those that answer within _POLL_S) into ``progress``."""
    refs = [a.counts.remote() for a in actors]
    ready, _ = await _blocking(ray.wait, refs, num_returns=len(refs), timeout=_POLL_S)
    if len(ready) != len(refs):
        return  # a busy actor: report next time rather than a low count
    counts: list[tuple[int, int]] = await _blocking(ray.get, refs)
    progress(sum(c[0] for c in counts), sum(c[1] for c in counts), total)
