"""Server administration: info, models, cache, aborts, health."""

from __future__ import annotations

from ..._core import plans
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

    async def async_flush_cache(self) -> FlushCacheResult:
        """``POST /flush_cache`` (server or router); ``flushed=False`` if it was refused."""
        return await self._driver.arun(plans.flush_cache_plan())

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
