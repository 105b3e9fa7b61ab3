"""Parsing and checking of ``rlinf-http bench`` option values (no I/O but ``os.access``).

Every function raises :class:`BenchOptionError` (an
:class:`~rlinf_http.InvalidRequestError`, so a ``ValueError``) naming the
option, before anything is started or sent. The CLI turns it into a usage error.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from .._errors import InvalidRequestError
from .metrics import GOODPUT_METRICS, PERCENTILE_METRICS

__all__ = [
    "BACKENDS",
    "BenchOptionError",
    "check_writable",
    "parse_backend",
    "parse_goodput",
    "parse_metric_percentiles",
    "parse_percentile_metrics",
    "parse_rate",
]

Endpoint = Literal["generate", "chat", "completions"]

#: bench_serving's ``--backend`` names -> our ``--endpoint``
BACKENDS: dict[str, Endpoint] = {
    "sglang": "generate",
    "sglang-native": "generate",
    "sglang-oai": "completions",
    "sglang-oai-chat": "chat",
}

_SLO = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^\s,]+)\s*$")


class BenchOptionError(InvalidRequestError):
    """A bad ``rlinf-http bench`` option value; ``option`` is its name (``--goodput``)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.detail = message


def parse_rate(value: str, option: str = "--request-rate") -> float:
    """``"inf"`` or a positive number (requests per second)."""
    v = value.strip().lower()
    if v in ("inf", "infinity"):
        return math.inf
    try:
        rate = float(v)
    except ValueError:
        raise BenchOptionError(
            option, f"request rate must be a number or 'inf', got {value!r}"
        ) from None
    if not rate > 0 or math.isnan(rate):
        raise BenchOptionError(
            option, f"request rate must be > 0 or 'inf', got {value!r}"
        ) from None
    return rate


def parse_goodput(values: Iterable[str]) -> dict[str, float]:
    """``["ttft:200", "tpot:20"]`` (or ``"ttft:200,tpot:20"``) -> ``{"ttft": 200.0, ...}`` (ms)."""
    out: dict[str, float] = {}
    for value in values:
        for part in value.replace(",", " ").split():
            m = _SLO.match(part)
            if m is None:
                raise BenchOptionError(
                    "--goodput", f"expected KEY:MS (e.g. ttft:200 tpot:20 e2el:5000), got {part!r}"
                )
            key, raw = m.group(1).lower(), m.group(2)
            if key not in GOODPUT_METRICS:
                raise BenchOptionError(
                    "--goodput", f"unknown metric {key!r}; use {', '.join(GOODPUT_METRICS)}"
                )
            try:
                limit = float(raw)
            except ValueError:
                raise BenchOptionError(
                    "--goodput", f"{key}: {raw!r} is not a number of ms"
                ) from None
            if not limit >= 0 or math.isinf(limit):
                raise BenchOptionError("--goodput", f"{key}: the SLO must be >= 0 ms, got {raw}")
            if key in out:
                raise BenchOptionError("--goodput", f"{key} is given twice")
            out[key] = limit
    return out


def parse_percentile_metrics(value: str) -> list[str]:
    """``"ttft,tpot,itl,e2el"`` -> the metric names, checked (vLLM's spelling)."""
    names = [x.strip().lower() for x in value.split(",") if x.strip()]
    if not names:
        raise BenchOptionError("--percentile-metrics", "give at least one metric")
    for name in names:
        if name not in PERCENTILE_METRICS:
            raise BenchOptionError(
                "--percentile-metrics",
                f"unknown metric {name!r}; use {','.join(PERCENTILE_METRICS)}",
            )
    return list(dict.fromkeys(names))


def parse_metric_percentiles(value: str) -> list[float]:
    """``"50,90,99"`` -> ``[50.0, 90.0, 99.0]`` (each in (0, 100])."""
    out: list[float] = []
    for part in (x.strip() for x in value.split(",")):
        if not part:
            continue
        try:
            p = float(part)
        except ValueError:
            raise BenchOptionError("--metric-percentiles", f"{part!r} is not a number") from None
        if not 0 < p <= 100:
            raise BenchOptionError("--metric-percentiles", f"{part} is not in (0, 100]")
        out.append(p)
    if not out:
        raise BenchOptionError("--metric-percentiles", "give at least one percentile")
    return sorted(set(out))


def parse_backend(backend: str) -> Endpoint:
    """bench_serving's ``--backend`` -> our endpoint (``sglang-oai`` = ``/v1/completions``)."""
    try:
        return BACKENDS[backend.strip().lower()]
    except KeyError:
        raise BenchOptionError(
            "--backend", f"{backend!r} is not supported; use one of {', '.join(BACKENDS)}"
        ) from None


def check_writable(path: str | os.PathLike[str], option: str = "--output-file") -> Path:
    """Fail now, not after the run, if results cannot be appended to ``path``."""
    p = Path(path)
    if p.is_dir():
        raise BenchOptionError(option, f"{p} is a directory")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise BenchOptionError(option, f"{p} is not writable")
        return p
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise BenchOptionError(option, f"the directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise BenchOptionError(option, f"cannot create files in {parent}")
    return p


def check_choice(option: str, value: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else a :class:`BenchOptionError`."""
    if value not in choices:
        raise BenchOptionError(option, f"{value!r} is not one of {', '.join(choices)}")
    return value
