"""Models of ``POST /v1/tokenize`` and ``POST /v1/detokenize``."""

from __future__ import annotations

from ._base import ResponseModel

__all__ = ["DetokenizeResult", "TokenizeResult"]


class TokenizeResult(ResponseModel):
    """Token ids of a prompt (or one list per prompt when a list was sent).

    A server also reports ``max_model_len``; the router, which answers this call
    with its own tokenizer, reports ``char_count`` instead (kept as an extra).
    """

    tokens: list[int] | list[list[int]]
    count: int | list[int] = 0
    max_model_len: int | None = None


class DetokenizeResult(ResponseModel):
    """Text of token ids (a list of texts when a list of id lists was sent)."""

    text: str | list[str]
