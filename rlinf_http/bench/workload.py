"""Workloads: prompts with exact lengths, and the arrival schedule (no I/O but file reads).

Datasets:

- ``random``: input and output lengths drawn uniformly from
  ``[max(int(L * ratio), 1), L]`` (sglang's ``--random-range-ratio`` semantics),
  **but the default ratio is 1.0, so lengths are exact** (sglang's default 0.0
  averages L/2). For ``/generate`` prompts are token id lists (``input_ids``), so
  the server sees exactly the drawn input length; chat prompts are text of that
  many words (the server's token count is what the metrics use).
- ``sharegpt``: the first human turn of each conversation of a local ShareGPT
  JSON file (nothing is downloaded); the output length is the word count of the
  first reply unless ``output_len`` overrides it.

Every request forces its output length: ``max_new_tokens`` + ``ignore_eos`` on
``/generate``, ``max_tokens`` + ``ignore_eos`` on chat.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "WorkItem",
    "arrival_schedule",
    "build_chat_kwargs",
    "build_completion_kwargs",
    "build_generate_kwargs",
    "draw_output_lengths",
    "merge_body",
    "random_workload",
    "sharegpt_workload",
    "warmup_items",
    "words",
]

Endpoint = Literal["generate", "chat", "completions"]
OutputLenDistribution = Literal["lognormal", "uniform", "fixed"]

#: token ids of random prompts are drawn from this range (valid for any real vocabulary)
TOKEN_ID_RANGE = (1000, 30000)

_WORDS = (
    "time person year way day thing man world life hand part child eye woman place work "
    "week case point government company number group problem fact river light stone "
    "music paper garden window letter bridge market forest island engine signal"
).split()


@dataclass(slots=True)
class WorkItem:
    """One request of the workload."""

    index: int
    input_len: int
    output_len: int
    input_ids: list[int] | None = None
    text: str | None = None
    #: the RL group (prompt) of this sample; -1 outside ``rl-groups``
    group: int = -1


def words(ids: list[int]) -> str:
    """Text of one word per token id (for endpoints that take text)."""
    return " ".join(_WORDS[i % len(_WORDS)] for i in ids)


def _lengths(rng: np.random.Generator, length: int, ratio: float, n: int) -> list[int]:
    if length < 1:
        raise ValueError(f"lengths must be >= 1, got {length}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"--random-range-ratio must be in [0, 1], got {ratio}")
    low = max(int(length * ratio), 1)
    return [int(x) for x in rng.integers(low, length + 1, size=n)]


def draw_output_lengths(
    rng: np.random.Generator,
    kind: OutputLenDistribution,
    mean: int,
    n: int,
    *,
    sigma: float = 1.0,
    cap: int | None = None,
) -> list[int]:
    """``n`` output lengths with mean ~``mean``.

    ``fixed``: all ``mean``. ``uniform``: integers uniform in ``[1, 2*mean - 1]``.
    ``lognormal``: ``exp(N(mu, sigma))`` with ``mu`` chosen so the mean is
    ``mean``, rounded, clipped to ``[1, cap]`` (``cap`` defaults to ``10*mean``).
    """
    if mean < 1:
        raise ValueError(f"the mean output length must be >= 1, got {mean}")
    if kind == "fixed":
        return [mean] * n
    if kind == "uniform":
        return [int(x) for x in rng.integers(1, 2 * mean, size=n)]
    if kind == "lognormal":
        if not sigma > 0:
            raise ValueError(f"--output-len-sigma must be > 0, got {sigma}")
        hi = cap if cap is not None else 10 * mean
        mu = math.log(mean) - sigma * sigma / 2.0
        raw = rng.lognormal(mu, sigma, size=n)
        return [int(min(max(round(x), 1), hi)) for x in raw]
    raise ValueError(f"unknown output length distribution {kind!r}")


def random_workload(
    num_prompts: int,
    input_len: int,
    output_len: int,
    range_ratio: float = 1.0,
    seed: int = 42,
    *,
    as_text: bool = False,
    output_len_distribution: OutputLenDistribution | None = None,
    output_len_sigma: float = 1.0,
) -> list[WorkItem]:
    """``num_prompts`` seeded random requests (token ids, or text when ``as_text``).

    Output lengths follow ``range_ratio`` unless ``output_len_distribution`` is
    given (then :func:`draw_output_lengths` with mean ``output_len``).
    """
    rng = np.random.default_rng(seed)
    ins = _lengths(rng, input_len, range_ratio, num_prompts)
    if output_len_distribution is None:
        outs = _lengths(rng, output_len, range_ratio, num_prompts)
    else:
        outs = draw_output_lengths(
            rng, output_len_distribution, output_len, num_prompts, sigma=output_len_sigma
        )
    items: list[WorkItem] = []
    lo, hi = TOKEN_ID_RANGE
    for i, (n_in, n_out) in enumerate(zip(ins, outs, strict=True)):
        if as_text:
            picks = rng.integers(0, len(_WORDS), size=n_in)
            items.append(WorkItem(i, n_in, n_out, text=" ".join(_WORDS[int(j)] for j in picks)))
        else:
            ids = [int(x) for x in rng.integers(lo, hi, size=n_in)]
            items.append(WorkItem(i, n_in, n_out, input_ids=ids))
    return items


def _turn_text(turn: Any) -> str:
    if isinstance(turn, dict):
        value = turn.get("value", turn.get("content", ""))
        return value if isinstance(value, str) else ""
    return ""


def sharegpt_workload(
    path: str | Path,
    num_prompts: int,
    seed: int = 42,
    output_len: int | None = None,
) -> list[WorkItem]:
    """Prompts from a local ShareGPT JSON file (a list of ``{"conversations": [...]}``).

    Conversations with fewer than two turns or an empty prompt are skipped; the
    rest are shuffled with ``seed`` and cycled if ``num_prompts`` is larger.
    Lengths are word counts (no tokenizer is loaded); the metrics use the
    server-reported token counts.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ShareGPT file not found: {p} (nothing is downloaded)")
    with p.open("rb") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{p}: expected a JSON list of conversations")
    pairs: list[tuple[str, int]] = []
    for row in data:
        conv = row.get("conversations", row.get("conversation")) if isinstance(row, dict) else None
        if not isinstance(conv, list) or len(conv) < 2:
            continue
        prompt, reply = _turn_text(conv[0]), _turn_text(conv[1])
        if not prompt.strip():
            continue
        out = output_len if output_len is not None else max(1, len(reply.split()))
        pairs.append((prompt, out))
    if not pairs:
        raise ValueError(f"{p}: no usable conversations (need >= 2 turns)")
    order = np.random.default_rng(seed).permutation(len(pairs))
    items = []
    for i in range(num_prompts):
        prompt, out = pairs[int(order[i % len(pairs)])]
        items.append(WorkItem(i, max(1, len(prompt.split())), out, text=prompt))
    return items


