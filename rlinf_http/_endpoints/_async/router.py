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
        """Register a worker with the router and wait until it is healthy.

        Polls ``GET /workers/{id}`` (404 means "not yet"); raises
        :class:`~rlinf_http.WorkerRegistrationError` if the router reports the
        registration failed and :class:`~rlinf_http.APITimeoutError` after
        ``timeout`` seconds. ``fields`` go into the request (``model_id``,
        ``priority``, ``labels``...). A trailing slash on ``url`` is removed.
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
        """Deregister a worker (by id, or by URL) and wait until it is gone.

        Returns ``False`` if the router had no such worker.
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
