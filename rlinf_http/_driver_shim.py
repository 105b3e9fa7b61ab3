"""TEMPORARY: removed at merge.

The client's ``BaseClient`` is becoming a driver object held as
``client._driver`` with ``run(plan, timeout=None)`` / ``await arun(plan,
timeout=None)``. Until that lands, this adapter gives every client a
``_driver`` that delegates to today's ``_run`` / ``_arun``, so the fleet and
its endpoint are written against the final shape.
"""  # TEMPORARY: removed at merge

from __future__ import annotations

from typing import TypeVar

from ._base_client import BaseClient
from ._core.plans import Plan

T = TypeVar("T")


class DriverShim:  # TEMPORARY: removed at merge
    """``run`` / ``arun`` of one client."""

    __slots__ = ("_client",)

    def __init__(self, client: BaseClient) -> None:
        self._client = client

    def run(self, plan: Plan[T], timeout: float | None = None) -> T:
        return self._client._run(plan, timeout)

    async def arun(self, plan: Plan[T], timeout: float | None = None) -> T:
        return await self._client._arun(plan, timeout)


# Installed when the fleet is imported (rlinf_http._fleet._base imports this module).
BaseClient._driver = property(DriverShim)  # type: ignore[attr-defined]  # TEMPORARY
