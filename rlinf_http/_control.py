"""Access to every worker behind a router (``fleet()``), and the bracket helpers.

The control calls of one server are in :mod:`rlinf_http._endpoints`; this module
keeps :class:`FleetAccess` (``client.fleet()`` / ``async_fleet()``) until the
fleet is written once too, and re-exports the brackets from
:mod:`rlinf_http._brackets`, where they live.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from ._brackets import CLEANUP_TIMEOUT_S, abracket, bracket
from ._core import control
from ._core.requests import check_timeout
from ._endpoints._base import Endpoint

if TYPE_CHECKING:
    from ._client import InferenceHTTPClient
    from ._fleet import Fleet

__all__ = ["CLEANUP_TIMEOUT_S", "FleetAccess", "abracket", "bracket"]


class FleetAccess(Endpoint):
    """``fleet()`` / ``async_fleet()``: one client per worker of this router."""

    __slots__ = ()

    def fleet(
        self,
        worker_type: str | None = None,
        *,
        healthy_only: bool = False,
        call_timeout: float | None = None,
        **client_options: Any,
    ) -> Fleet:
        """The workers behind this router (``GET /workers``), or this server alone.

        ``worker_type`` keeps ``"regular"``, ``"prefill"`` or ``"decode"``
        workers only. Each worker gets a client with this client's settings;
        ``client_options`` override them (e.g. ``api_key=`` a worker's admin key).
        ``call_timeout`` bounds each worker's calls (see :meth:`Fleet.from_urls`).
        """
        from ._fleet import Fleet  # here: the fleet module builds clients of this class

        client = cast("InferenceHTTPClient", self)
        options = Fleet._worker_options(client, client_options)
        check_timeout(call_timeout, "call_timeout")
        urls = self._driver.run(control.discover_workers_plan(worker_type, healthy_only))
        return Fleet._from_client(client, urls, worker_type, options, call_timeout)

    async def async_fleet(
        self,
        worker_type: str | None = None,
        *,
        healthy_only: bool = False,
        call_timeout: float | None = None,
        **client_options: Any,
    ) -> Fleet:
        """Async :meth:`fleet`."""
        from ._fleet import Fleet

        client = cast("InferenceHTTPClient", self)
        options = Fleet._worker_options(client, client_options)
        check_timeout(call_timeout, "call_timeout")
        urls = await self._driver.arun(control.discover_workers_plan(worker_type, healthy_only))
        return Fleet._from_client(client, urls, worker_type, options, call_timeout)
