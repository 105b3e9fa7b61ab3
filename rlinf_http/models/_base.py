"""The base of every wire model: typed attributes, unknown fields kept, dict-style access."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["ROUTED_WORKER_HEADER", "ResponseModel", "WireModel"]

#: smg's response header naming the worker (its URL) that served a request.
ROUTED_WORKER_HEADER = "x-smg-routed-worker-id"

_MISSING: Any = object()


class WireModel(BaseModel):
    """A pydantic model mirroring a JSON object of the sglang wire format.

    Field names are the wire names. Fields the model does not declare are kept
    (servers add fields often) and reachable as attributes or keys. Item access
    (``out["text"]``, ``out.get("meta_info")``, ``"text" in out``) works as it did
    on the plain dicts the RLinf client returned, so older code keeps running.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=(), frozen=False)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """The value of a wire field (declared or extra), or ``default``."""
        if key in type(self).model_fields:
            return getattr(self, key)
        extra = self.__pydantic_extra__
        if extra is not None and key in extra:
            return extra[key]
        return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def keys(self) -> list[str]:
        """The wire field names present on this object."""
        names = [k for k in type(self).model_fields if k in self.model_fields_set]
        if self.__pydantic_extra__:
            names.extend(self.__pydantic_extra__)
        return names

    def to_dict(self) -> dict[str, Any]:
        """The object as plain JSON-compatible data, as it came over the wire."""
        return self.model_dump(mode="json", exclude_unset=True)


class ResponseModel(WireModel):
    """A wire model that is a whole response body: it knows its request id.

    The client sets the headers of the exchange in a plain slot after validation,
    which costs validation nothing (a pydantic private attribute costs ~2 µs per
    object); copies made with ``model_copy``/``copy`` do not carry it.
    """

    __slots__ = ("_id_sources",)

    def _set_id_sources(self, sources: tuple[Mapping[str, str], ...] | str) -> None:
        # Header mappings to look the id up in on first use, or the id itself.
        object.__setattr__(self, "_id_sources", sources)

    @property
    def request_id(self) -> str | None:
        """The ``x-request-id`` of the response (else the one the client sent)."""
        sources: tuple[Mapping[str, str], ...] | str = getattr(self, "_id_sources", ())
        if isinstance(sources, str):
            return sources
        for headers in sources:
            value = headers.get("x-request-id")
            if value:
                return value
        return None

    @property
    def routed_worker_id(self) -> str | None:
        """The worker that served this result, as the gateway names it (smg's
        ``x-smg-routed-worker-id``: the worker's URL); ``None`` when no gateway said."""
        sources: tuple[Mapping[str, str], ...] | str = getattr(self, "_id_sources", ())
        if isinstance(sources, str):
            return None
        for headers in sources:
            value = headers.get(ROUTED_WORKER_HEADER)
            if value:
                return value
        return None
