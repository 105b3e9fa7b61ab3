"""The RL fields of sglang 0.5.23's ``/generate`` as typed, checked arguments (no I/O).

:func:`generate_rl_fields` turns keyword arguments into the top-level body
fields (only those given), checked before anything is sent;
``build_generate(..., rl_fields=...)`` merges them. What they ask for comes back
in ``meta_info`` (typed on :class:`~rlinf_http.MetaInfo`):

=============================  =====================================================
argument                       answer
=============================  =====================================================
``return_routed_experts``      ``meta_info.routed_experts``: base64 int32 expert ids
``routed_experts_start_len``   first position of those ids (0 = whole sequence)
``return_hidden_states``       ``meta_info.hidden_states`` (``"last"``: last only)
``return_sampling_mask``       ``output_token_sampling_mask`` / ``..._logprobs``
``sampling_logprobs_mode``     ``"selected"`` (the sampled token) or ``"support"``
``return_entropy``             accepted; sglang 0.5.23 sends no entropy back
=============================  =====================================================

Scheduling and cache fields: ``scheduler_routing_key`` is sent as the body
``routing_key`` (sglang's ``--schedule-policy routing-key`` groups running
requests by it inside one server); it is *not* the gateway's
``X-SMG-Routing-Key`` header, which the client's ``routing_key=`` sets.
``routed_dp_rank`` pins a DP rank; ``session_params`` continues a session
(``/open_session``); ``cache_salt`` isolates the prefix cache;
``max_thinking_tokens`` needs ``--enable-strict-thinking``;
``custom_logit_processor`` is ``CustomLogitProcessor.to_str()`` (or the class).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .._errors import InvalidRequestError
from ..models import GenerateOutput, MetaInfo, WeightVersionMix
from ..models.rl import VersionedResponse

__all__ = [
    "RL_FIELD_NAMES",
    "SESSION_PARAM_TYPES",
    "NO_RL_ARGUMENTS",
    "no_rl_arguments",
    "HiddenStatesMode",
    "SamplingLogprobsMode",
    "RL_KEYWORDS",
    "batch_size_of",
    "generate_rl_fields",
    "rl_fields_from",
    "weight_version_mix",
]

HiddenStatesMode = bool | Literal["last"]
SamplingLogprobsMode = Literal["selected", "support"]

#: The wire names :func:`generate_rl_fields` may produce.
RL_FIELD_NAMES: frozenset[str] = frozenset(
    {
        "return_routed_experts",
        "routed_experts_start_len",
        "return_entropy",
        "return_hidden_states",
        "return_sampling_mask",
        "sampling_logprobs_mode",
        "routing_key",
        "routed_dp_rank",
        "session_params",
        "cache_salt",
        "max_thinking_tokens",
        "custom_logit_processor",
    }
)

#: sglang 0.5.23 ``SessionParams``: field -> accepted types (each may be None).
SESSION_PARAM_TYPES: Mapping[str, tuple[type, ...]] = {
    "id": (str,),
    "rid": (str,),
    "offset": (int,),
    "replace": (bool,),
    "drop_previous_output": (bool,),
}


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequestError(f"{what} must be True or False, got {value!r}")
    return value


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequestError(f"{what} must be an int >= 0, got {value!r}")
    return value


def _per_item(
    value: object, what: str, batch_size: int | None, check: Any, *, allow_none_items: bool
) -> Any:
    """One value, or (for a batch) one per item."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if batch_size is None:
            raise InvalidRequestError(f"{what}: a list is for a batch (one entry per prompt)")
        if len(value) != batch_size:
            raise InvalidRequestError(
                f"{what} has {len(value)} entries for a batch of {batch_size}"
            )
        return [
            None if (item is None and allow_none_items) else check(item, f"{what}[{i}]")
            for i, item in enumerate(value)
        ]
    return check(value, what)


