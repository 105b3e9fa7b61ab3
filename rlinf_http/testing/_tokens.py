"""Deterministic output tokens: token ``i`` has id ``1000 + i`` and text ``" tok{i}"``."""

from __future__ import annotations

import zlib

_OUT_BASE_ID = 1000
_PIECES: list[str] = []
_IDS: list[int] = []
_LPS = [-(j + 1) / 16 for j in range(16)]  # exact binary fractions


def _ensure_tokens(n: int) -> None:
    if n > len(_PIECES):
        start = len(_PIECES)
        _PIECES.extend(f" tok{i}" for i in range(start, n))
        _IDS.extend(_OUT_BASE_ID + (i % 30000) for i in range(start, n))


_ensure_tokens(256)


def _out_text(lo: int, hi: int) -> str:
    _ensure_tokens(hi)
    return "".join(_PIECES[lo:hi])


def _out_ids(lo: int, hi: int) -> list[int]:
    _ensure_tokens(hi)
    return _IDS[lo:hi]


def _word_id(word: str) -> int:
    return 100 + zlib.crc32(word.encode()) % 30000
