"""Models of sglang 0.5.23's reward and ranking endpoints.

- ``/classify`` (native; the body of ``/encode``) answers ``{"embedding",
  "meta_info"}`` per input, a list for a batch: for a reward model the
  "embedding" is the score (one value per label).
- ``/v1/score`` answers a :class:`ScoreResult` (``scores``: one row of label
  scores per item; nested one level deeper with ``score_extraction_token``).
- ``/v1/rerank`` answers a JSON list of :class:`RerankResult`, best first.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ._base import ResponseModel, WireModel
from .chat import Usage

__all__ = ["ClassifyOutput", "RerankResult", "ScoreResult"]


class ClassifyOutput(ResponseModel):
    """One ``/classify`` result: ``embedding`` holds the reward (or class) scores."""

    embedding: list[float] = Field(default_factory=list)
    meta_info: dict[str, Any] = Field(default_factory=dict)

    @property
    def score(self) -> float | None:
        """The first score: a scalar reward model's reward (``None`` when empty)."""
        return self.embedding[0] if self.embedding else None


class ScoreResult(ResponseModel):
    """``/v1/score``: ``scores[i]`` are the label scores of item ``i``.

    With ``label_token_ids``, each row has one probability (or logit) per label
    token; ``token_logprobs`` and ``pooled_hidden_states`` appear when asked.
    """

    scores: list[Any] = Field(default_factory=list)
    pooled_hidden_states: list[Any] | None = None
    token_logprobs: list[list[float]] | None = None
    model: str = ""
    usage: Usage | None = None
    object: str = "scoring"


class RerankResult(WireModel):
    """One ``/v1/rerank`` entry: document ``index`` of the request scored ``score``.

    ``document`` is present when ``return_documents`` was true.
    """

    score: float
    index: int
    document: str | None = None
    meta_info: dict[str, Any] | None = None