def _salt(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{what} must be a non-empty str, got {value!r}")
    return value


def _processor(value: object, what: str) -> str:
    to_str = getattr(value, "to_str", None)
    if not isinstance(value, str) and callable(to_str):
        value = to_str()
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"{what} must be CustomLogitProcessor.to_str() (a str) or the processor class, "
            f"got {type(value).__name__}"
        )
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or "callable" not in parsed:
        raise InvalidRequestError(
            f"{what} must be the JSON text of CustomLogitProcessor.to_str() "
            '({"callable": ...}), got ' + repr(value[:60])
        )
    return value


def _session(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"session_params must be a dict, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        kinds = SESSION_PARAM_TYPES.get(key) if isinstance(key, str) else None
        if kinds is None:
            raise InvalidRequestError(
                f"session_params has no field {key!r} (sglang 0.5.23 knows "
                f"{', '.join(SESSION_PARAM_TYPES)})"
            )
        wrong_bool = isinstance(item, bool) and bool not in kinds
        if item is not None and (wrong_bool or not isinstance(item, kinds)):
            raise InvalidRequestError(
                f"session_params[{key!r}] must be a {kinds[0].__name__} or None, got {item!r}"
            )
        out[key] = item
    return out


#: The RL keywords of the generate calls (the client's names; ``return_entropy`` is not
#: one: sglang 0.5.23 accepts it but sends nothing back).
RL_KEYWORDS: tuple[str, ...] = (
    "return_routed_experts",
    "routed_experts_start_len",
    "return_hidden_states",
    "return_sampling_mask",
    "sampling_logprobs_mode",
    "scheduler_routing_key",
    "routed_dp_rank",
    "session_params",
    "cache_salt",
    "max_thinking_tokens",
    "custom_logit_processor",
)


_PICK_RL = operator.itemgetter(*RL_KEYWORDS)
#: The values of :data:`RL_KEYWORDS` when none is given.
NO_RL_ARGUMENTS: tuple[None, ...] = (None,) * len(RL_KEYWORDS)


def no_rl_arguments(values: tuple[Any, ...]) -> bool:
    """Whether every one of ``values`` (of :data:`RL_KEYWORDS`, in order) is ``None``.

    By identity: ``==`` would ask a numpy array given for a keyword for its truth
    value (numpy refuses), and anything equal to ``None`` would pass unchecked.
    """
    return all(map(operator.is_, values, NO_RL_ARGUMENTS))


def rl_fields_from(arguments: Mapping[str, Any], batch: bool = False) -> dict[str, Any]:
    """:func:`generate_rl_fields` of the :data:`RL_KEYWORDS` in ``arguments``.

    The generate calls pass their ``locals()``: every one of them takes the same
    RL keywords, and this is the one place that turns them into body fields.
    ``batch``: the call takes a batch (``arguments["prompt"]`` /
    ``["input_ids"]``), whose size per-prompt fields are checked against.
    """
    values = _PICK_RL(arguments)
    if no_rl_arguments(values):
        return {}  # the common case, on every request: no RL field asked for
    size = batch_size_of(arguments["prompt"], arguments["input_ids"]) if batch else None
    return generate_rl_fields(batch_size=size, **dict(zip(RL_KEYWORDS, values, strict=True)))


def batch_size_of(prompt: object, input_ids: object) -> int | None:
    """The number of prompts of a batch ``/generate`` (``None``: one prompt).

    A list of str is a batch of texts; a list of lists a batch of token ids.
    Anything else (one prompt, or input ``build_generate`` will refuse) is ``None``.
    """
    if isinstance(prompt, Sequence) and not isinstance(prompt, (str, bytes)):
        return len(prompt)
    if (
        isinstance(input_ids, Sequence)
        and not isinstance(input_ids, (str, bytes))
        and input_ids
        and all(isinstance(r, Sequence) and not isinstance(r, (str, bytes)) for r in input_ids)
    ):
        return len(input_ids)
    return None


def generate_rl_fields(
    *,
    batch_size: int | None = None,
    return_routed_experts: bool | None = None,
    routed_experts_start_len: int | None = None,
    return_entropy: bool | None = None,
    return_hidden_states: HiddenStatesMode | None = None,
    return_sampling_mask: bool | None = None,
    sampling_logprobs_mode: SamplingLogprobsMode | None = None,
    scheduler_routing_key: str | None = None,
    routed_dp_rank: int | None = None,
    session_params: Mapping[str, Any] | None = None,
    cache_salt: str | Sequence[str] | None = None,
    max_thinking_tokens: int | None = None,
    custom_logit_processor: Any = None,
) -> dict[str, Any]:
    """The checked ``/generate`` body fields for the RL arguments given (``None``: not sent).

    ``batch_size`` is the number of prompts of a batch request (``None``: one
    prompt); ``cache_salt`` and ``custom_logit_processor`` may then be lists
    with one entry per prompt. Raises :class:`InvalidRequestError` for a bad
    value, and for combinations sglang refuses or ignores:
    ``sampling_logprobs_mode`` without ``return_sampling_mask=True``, and
    ``routed_experts_start_len`` without ``return_routed_experts=True``.
    """
    if batch_size is not None:
        _count(batch_size, "batch_size")
    out: dict[str, Any] = {}
    for name, flag in (
        ("return_routed_experts", return_routed_experts),
        ("return_entropy", return_entropy),
        ("return_sampling_mask", return_sampling_mask),
    ):
        if flag is not None:
            out[name] = _flag(flag, name)
    if routed_experts_start_len is not None:
        if out.get("return_routed_experts") is not True:
            raise InvalidRequestError(
                "routed_experts_start_len needs return_routed_experts=True (else it is ignored)"
            )
        out["routed_experts_start_len"] = _count(
            routed_experts_start_len, "routed_experts_start_len"
        )
    if return_hidden_states is not None:
        if not isinstance(return_hidden_states, bool) and return_hidden_states != "last":
            raise InvalidRequestError(
                f"return_hidden_states must be True, False or 'last', got {return_hidden_states!r}"
            )
        out["return_hidden_states"] = return_hidden_states
    if sampling_logprobs_mode is not None:
        if sampling_logprobs_mode not in ("selected", "support"):
            raise InvalidRequestError(
                "sampling_logprobs_mode must be 'selected' or 'support', "
                f"got {sampling_logprobs_mode!r}"
            )
        if out.get("return_sampling_mask") is not True:
            raise InvalidRequestError(
                "sampling_logprobs_mode needs return_sampling_mask=True (sglang refuses it alone)"
            )
        out["sampling_logprobs_mode"] = sampling_logprobs_mode
    if scheduler_routing_key is not None:
        out["routing_key"] = _salt(scheduler_routing_key, "scheduler_routing_key")
    if routed_dp_rank is not None:
        out["routed_dp_rank"] = _count(routed_dp_rank, "routed_dp_rank")
    if session_params is not None:
        out["session_params"] = _session(session_params)
    if cache_salt is not None:
        out["cache_salt"] = _per_item(
            cache_salt, "cache_salt", batch_size, _salt, allow_none_items=False
        )
    if max_thinking_tokens is not None:
        out["max_thinking_tokens"] = _count(max_thinking_tokens, "max_thinking_tokens")
    if custom_logit_processor is not None:
        out["custom_logit_processor"] = _per_item(
            custom_logit_processor,
            "custom_logit_processor",
            batch_size,
            _processor,
            allow_none_items=True,
        )
    return out


def weight_version_mix(
    result: GenerateOutput | MetaInfo | VersionedResponse,
) -> WeightVersionMix:
    """Whether ``result`` mixed weight versions, and which output tokens came from which.

    ``result`` is a ``/generate`` result (or its ``meta_info``, or a stream
    chunk), a resumed one (its pieces' spans are merged), or a chat / text
    completion (its ``metadata``, which describes the first choice). It reads
    ``weight_versions`` (sglang 0.5.23); without it (older servers) the mix
    names ``weight_version`` only and is not mixed.
    """
    if isinstance(result, VersionedResponse):
        return result.weight_version_mix()
    meta = result.meta_info if isinstance(result, GenerateOutput) else result
    return meta.weight_version_mix()
