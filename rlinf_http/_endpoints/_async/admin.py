"""Server administration: info, models, cache, aborts, health."""

from __future__ import annotations

from ..._core import plans, probes
from ..._core.requests import build_health
from ...models import (
    FlushCacheResult,
    ModelInfo,
    ModelList,
    ServerInfo,
)
from .._base import Endpoint

__all__ = ["AsyncAdmin"]


class AsyncAdmin(Endpoint):
    """Administration of a server (or what a router answers of it)."""

    __slots__ = ()

    async def async_server_info(self) -> ServerInfo:
        """``GET /server_info`` (falls back to ``/get_server_info`` on older servers)."""
        return await self._driver.arun(plans.server_info_plan())

    async def async_model_info(self) -> ModelInfo:
        """``GET /model_info`` (falls back to ``/get_model_info``)."""
        return await self._driver.arun(plans.model_info_plan())

    async def async_models(self) -> ModelList:
        """``GET /v1/models``."""
        return await self._driver.arun(plans.models_plan())

    async def async_flush_cache(self, timeout: float | None = None) -> FlushCacheResult:
        """``POST /flush_cache`` (server or router); ``flushed=False`` if it was refused.

        ``timeout=None`` flushes now (refused while requests run). A number of
        seconds sends sglang 0.5.23's ``/flush_cache?timeout=``: the server waits
        up to that long for idle, then flushes (``flushed=False`` with "Timed
        out waiting for idle state." otherwise) -- the call to make after a
        :class:`~rlinf_http.CacheNotFlushedError`. Servers only: the gateways'
        ``/flush_cache`` fan-out drops the query string.
        """
        if timeout is None:
            return await self._driver.arun(plans.flush_cache_plan())
        return await self._driver.arun(probes.flush_cache_when_idle_plan(timeout))

    async def async_ready(self, timeout: float | None = None) -> bool:
        """``GET /ready``: ``True`` when the server takes requests, ``False`` on 503.

        sglang answers 503 while paused (a weight sync), starting or shutting
        down; unlike ``/health`` it runs no generation, so it answers at once
        while paused. A server that does not answer raises
        :class:`~rlinf_http.APIConnectionError`. Servers only (the gateways 404).
        """
        return await self._driver.arun(probes.ready_plan(timeout))

    async def async_ping(self, timeout: float | None = None) -> bool:
        """``GET /ping``: ``True`` while the server is up (paused included), ``False`` on 503.

        A paused server is ``ready() == False`` and ``ping() == True``.
        Servers only (the gateways 404).
        """
        return await self._driver.arun(probes.ping_plan(timeout))

    async def async_abort_request(self, rid: str = "", *, abort_all: bool = False) -> None:
        """``POST /abort_request``: abort generation ``rid`` (servers only, not the router)."""
        await self._driver.arun(plans.abort_request_plan(rid, abort_all))

    async def async_health(self) -> bool:
        """``GET /health`` -> ``True`` on 2xx. Never raises; bounded by ``health_timeout``."""
        return await self._driver.aprobe(build_health(), self._driver.health_timeout)

    async def async_health_generate(self, timeout: float = 30.0) -> bool:
        """``GET /health_generate``: ``True`` on 2xx, ``False`` on any failure.

        A server runs a 1-token generation; the router answers from its worker
        registry (is any worker healthy).
        """
        return await self._driver.arun(plans.health_generate_plan(timeout))
