"""The RL fields of ``/generate`` in the fake server (sglang 0.5.23 shapes).

Checked like sglang's ``TokenizerManager`` (same messages), then answered in
``meta_info`` with deterministic values:

- ``return_routed_experts``: ``routed_experts``, base64 of int32 ids shaped
  ``(prompt + output - 1 - routed_experts_start_len, ROUTED_LAYERS, ROUTED_TOP_K)``
  (on the final answer);
- ``return_hidden_states``: ``hidden_states``, one ``HIDDEN_SIZE`` vector per
  output token (``"last"``: the last one only; on the final answer);
- ``return_sampling_mask``: ``output_token_sampling_mask`` (the allowed token
  ids per output token), ``output_token_sampling_logprobs`` (``selected``: one
  float per token; ``support``: one per allowed id) and
  ``output_token_sampling_mask_length``;
- ``token_ids_logprob`` with ``return_logprob``: ``output_token_ids_logprobs``;
- always ``num_retractions`` (how often a ``retract`` pause retracted it).

``return_entropy`` is accepted and, as in sglang 0.5.23, answered with nothing.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from ._asgi import _err

#: The fake model's MoE shape for routed experts.
ROUTED_LAYERS = 2
ROUTED_TOP_K = 2
NUM_EXPERTS = 8
#: The fake model's hidden size for hidden states.
HIDDEN_SIZE = 4
#: The sampling support of every output token: its own id and the next two.
SUPPORT = 3


def rl_options(body: dict[str, Any], num_dp_ranks: int = 1) -> dict[str, Any] | None:
    """The RL options of a ``/generate`` body, checked (``None``: none asked)."""
    opts: dict[str, Any] = {}
    if body.get("return_routed_experts"):
        start = body.get("routed_experts_start_len", 0)
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise _err("routed_experts_start_len must be a non-negative integer")
        opts["routed_experts"] = start
    hidden = body.get("return_hidden_states", False)
    if hidden not in (False, True, "last", None):
        raise _err("return_hidden_states must be a bool or 'last'")
    if hidden:
        opts["hidden_states"] = hidden
    mode = body.get("sampling_logprobs_mode")
    if body.get("return_sampling_mask"):
        if mode not in (None, "selected", "support"):
            raise _err("sampling_logprobs_mode must be 'selected' or 'support'")
        opts["sampling_mask"] = mode or "selected"
    elif mode is not None:
        raise _err("sampling_logprobs_mode can only be set when return_sampling_mask=true.")
    ids = body.get("token_ids_logprob")
    if ids is not None and body.get("return_logprob"):
        if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
            raise _err("token_ids_logprob must be a list of token ids")
        opts["token_ids_logprob"] = ids
    rank = body.get("routed_dp_rank", body.get("data_parallel_rank"))
    if rank is not None and not (num_dp_ranks <= 1 and rank == 0):
        if not isinstance(rank, int) or rank < 0 or rank >= num_dp_ranks:
            raise _err(f"routed_dp_rank={rank} out of range [0, {num_dp_ranks})")
    return opts or None


def _expert(position: int, layer: int, k: int) -> int:
    return (position * 3 + layer * 5 + k) % NUM_EXPERTS


def add_rl_meta(
    meta: dict[str, Any],
    opts: dict[str, Any] | None,
    prompt_len: int,
    output_ids: list[int],
    lo: int,
    hi: int,
    final: bool,
    retractions: int,
) -> None:
    """Add the asked RL fields for output tokens ``lo..hi-1`` (``final``: last answer)."""
    meta["num_retractions"] = retractions
    if opts is None:
        return
    if "sampling_mask" in opts:
        support = opts["sampling_mask"] == "support"
        masks = [[output_ids[i] + j for j in range(SUPPORT)] for i in range(lo, hi)]
        meta["output_token_sampling_mask"] = masks
        meta["output_token_sampling_logprobs"] = [
            [-0.5 - j * 0.5 for j in range(SUPPORT)] if support else -0.5 for _ in masks
        ]
        meta["output_token_sampling_mask_length"] = hi
    if "token_ids_logprob" in opts:
        wanted = opts["token_ids_logprob"]
        meta["output_token_ids_logprobs"] = [
            [[-1.0 - j * 0.25, t, None] for j, t in enumerate(wanted)] for _ in range(lo, hi)
        ]
    if not final:
        return
    if "routed_experts" in opts:
        start = min(opts["routed_experts"], prompt_len)
        positions = range(start, max(prompt_len + hi - 1, start))
        ids = [
            _expert(p, layer, k)
            for p in positions
            for layer in range(ROUTED_LAYERS)
            for k in range(ROUTED_TOP_K)
        ]
        meta["routed_experts"] = base64.b64encode(struct.pack(f"<{len(ids)}i", *ids)).decode()
    if "hidden_states" in opts:
        vectors = [
            [round(0.01 * (i + 1) * (d + 1), 6) for d in range(HIDDEN_SIZE)] for i in range(hi)
        ]
        meta["hidden_states"] = vectors[-1:] if opts["hidden_states"] == "last" else vectors
