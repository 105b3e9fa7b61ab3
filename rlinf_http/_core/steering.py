"""Request steering fields shared by the data-plane calls (no I/O).

Routing keys (the ``X-SMG-Routing-Key`` header the router's ``manual`` and
``consistent_hashing`` policies use), request ids (``rid``), ``priority`` and
``lora_path``: each checked before anything is sent.
"""

from __future__ import annotations

import collections
import os
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


#: Request ids (uuid4 hex, as sglang's own) cut from one ``os.urandom`` draw per
#: 256 ids: unpredictable like uuid4 (an id seen in a log must not tell the next
#: ones; ``/abort_request`` takes them), at a fraction of a system call each. A
#: forked child drops what its parent drew. ``deque`` pops are atomic: no lock.
_IDS_PER_DRAW = 256
_ids: collections.deque[str] = collections.deque()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.clear)


def _draw_ids() -> list[str]:
    raw = bytearray(os.urandom(16 * _IDS_PER_DRAW))
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # RFC 4122 variant
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, len(text), 32)]


def new_rid() -> str:
    """A fresh uuid4 hex (32 hex digits), for the body ``rid`` and ``x-request-id``."""
    while True:
        try:
            return _ids.popleft()
        except IndexError:
            _ids.extend(_draw_ids())


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
