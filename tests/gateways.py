"""The gateway tier of the tests: smg 1.13 (``--enable-rl``) and sglang-router 0.3.2.

Router-tier modules ask for the module-scoped ``gateway`` fixture (tests/conftest.py),
so each of their tests runs against both gateways, one gateway process per module and
gateway. :func:`start_gateway` starts the named one the way the project runs it: smg
with its RL control plane, sglang-router 0.3.2 as the compatibility tier.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from rlinf_http.testing import (
    FakeConfig,
    FakeWorkerProcess,
    RouterProcess,
    launch_router,
    router_available,
    smg_available,
    start_fake_worker,
)

#: smg first: the first-class gateway; sglang-router 0.3.2: the compatibility tier.
GATEWAYS = ("smg", "sglang-router")

#: the fake workers' served model name (smg routes chat/completions/embeddings by it)
SERVED_MODEL = "fake-model"


def gateway_available(gateway: str) -> bool:
    return smg_available() if gateway == "smg" else router_available()


def start_gateway(
    gateway: str,
    worker_urls: Sequence[str],
    *,
    policy: str = "round_robin",
    extra_args: Iterable[str] = (),
) -> RouterProcess:
    """Start ``gateway`` in front of ``worker_urls`` (smg with ``--enable-rl``)."""
    assert gateway in GATEWAYS, gateway
    return launch_router(
        worker_urls,
        gateway="smg" if gateway == "smg" else "sglang-router",
        enable_rl=gateway == "smg",
        policy=policy,
        extra_args=extra_args,
        ready_timeout=60,
    )


@contextlib.contextmanager
def fake_workers(n: int, config: FakeConfig | None = None) -> Iterator[list[FakeWorkerProcess]]:
    """``n`` fake worker processes started at once (each start is mostly an interpreter
    start-up: in parallel they cost about one); all are stopped on exit, also when one
    of them failed to start."""
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(start_fake_worker, config=config) for _ in range(n)]
    started = [f.result() for f in futures if f.exception() is None]
    try:
        for f in futures:
            f.result()  # the first start-up error, if any
        yield started
    finally:
        for w in reversed(started):
            w.stop()
