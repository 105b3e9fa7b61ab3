"""Models of ``POST /v1/embeddings`` (OpenAI-compatible) and sglang's native ``/encode``."""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ._base import ResponseModel, WireModel
from .chat import Usage

if TYPE_CHECKING:  # numpy is optional
    import numpy as np
    import numpy.typing as npt

__all__ = ["EmbeddingData", "EmbeddingResponse", "EncodeOutput"]


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        from .._errors import MissingDependencyError

        raise MissingDependencyError(
            "as_numpy needs numpy: pip install numpy (or the rlinf-http[msgpack] extra)"
        ) from None
    return numpy


class EmbeddingData(WireModel):
    """One embedding, at position ``index`` of the input.

    ``embedding`` is a list of floats, or a base64 string of little-endian float32
    values when ``encoding_format="base64"`` was asked; :attr:`vector` decodes
    either form.
    """

    index: int = 0
    object: str = "embedding"
    embedding: list[float] | str

    @property
    def vector(self) -> list[float]:
        """The embedding as floats, whichever encoding the server used."""
        if isinstance(self.embedding, str):
            raw = base64.b64decode(self.embedding)
            return list(struct.unpack(f"<{len(raw) // 4}f", raw))
        return self.embedding


class EmbeddingResponse(ResponseModel):
    """A ``list`` of embeddings (``model`` is the server's model path, not the served name)."""

    object: str = "list"
    data: list[EmbeddingData]
    model: str = ""
    usage: Usage | None = None

    @property
    def vectors(self) -> list[list[float]]:
        """The embeddings as lists of floats, in input order."""
        return [d.vector for d in sorted(self.data, key=lambda d: d.index)]

    def as_numpy(self) -> npt.NDArray[np.float32]:
        """The embeddings as a ``(len(input), dim)`` float32 array (needs numpy)."""
        numpy = _numpy()
        out: npt.NDArray[np.float32] = numpy.asarray(self.vectors, dtype=numpy.float32)
        return out


class EncodeOutput(ResponseModel):
    """One result of sglang's native ``/encode`` (a list of these for a batch)."""

    embedding: list[float] = Field(default_factory=list)
    meta_info: dict[str, Any] = Field(default_factory=dict)
