"""Models of LoRA adapter management on an sglang server."""

from __future__ import annotations

from ._base import ResponseModel

__all__ = ["LoraAdapterResult"]


class LoraAdapterResult(ResponseModel):
    """The answer of ``/load_lora_adapter`` or ``/unload_lora_adapter``.

    ``loaded_adapters`` maps each adapter name now loaded to its path.
    """

    success: bool = True
    error_message: str | None = None
    loaded_adapters: dict[str, str] | None = None
