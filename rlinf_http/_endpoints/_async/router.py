"""Router administration: workers and readiness."""

from __future__ import annotations

from typing import Any

from ..._core import plans
from ...models import (
    Readiness,
    Worker,
    WorkerList,
)
from .._base import Endpoint

__all__ = ["AsyncRouter"]


class AsyncRouter(Endpoint):
    """The router's worker registry and readiness."""

    __slots__ = ()

    async def async_list_workers(self) -> WorkerList:
        """``GET /workers`` of the router."""
        return await self._driver.arun(plans.list_workers_plan())

    async def async_add_worker(
        self,
        url: str,
        worker_type: str = "regular",
        *,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
        **fields: Any,
    ) -> Worker:
        """Register a worker with the gateway and wait until it is healthy.

        Polls ``GET /workers/{id}``; raises
        :class:`~rlinf_http.WorkerRegistrationError` when the gateway gives up
        on the worker (sglang-router 0.3.2 reports a failed job with its
        message; smg 1.13 drops the worker after its
        ``--worker-startup-timeout-secs``) and
        :class:`~rlinf_http.APITimeoutError` after ``timeout`` seconds.
        ``fields`` go into the request (``model_id``, ``priority``,
        ``labels``...). A trailing slash on ``url`` is removed.
        """
        return await self._driver.arun(
            plans.add_worker_plan(url, worker_type, fields, timeout, poll_interval)
        )

    async def async_remove_worker(
        self,
        worker_id: str | None = None,
        *,
        url: str | None = None,
        timeout: float = 60.0,
        poll_interval: float = 0.2,
    ) -> bool:
        """Deregister a worker (by the gateway's id, or by URL) and wait until it is gone.

        ``worker_id`` may be the worker's URL (``remove_worker(url)``, the pair
        of ``add_worker(url)``), as may ``url=``: it is resolved to the
        gateway's id through ``GET /workers``. Returns ``True`` once the worker
        is gone (smg drains it first: a few seconds), ``False`` if the gateway
        has no worker with that id (already removed). A URL that no registered
        worker has raises :class:`~rlinf_http.WorkerNotFoundError` (a
        :class:`~rlinf_http.NotFoundError`) listing the registered URLs.
        """
        return await self._driver.arun(
            plans.remove_worker_plan(worker_id, url, timeout, poll_interval)
        )

    async def async_readiness(self) -> Readiness:
        """``GET /readiness`` of the router (a 503 is returned as not ready)."""
        return await self._driver.arun(plans.readiness_plan())

    async def async_wait_until_ready(
        self, timeout: float = 300.0, poll_interval: float = 0.5
    ) -> str:
        """Wait until the target serves: ``/readiness`` on a router, ``/health`` on a server.

        Returns ``"router"`` or ``"server"``; raises
        :class:`~rlinf_http.APITimeoutError` after ``timeout`` seconds.
        """
        return await self._driver.arun(plans.wait_until_ready_plan(timeout, poll_interval))
