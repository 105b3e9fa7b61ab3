"""RL fields of a ``/generate`` answer (sglang 0.5.23): weight-version spans, cache details.

``meta_info.weight_versions`` lists which weight version produced which output
tokens: spans ``{"version", "start", "end"}`` over output-token positions,
``end`` exclusive, in order, the last one being the version that finished the
request (``meta_info.weight_version``). A request that ran across a weight
update has more than one span.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from typing import Any

from pydantic import Field, model_validator

from ._base import ResponseModel, WireModel

__all__ = [
    "CachedTokensDetails",
    "ResponseMetadata",
    "VersionedResponse",
    "WeightVersionMix",
    "WeightVersionSpan",
    "decode_int32_base64",
    "mix_of_spans",
]


class WeightVersionSpan(WireModel):
    """Output tokens ``start`` .. ``end - 1`` were sampled with weight version ``version``."""

    version: str
    start: int = 0
    end: int = 0

    @model_validator(mode="before")
    @classmethod
    def _from_triple(cls, data: Any) -> Any:
        # sglang's msgspec struct is array-like: accept ``[version, start, end]`` too
        if isinstance(data, (list, tuple)) and len(data) == 3:
            return {"version": data[0], "start": data[1], "end": data[2]}
        return data

    @property
    def num_tokens(self) -> int:
        """How many output tokens the span covers."""
        return max(self.end - self.start, 0)


class CachedTokensDetails(WireModel):
    """``meta_info.cached_tokens_details``: where the prompt's cached tokens came from.

    ``storage`` / ``storage_backend`` appear only with an L3 (HiCache storage) backend.
    """

    device: int = 0
    host: int = 0
    storage: int | None = None
    storage_backend: str | None = None


class WeightVersionMix(WireModel):
    """Which weight versions produced a result's output tokens.

    ``ranges`` maps each version to its ``(start, end)`` output-token ranges
    (``end`` exclusive), in order of first use; ``versions`` lists the versions
    in that order. ``mixed`` is true when more than one version produced
    tokens: such a sample was generated partly by stale weights (an off-policy
    part an RL step may want to drop or reweight).
    """

    versions: list[str] = Field(default_factory=list)
    ranges: dict[str, list[tuple[int, int]]] = Field(default_factory=dict)
    final_version: str | None = None

    @property
    def mixed(self) -> bool:
        """True when tokens of this result come from more than one weight version."""
        return len(self.versions) > 1

    def version_at(self, token_index: int) -> str | None:
        """The weight version that produced output token ``token_index`` (``None``: unknown)."""
        for version, spans in self.ranges.items():
            for start, end in spans:
                if start <= token_index < end:
                    return version
        return None


def mix_of_spans(
    spans: Sequence[WeightVersionSpan] | None, final_version: str | None = None
) -> WeightVersionMix:
    """A :class:`WeightVersionMix` from ``meta_info.weight_versions`` (pure).

    Empty spans (``end <= start``, e.g. a version that produced no token) are
    skipped. Without spans (an older server), the result names only
    ``final_version`` with no ranges and is not mixed.
    """
    ranges: dict[str, list[tuple[int, int]]] = {}
    for span in spans or ():
        if span.end <= span.start:
            continue
        ranges.setdefault(span.version, []).append((span.start, span.end))
    versions = list(ranges)
    if spans:
        final_version = spans[-1].version
    if not versions and final_version is not None:
        versions = [final_version]
    return WeightVersionMix(versions=versions, ranges=ranges, final_version=final_version)


class ResponseMetadata(WireModel):
    """``metadata`` of a chat or text completion (sglang 0.5.23): the weight version.

    ``weight_version`` is the version that finished the request;
    ``weight_versions`` its spans over output tokens, as on ``/generate``. sglang
    builds both from the *first* choice's ``meta_info`` and sends them on
    whole (non-streamed) responses only.
    """

    weight_version: str | None = None
    weight_versions: list[WeightVersionSpan] | None = None

    def weight_version_mix(self) -> WeightVersionMix:
        """Which weight versions produced which output tokens (see :class:`WeightVersionMix`)."""
        return mix_of_spans(self.weight_versions, self.weight_version)


class VersionedResponse(ResponseModel):
    """A chat/text completion (or chunk) that may carry sglang's ``metadata``."""

    metadata: ResponseMetadata | None = None

    @property
    def weight_version(self) -> str | None:
        """``metadata.weight_version``: the weight version that finished the request.

        ``None`` when the server sent no ``metadata`` (older servers, a router
        that drops it, and stream chunks: sglang 0.5.23 sends it on whole
        responses only).
        """
        return self.metadata.weight_version if self.metadata is not None else None

    def weight_version_mix(self) -> WeightVersionMix:
        """Which weight versions produced the first choice's tokens (from ``metadata``)."""
        if self.metadata is None:
            return WeightVersionMix()
        return self.metadata.weight_version_mix()


def decode_int32_base64(text: str) -> list[int]:
    """Little-endian int32 values from base64 text (``meta_info.routed_experts``)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64 text") from None
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes is not a whole number of int32 values")
    return list(struct.unpack(f"<{len(raw) // 4}i", raw))
