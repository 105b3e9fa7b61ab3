"""``client.async_fleet()``: the workers behind a router as a :class:`~rlinf_http.Fleet`.

Written once; ``_sync/fleet.py`` is generated from it. Discovery runs on the
client's driver; each worker client is the client's public ``copy()``. An
endpoint is composed into the client, so ``self`` is that client: it is seen
here only as a :class:`~rlinf_http._fleet._base.Prototype` (``options``,
``copy()``), never through the client module.
"""

from __future__ import annotations

from typing import Any, cast

from ..._core import control
from ..._core.requests import check_timeout
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
        **client_options: Any,
    ) -> Fleet:
        """The workers behind this router (``GET /workers``), or this server alone.

        ``worker_type`` keeps ``"regular"``, ``"prefill"`` or ``"decode"``
        workers only. Each worker gets a client with this client's settings;
        ``client_options`` override them (e.g. ``api_key=`` a worker's admin key).
        ``call_timeout`` bounds each worker's calls (see :meth:`Fleet.from_urls`).
        ``healthy_only`` trusts the router's ``is_healthy`` flag, which lags (a
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
        plan = control.discover_workers_plan(worker_type, healthy_only)
        urls = await self._driver.arun(plan)
        fleet = Fleet._of(prototype, urls, worker_type, call_timeout, client_options)
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
