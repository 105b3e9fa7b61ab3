"""A cluster for RL-step tests: three fake workers behind a real gateway (sglang-router
0.3.2, or smg 1.13 with ``--enable-rl``), and the reset between tests.

Import the fixtures ``workers`` and ``router`` into a test module (``from rl_step_cluster
import cluster_router, cluster_workers``): module-scoped, each module gets its own cluster.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from control_helpers import clear_faults, wait_until
from gateways import GATEWAYS, gateway_available

from rlinf_http import InferenceHTTPClient
from rlinf_http.testing import (
    FakeConfig,
    FakeWorkerProcess,
    RouterProcess,
    launch_router,
    start_fake_worker,
)

#: 10 ms per token: generations are running while the step pauses them.
CONFIG = FakeConfig(itl_s=0.01)

GATEWAY_PARAMS = [
    pytest.param(
        gateway,
        marks=pytest.mark.skipif(not gateway_available(gateway), reason=f"{gateway} not installed"),
    )
    for gateway in sorted(GATEWAYS)
]


@pytest.fixture(scope="module", name="workers")
def cluster_workers() -> Iterator[list[FakeWorkerProcess]]:
    with (
        start_fake_worker(config=CONFIG) as a,
        start_fake_worker(config=CONFIG) as b,
        start_fake_worker(config=CONFIG) as c,
    ):
        yield [a, b, c]


@pytest.fixture(scope="module", params=GATEWAY_PARAMS, name="router")
def cluster_router(
    request: pytest.FixtureRequest, workers: list[FakeWorkerProcess]
) -> Iterator[RouterProcess]:
    urls = [w.url for w in workers]
    rl = {"enable_rl": True} if request.param == "smg" else {}
    with launch_router(urls, gateway=request.param, ready_timeout=60, **rl) as r:
        yield r


def listed(router: RouterProcess) -> set[str]:
    """The worker URLs the router lists now."""
    with InferenceHTTPClient(router.url, max_retries=0) as client:
        return {w.url or "" for w in client.list_workers().workers}


def reset(router: RouterProcess, workers: list[FakeWorkerProcess]) -> None:
    """Every worker continued, without faults, and in the router's rotation."""
    with InferenceHTTPClient(router.url, max_retries=0) as client:
        for w in workers:
            os.kill(w.pid, signal.SIGCONT)
            clear_faults(w.url)
            with InferenceHTTPClient(w.url) as direct:
                direct.continue_generation()
        now = listed(router)
        for w in workers:
            if w.url not in now:
                client.add_worker(w.url, timeout=60)
    # smg removes in the background: wait until every worker is listed again
    wait_until(lambda: listed(router) >= {w.url for w in workers}, "all workers listed")
