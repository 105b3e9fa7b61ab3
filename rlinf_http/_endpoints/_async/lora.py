"""LoRA adapters on a server (the router answers 404)."""

from __future__ import annotations

from ..._core.dataplane import (
    build_load_lora,
    build_unload_lora,
)
from ...models import LoraAdapterResult
from .._base import Endpoint

__all__ = ["AsyncLora"]


class AsyncLora(Endpoint):
    """Load and unload LoRA adapters."""

    __slots__ = ()

    async def async_load_lora_adapter(
        self, lora_name: str, lora_path: str, *, pinned: bool = False
    ) -> LoraAdapterResult:
        """``POST /load_lora_adapter``: load an adapter under ``lora_name``.

        Requests then select it with ``lora_path=lora_name``. A server started
        without LoRA support answers 400 (:class:`~rlinf_http.BadRequestError`).
        """
        return await self._driver.asend(
            build_load_lora(lora_name, lora_path, pinned), retry=self._driver.policy(None)
        )

    async def async_unload_lora_adapter(self, lora_name: str) -> LoraAdapterResult:
        """``POST /unload_lora_adapter``."""
        return await self._driver.asend(
            build_unload_lora(lora_name), retry=self._driver.policy(None)
        )
