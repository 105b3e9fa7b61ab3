"""The gateway tier of the tests: smg 1.13 (``--enable-rl``) and sglang-router 0.3.2.

Router-tier modules ask for the module-scoped ``gateway`` fixture (tests/conftest.py),
so each of their tests runs against both gateways, one gateway process per module and
gateway. :func:`start_gateway` starts the named one the way the project runs it: smg
with its RL control plane, sglang-router 0.3.2 as the compatibility tier.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rlinf_http.testing import RouterProcess, launch_router, router_available, smg_available

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
