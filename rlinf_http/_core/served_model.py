"""Which ``model`` to send when the caller names none (no I/O).

smg routes the OpenAI-style calls by ``model`` (an unknown name is a 404
``model_not_found``, a missing one a 400); sglang-router 0.3.2 and a plain
sglang server accept any name. So a call without ``model=`` reads
``GET /v1/models`` once per client (:func:`served_models_plan`), keeps the ids
in a :class:`ServedModels` cache, and sends the one served model
(:func:`pick_model`). A ``model_not_found`` answer to a call whose model the
client chose (:func:`is_model_not_found`) refreshes the cache once; the I/O
halves live in :mod:`rlinf_http._served`.
"""

from __future__ import annotations

import threading

from .._errors import APIStatusError, InvalidRequestError
from ..models import ModelList
from .plans import Plan, models_plan
from .requests import DEFAULT_CHAT_MODEL

__all__ = [
    "FALLBACK_MODEL",
    "MODEL_NOT_FOUND",
    "ServedModels",
    "is_model_not_found",
    "pick_model",
    "served_models_plan",
]

#: smg's error code for a model no worker serves.
MODEL_NOT_FOUND = "model_not_found"

#: Sent when the base URL has no ``GET /v1/models`` (servers and gateways without
#: it accept any name).
FALLBACK_MODEL = DEFAULT_CHAT_MODEL


def served_models_plan() -> Plan[tuple[str, ...]]:
    """The served model ids of ``GET /v1/models`` (LoRA adapters left out).

    An answer of 404/405 (no such route), or one that is not a model list (no
    ``data``), gives ``(FALLBACK_MODEL,)``: such a base URL checks no name.
    """
    try:
        listing: ModelList = yield from models_plan()
    except APIStatusError as exc:
        if exc.status_code in (404, 405):
            return (FALLBACK_MODEL,)
        raise
    if "data" not in listing.model_fields_set:
        return (FALLBACK_MODEL,)
    # sglang lists a loaded LoRA adapter as a card whose ``parent`` is the base model.
    return tuple(card.id for card in listing.data if card.get("parent") is None)


def pick_model(ids: tuple[str, ...], base_url: str) -> str:
    """The one served model, else :class:`InvalidRequestError` saying what to pass."""
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise InvalidRequestError(
            f"{base_url}/v1/models lists no model (no healthy worker?): pass model=..."
        )
    names = ", ".join(repr(i) for i in ids)
    raise InvalidRequestError(
        f"{base_url} serves several models ({names}): pass model= to choose one"
    )


def is_model_not_found(exc: BaseException) -> bool:
    """Whether ``exc`` is smg's 404 ``model_not_found`` (body code or header)."""
    return (
        isinstance(exc, APIStatusError)
        and exc.status_code == 404
        and (exc.code == MODEL_NOT_FOUND or exc.headers.get("x-smg-error-code") == MODEL_NOT_FOUND)
    )


class ServedModels:
    """One client's cache of ``GET /v1/models`` (fresh in copies and pickles).

    ``generation`` counts reads, so that several callers refreshing after the
    same stale answer cause one read, not one each.
    """

    __slots__ = ("generation", "ids", "lock", "pending")

    def __init__(self) -> None:
        self.ids: tuple[str, ...] | None = None
        self.generation = 0
        #: serialises sync reads (threads)
        self.lock = threading.Lock()
        #: ``(loop token, event)`` of an async read in flight
        self.pending: tuple[object, object] | None = None

    def fresh(self, seen: int | None) -> tuple[str, ...] | None:
        """The cached ids, unless a refresh after generation ``seen`` is due."""
        if seen is not None and self.generation == seen:
            return None
        return self.ids

    def store(self, ids: tuple[str, ...]) -> None:
        # Only one served model is kept: with none or several, the call raises and
        # the next one reads again (a model removed since then is then seen).
        self.ids = ids if len(ids) == 1 else None
        self.generation += 1