def warmup_items(items: list[WorkItem], count: int, max_output: int = 32) -> list[WorkItem]:
    """``count`` copies of the first request with at most ``max_output`` output tokens."""
    if count <= 0 or not items:
        return []
    first = items[0]
    return [
        WorkItem(
            -1 - i,
            first.input_len,
            min(first.output_len, max_output),
            input_ids=first.input_ids,
            text=first.text,
            group=-1,
        )
        for i in range(count)
    ]


def arrival_schedule(n: int, rate: float, burstiness: float = 1.0, seed: int = 42) -> list[float]:
    """Absolute send times (seconds from the start) of ``n`` requests.

    ``rate`` = ``inf`` sends everything at t=0. Otherwise inter-arrival gaps are
    gamma-distributed with shape ``burstiness`` and mean ``1/rate`` (1.0 is a
    Poisson process, < 1 burstier, > 1 more regular, ``inf`` evenly spaced). The
    first request goes at 0 and the times are rescaled so the last goes at exactly
    ``(n - 1) / rate``; dispatch sleeps until each absolute time, so lateness never
    accumulates into drift.
    """
    if n <= 0:
        return []
    if math.isinf(rate):
        return [0.0] * n
    if rate <= 0:
        raise ValueError(f"--request-rate must be > 0 or inf, got {rate}")
    if burstiness <= 0:
        raise ValueError(f"--burstiness must be > 0, got {burstiness}")
    if n == 1:
        return [0.0]
    if math.isinf(burstiness):
        gaps = np.full(n - 1, 1.0 / rate)
    else:
        rng = np.random.default_rng(seed + 1)
        gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=n - 1)
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    target = (n - 1) / rate
    if times[-1] > 0:
        times *= target / times[-1]
    return [float(t) for t in times]


def merge_body(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``; nested dicts (``sampling_params``...) merge."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_body(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def build_generate_kwargs(
    item: WorkItem, *, stream: bool, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``InferenceHTTPClient.async_generate`` for one item."""
    body: dict[str, Any] = {
        "sampling_params": {
            "max_new_tokens": item.output_len,
            "ignore_eos": True,
            "temperature": 0.0,
        },
    }
    if item.input_ids is not None:
        body["input_ids"] = item.input_ids
    else:
        body["prompt"] = item.text or ""
    if extra:
        extra = dict(extra)
        if "text" in extra:  # the wire name of the prompt
            extra["prompt"] = extra.pop("text")
        body = merge_body(body, extra)
    body["stream"] = stream
    return body


def build_chat_kwargs(
    item: WorkItem, *, model: str, stream: bool, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``InferenceHTTPClient.async_chat_completion`` for one item."""
    text = item.text
    if text is None:  # token ids cannot be sent to chat: one word per id
        text = words(item.input_ids or [])
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": text}],
        "model": model,
        "max_tokens": item.output_len,
        "ignore_eos": True,
        "temperature": 0.0,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if extra:
        body = merge_body(body, extra)
    body["stream"] = stream
    return body


def build_completion_kwargs(
    item: WorkItem, *, model: str, stream: bool, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/completions`` for one item.

    The prompt is always text (one word per token id): sglang-router accepts only
    a string or a list of strings as ``prompt`` there.
    """
    text = item.text if item.text is not None else words(item.input_ids or [])
    body: dict[str, Any] = {
        "model": model,
        "prompt": text,
        "max_tokens": item.output_len,
        "ignore_eos": True,
        "temperature": 0.0,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if extra:
        body = merge_body(body, extra)
    body["stream"] = stream
    return body
