"""Request steering fields shared by the data-plane calls (no I/O).

Routing keys (the ``X-SMG-Routing-Key`` header the router's ``manual`` and
``consistent_hashing`` policies use), request ids (``rid``), ``priority`` and
``lora_path``: each checked before anything is sent.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

from .._errors import InvalidRequestError

__all__ = [
    "check_lora_path",
    "check_priority",
    "check_rid",
    "check_routing_key",
    "new_rid",
]

_MAX_KEY_LEN = 4096


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_routing_key(key: object, what: str = "routing_key") -> str:
    """A routing key: a non-empty string that fits in one header line."""
    if not isinstance(key, str) or not key:
        raise InvalidRequestError(f"{what} must be a non-empty str, got {key!r}")
    if len(key) > _MAX_KEY_LEN or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidRequestError(
            f"{what} must be at most {_MAX_KEY_LEN} characters without control characters"
        )
    try:
        key.encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidRequestError(
            f"{what} must be latin-1 text (it travels in an HTTP header), got {key!r}"
        ) from None
    return key


#: Request ids come from a generator of our own, seeded from ``os.urandom``: a user's
#: ``random.seed(0)`` (common in RL) must not make two processes send the same ids, and
#: a system call per id costs more than the rest of building a request. Reseeded in a
#: forked child, whose ids would otherwise repeat its parent's.
_ids = random.Random(os.urandom(32))
_next_bits = _ids.getrandbits
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_rid() -> str:
    """A fresh id: 128 random bits as 32 hex digits (the shape of sglang's own uuid4
    hex). Used for the body ``rid`` and the ``x-request-id`` header."""
    return "%032x" % _next_bits(128)  # noqa: UP031 (the fastest spelling)


def _check_rid_str(rid: object, what: str) -> str:
    if not isinstance(rid, str) or not rid or any(c in rid for c in "\r\n\0"):
        raise InvalidRequestError(f"{what} must be a non-empty str, got {rid!r}")
    return rid


def check_rid(rid: object, batch_size: int | None) -> str | list[str]:
    """A ``rid`` for one request (a str) or a batch (a str prefix, or one per item)."""
    if isinstance(rid, str) or batch_size is None:
        return _check_rid_str(rid, "rid")
    if not isinstance(rid, Sequence) or isinstance(rid, bytes):
        raise InvalidRequestError(f"rid must be a str or a list of str, got {rid!r}")
    rids = [_check_rid_str(r, f"rid[{i}]") for i, r in enumerate(rid)]
    if len(rids) != batch_size:
        raise InvalidRequestError(f"rid has {len(rids)} ids for a batch of {batch_size}")
    if len(set(rids)) != len(rids):
        raise InvalidRequestError("rid: the ids of a batch must be unique")
    return rids


def check_priority(priority: object) -> int | None:
    """``priority``: an int (larger is sooner under sglang's priority scheduling)."""
    if priority is None:
        return None
    if not _is_int(priority):
        raise InvalidRequestError(f"priority must be an int, got {priority!r}")
    assert isinstance(priority, int)
    return priority


def check_lora_path(lora_path: object, batch_size: int | None) -> str | list[str | None] | None:
    """``lora_path``: a loaded adapter's name, or (batch) one name or ``None`` per item."""
    if lora_path is None:
        return None
    if isinstance(lora_path, str):
        if not lora_path:
            raise InvalidRequestError("lora_path must be a non-empty adapter name")
        return lora_path
    if batch_size is None or not isinstance(lora_path, Sequence) or isinstance(lora_path, bytes):
        raise InvalidRequestError(
            f"lora_path must be an adapter name (str), or a list for a batch, got {lora_path!r}"
        )
    if len(lora_path) != batch_size:
        raise InvalidRequestError(
            f"lora_path has {len(lora_path)} entries for a batch of {batch_size}"
        )
    if not all(p is None or (isinstance(p, str) and p) for p in lora_path):
        raise InvalidRequestError("lora_path entries must be adapter names or None")
    return list(lora_path)
