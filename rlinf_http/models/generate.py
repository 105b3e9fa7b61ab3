"""Models of sglang's native ``POST /generate``: sampling parameters and responses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple, Union

from pydantic import ConfigDict, Field
from typing_extensions import TypedDict

from ._base import ResponseModel, WireModel
from .rl import (
    CachedTokensDetails,
    WeightVersionMix,
    WeightVersionSpan,
    decode_int32_base64,
    mix_of_spans,
)

__all__ = [
    "FinishAbort",
    "FinishLength",
    "FinishOther",
    "FinishReason",
    "FinishStop",
    "GenerateOutput",
    "Logprob",
    "MetaInfo",
    "SamplingParams",
    "SingleSampleParams",
]


class SamplingParams(WireModel):
    """sglang ``sampling_params`` (all optional; ``None`` fields are not sent).

    Unknown keys are rejected here, because sglang 0.5.23 rejects them with a 400
    and the router silently drops them. Pass a plain ``dict`` to send keys this
    model does not know about.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    max_new_tokens: int | None = Field(default=None, ge=0)
    min_new_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = None
    min_p: float | None = Field(default=None, ge=0, le=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = Field(default=None, gt=0, le=2)
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    stop_regex: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)
    json_schema: str | None = None
    regex: str | None = None
    ebnf: str | None = None
    structural_tag: str | None = None
    ignore_eos: bool | None = None
    skip_special_tokens: bool | None = None
    spaces_between_special_tokens: bool | None = None
    no_stop_trim: bool | None = None
    custom_params: dict[str, Any] | None = None
    stream_interval: int | None = Field(default=None, ge=1)
    logit_bias: dict[str, float] | None = None
    sampling_seed: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON object sent on the wire (unset and ``None`` fields omitted)."""
        return self.model_dump(exclude_none=True)


class SingleSampleParams(TypedDict, total=False):
    """The static type of a ``sampling_params`` dict that asks for one sample.

    Only for type checkers: a dict literal whose keys and value types fit here
    (``n`` absent or ``1``) makes ``generate(prompt, sampling_params={...})``
    typed as one :class:`GenerateOutput`. Any other mapping (``n=4``, a key this
    type does not list, a ``dict[str, Any]`` variable) types the result as
    ``GenerateOutput | list[GenerateOutput]``, because sglang answers ``n > 1``
    with a list. At run time it is a plain ``dict``.
    """

    max_new_tokens: int | None
    min_new_tokens: int | None
    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    frequency_penalty: float | None
    presence_penalty: float | None
    repetition_penalty: float | None
    stop: str | Sequence[str] | None
    stop_token_ids: Sequence[int] | None
    stop_regex: str | Sequence[str] | None
    n: Literal[1] | None
    json_schema: str | None
    regex: str | None
    ebnf: str | None
    structural_tag: str | None
    ignore_eos: bool | None
    skip_special_tokens: bool | None
    spaces_between_special_tokens: bool | None
    no_stop_trim: bool | None
    custom_params: Mapping[str, object] | None
    stream_interval: int | None
    logit_bias: Mapping[str, float] | None
    sampling_seed: int | None


class Logprob(NamedTuple):
    """One logprob entry: the wire's positional triple ``[logprob, token_id, text]``."""

    logprob: float | None
    token_id: int
    text: str | None = None


class FinishLength(WireModel):
    """Generation stopped at ``max_new_tokens``."""

    type: Literal["length"]
    length: int | None = None


class FinishStop(WireModel):
    """Generation stopped at a stop token or string (``matched``)."""

    type: Literal["stop"]
    matched: int | list[int] | str | None = None


class FinishAbort(WireModel):
    """The request was aborted (``/abort_request``, a scheduler error...)."""

    type: Literal["abort"]
    message: str | None = None
    status_code: int | None = None
    err_type: str | None = None


class FinishOther(WireModel):
    """A ``finish_reason`` type this client does not know; all fields are kept."""

    type: str


FinishReason = Union[FinishLength, FinishStop, FinishAbort, FinishOther]  # noqa: UP007


class MetaInfo(WireModel):
    """``meta_info`` of a ``/generate`` response."""

    id: str | None = None
    finish_reason: FinishReason | None = Field(default=None, union_mode="left_to_right")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None
    e2e_latency: float | None = None
    weight_version: str | None = None
    input_token_logprobs: list[Logprob] | None = None
    output_token_logprobs: list[Logprob] | None = None
    input_top_logprobs: list[list[Logprob] | None] | None = None
    output_top_logprobs: list[list[Logprob] | None] | None = None
    # RL fields of sglang 0.5.23 (present only when the server sends them)
    weight_versions: list[WeightVersionSpan] | None = None
    num_retractions: int | None = None
    input_token_ids_logprobs: list[list[Logprob] | None] | None = None
    output_token_ids_logprobs: list[list[Logprob] | None] | None = None
    cached_tokens_details: CachedTokensDetails | None = None
    routed_experts: str | None = None  # base64 of int32 expert ids (return_routed_experts)
    hidden_states: list[Any] | None = None  # return_hidden_states
    output_token_sampling_mask: list[list[int]] | None = None  # return_sampling_mask
    output_token_sampling_logprobs: list[Any] | None = None
    output_token_sampling_mask_length: int | None = None

    def weight_version_mix(self) -> WeightVersionMix:
        """Which weight versions produced which output tokens (see :class:`WeightVersionMix`)."""
        return mix_of_spans(self.weight_versions, self.weight_version)


class GenerateOutput(ResponseModel):
    """One ``/generate`` result (one per prompt and sample in a batch).

    ``meta_info`` is required (a 200 body without it is not a generation);
    ``text`` is absent on servers started with ``--skip-tokenizer-init`` and is
    then ``""``. In a stream, ``index`` is the position in the expanded batch.
    """

    # The request this result answers (set by the client, read by ``resume``); a
    # plain slot costs validation nothing, and pickling keeps it (below).
    __slots__ = ("_rollout",)

    text: str = ""
    output_ids: list[int] = Field(default_factory=list)
    meta_info: MetaInfo
    index: int | None = None

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        request = getattr(self, "_rollout", None)
        if request is not None:
            state = {**state, "_rollout": request}
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        request = state.get("_rollout")
        super().__setstate__({k: v for k, v in state.items() if k != "_rollout"})
        if request is not None:
            object.__setattr__(self, "_rollout", request)

    @property
    def finish_reason(self) -> FinishReason | None:
        """Shortcut for ``meta_info.finish_reason``."""
        return self.meta_info.finish_reason

    @property
    def rid(self) -> str | None:
        """The request id the server used (``meta_info.id``): what ``abort_request`` takes."""
        return self.meta_info.id

    def routed_expert_ids(self) -> list[int] | None:
        """``meta_info.routed_experts`` decoded: the int32 expert ids, flat (``None``: absent).

        sglang sends them as base64 of a ``(tokens, layers, top_k)`` int32 array
        covering positions ``routed_experts_start_len`` .. ``seqlen - 2``; reshape
        with the model's layer count and top-k.
        """
        raw = self.meta_info.routed_experts
        return None if raw is None else decode_int32_base64(raw)
