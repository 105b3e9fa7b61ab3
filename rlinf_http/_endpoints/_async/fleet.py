"""``client.async_fleet()``: the workers behind a gateway as a :class:`~rlinf_http.Fleet`.

Written once; ``_sync/fleet.py`` is generated from it. Discovery runs on the
client's driver; each worker client is the client's public ``copy()``. An
endpoint is composed into the client, so ``self`` is that client: it is seen
here only as a :class:`~rlinf_http._fleet._base.Prototype` (``options``,
``copy()``), never through the client module.
"""

from __future__ import annotations

from typing import Any, cast

from ..._core import rl_gateway
from ..._core.requests import check_timeout
from ..._core.rl_gateway import Via
from ..._errors import FleetError, InvalidRequestError
from ..._fleet import Fleet
from ..._fleet._base import Prototype
from .._base import Endpoint

__all__ = ["AsyncFleetAccess"]

ALIVE = ("ready", "not_ready")


class AsyncFleetAccess(Endpoint):
    __slots__ = ()

    async def async_fleet(
        self,
        worker_type: str | None = None,
        *,
        healthy_only: bool = False,
        call_timeout: float | None = None,
        alive_only: bool = False,
        via: Via = "auto",
        selector: str | None = None,
        **client_options: Any,
    ) -> Fleet:
        """The workers behind this gateway, or this server alone, as a :class:`Fleet`.

        ``via="auto"`` (the default): through smg started with ``--enable-rl``
        the workers come from ``GET /v1/rl/workers`` and each fleet call is one
        ``/v1/rl/engine/...`` fan-out sent by the gateway (``fleet.via ==
        "gateway"``): the workers need not be reachable from here. Otherwise
        (smg without RL mode, sglang-router 0.3.2: ``GET /workers``; a server:
        itself) the client calls each worker directly (``fleet.via ==
        "direct"``). ``via="gateway"`` or ``"direct"`` chooses; ``"gateway"``
        raises :class:`~rlinf_http.NotFoundError` (code ``unknown_url``) when
        the gateway has no RL mode. ``selector`` (gateway path) is passed to smg
        as given, e.g. ``"engine=sglang,role=actor"``; the default selects every
        sglang worker. A bad selector raises :class:`~rlinf_http.BadRequestError`
        carrying smg's code (``invalid_selector``, ``no_workers_match``).

        ``worker_type`` keeps ``"regular"``, ``"prefill"`` or ``"decode"``
        workers only. Each worker gets a client with this client's settings;
        ``client_options`` override them (e.g. ``api_key=`` a worker's admin key).
        ``call_timeout`` bounds each worker's call (see :meth:`Fleet.from_urls`).
        Through the gateway, without it each call is ONE fan-out, which smg
        answers once every worker did, each worker bounded by smg's
        ``--rl-control-timeout-secs`` (default 600 s; a worker past it fails
        alone with :class:`~rlinf_http.APITimeoutError`, code
        ``upstream_timeout``); with it, each worker gets its own fan-out
        (``id in (...)``), all sent at once, so a hung worker fails alone after
        ``call_timeout`` as on the direct path. Keep ``call_timeout`` below
        ``--rl-control-timeout-secs`` or it never fires.
        ``healthy_only`` trusts the gateway's health flag, which lags (a
        killed worker stays healthy for minutes) and turns false for a worker
        paused a few minutes. ``alive_only`` asks each worker itself instead
        (:meth:`Fleet.async_status`) and keeps those that answer, paused or not:
        dead and hung workers are left out.
        """
        prototype = cast(Prototype, self)  # the client this endpoint is composed into
        prototype.options.replace(**client_options)  # checked before any I/O
        check_timeout(call_timeout, "call_timeout")
        if not isinstance(alive_only, bool):
            raise InvalidRequestError(f"alive_only must be True or False, got {alive_only!r}")
        plan = rl_gateway.discover_plan(via, worker_type, healthy_only, selector)
        found = await self._driver.arun(plan)
        fleet = Fleet._of(prototype, found.urls, worker_type, call_timeout, client_options)
        if found.via == "gateway":
            gateway = prototype.copy(**client_options)
            fleet._through(gateway, found.ids, rl_gateway.check_selector(selector))
        if not alive_only:
            return fleet
        states = await fleet.async_status()
        alive = [url for url, state in states.items() if state in ALIVE]
        if len(alive) == len(fleet):
            return fleet
        await fleet.aclose()
        if not alive:
            raise FleetError(
                f"no worker of {prototype.options.base_url} is alive: {dict(states)}",
                operation="fleet",
                result=states,
            )
        return fleet.subset(alive)
