"""Verify a weight sync from read-back parameter slices (pure, no I/O).

After a trainer pushes weights, each worker's ``/get_weights_by_name`` slices
(:class:`~rlinf_http.ParameterSlice`) are compared with the trainer's values
or, without them, with each other. :func:`compare_weight_slices` returns one
verdict per worker (:class:`~rlinf_http.WeightSyncReport`): ``match``,
``mismatch`` (with the largest absolute difference and the first differing
flat index per parameter) or ``error`` (the slice could not be read).

sglang returns ``param.float().tolist()[:truncate_size]``: the first
``truncate_size`` values of a 1-D parameter, the first ``truncate_size`` rows
of a 2-D one. Expected values longer than that are cut the same way
(:func:`expected_slice`), so the trainer may pass the whole tensor (anything
with ``.tolist()``) or nested lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import InvalidRequestError
from ..models import ParameterCheck, ParameterSlice, WeightSyncReport, WorkerSyncCheck
from ..models.weights import SyncStatus

__all__ = ["compare_weight_slices", "compare_values", "expected_slice"]

#: A worker's read-back: parameter name -> its slice (or the error reading it),
#: or one error for the whole worker.
WorkerSlices = Mapping[str, "ParameterSlice | Sequence[Any] | BaseException"] | BaseException


def _as_list(values: Any) -> list[Any]:
    tolist = getattr(values, "tolist", None)
    if callable(tolist) and not isinstance(values, list):
        values = tolist()
    if isinstance(values, tuple):
        values = list(values)
    if not isinstance(values, list):
        raise InvalidRequestError(
            "parameter values must be a (nested) list or have .tolist(), got "
            + type(values).__name__
        )
    return values


def expected_slice(values: Any, truncate_size: int) -> list[Any]:
    """The trainer's ``values`` cut as sglang cuts a parameter (first ``truncate_size`` rows)."""
    return _as_list(values)[:truncate_size]


def _flatten(value: Any, out: list[float]) -> None:
    if isinstance(value, (list, tuple)):
        for item in value:
            _flatten(item, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out.append(float(value))
    else:
        raise ValueError(f"not a number: {value!r}")


def _shape(value: Any) -> tuple[int, ...] | None:
    if not isinstance(value, (list, tuple)):
        return ()
    if not value:
        return (0,)
    inner = {_shape(item) for item in value}
    if len(inner) != 1:
        return None
    (sub,) = inner
    return None if sub is None else (len(value), *sub)


def compare_values(
    name: str, actual: Any, reference: Any, *, atol: float = 1e-6, rtol: float = 0.0
) -> ParameterCheck:
    """One parameter: ``match`` when ``|a - r| <= atol + rtol * |r|`` everywhere.

    NaN equals NaN (same position); a different shape or length is a
    ``mismatch`` with a ``reason`` and no difference.
    """
    try:
        a_list, r_list = _as_list(actual), _as_list(reference)
        a_flat: list[float] = []
        r_flat: list[float] = []
        _flatten(a_list, a_flat)
        _flatten(r_list, r_flat)
    except (ValueError, InvalidRequestError) as exc:
        return ParameterCheck(name=name, status="error", reason=str(exc))
    a_shape, r_shape = _shape(a_list), _shape(r_list)
    if a_shape != r_shape or len(a_flat) != len(r_flat):
        return ParameterCheck(
            name=name,
            status="mismatch",
            num_values=len(a_flat),
            reason=f"shape {a_shape or len(a_flat)} differs from the reference's "
            f"{r_shape or len(r_flat)}",
        )
    worst = 0.0
    first: int | None = None
    for i, (a, r) in enumerate(zip(a_flat, r_flat, strict=True)):
        if math.isnan(a) or math.isnan(r):
            if math.isnan(a) and math.isnan(r):
                continue
            diff = math.inf
        else:
            diff = abs(a - r)
        if diff > worst:
            worst = diff
        if first is None and not diff <= atol + rtol * abs(r):
            first = i
    return ParameterCheck(
        name=name,
        status="match" if first is None else "mismatch",
        max_abs_diff=worst,
        first_mismatch_index=first,
        num_values=len(a_flat),
    )


def _values(item: ParameterSlice | Sequence[Any]) -> Any:
    return item.values if isinstance(item, ParameterSlice) else item


def _tolerance(value: object, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidRequestError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _check_worker(
    url: str,
    got: WorkerSlices,
    reference: Mapping[str, Any],
    names: Sequence[str],
    atol: float,
    rtol: float,
) -> WorkerSyncCheck:
    if isinstance(got, BaseException):
        return WorkerSyncCheck(url=url, status="error", error=_error_text(got))
    checks: list[ParameterCheck] = []
    for name in names:
        item = got.get(name)
        if item is None:
            checks.append(ParameterCheck(name=name, status="error", reason="not read"))
        elif isinstance(item, BaseException):
            checks.append(ParameterCheck(name=name, status="error", reason=_error_text(item)))
        elif name not in reference:
            checks.append(ParameterCheck(name=name, status="error", reason="no reference value"))
        else:
            ref = reference[name]
            if isinstance(item, ParameterSlice):
                ref = expected_slice(ref, item.truncate_size)
            checks.append(compare_values(name, _values(item), ref, atol=atol, rtol=rtol))
    statuses = {c.status for c in checks}
    status: SyncStatus = (
        "error" if "error" in statuses else "mismatch" if "mismatch" in statuses else "match"
    )
    errors = [f"{c.name}: {c.reason}" for c in checks if c.status == "error"]
    return WorkerSyncCheck(
        url=url, status=status, parameters=checks, error="; ".join(errors) or None
    )


def compare_weight_slices(
    slices: Mapping[str, WorkerSlices],
    expected: Mapping[str, Any] | None = None,
    *,
    atol: float = 1e-6,
    rtol: float = 0.0,
) -> WeightSyncReport:
    """Per-worker verdicts: do the workers hold the trainer's weights (or the same ones)?

    ``slices`` maps each worker URL to ``{parameter name: ParameterSlice | nested
    list | exception}``, or to one exception (the worker could not be asked).
    With ``expected`` (parameter name -> the trainer's values: nested lists, or
    a tensor / array with ``.tolist()``), each worker is compared with it;
    without, with the worker that most others agree with (ties: the first).
    The parameters checked are ``expected``'s names, else every name read.

    ``atol`` / ``rtol``: a value matches when ``|a - r| <= atol + rtol * |r|``.
    Weights pushed in bf16 come back exactly (as float32); for a trainer that
    compares fp32 master weights with bf16 served ones use ``rtol=2**-8``.
    """
    tol_a, tol_r = _tolerance(atol, "atol"), _tolerance(rtol, "rtol")
    if not isinstance(slices, Mapping):
        raise InvalidRequestError("slices must map each worker URL to its read-back")
    names: list[str] = []
    if expected is not None:
        if not isinstance(expected, Mapping) or not expected:
            raise InvalidRequestError("expected must map parameter names to values")
        names = list(expected)
    else:
        for got in slices.values():
            if not isinstance(got, BaseException):
                names.extend(n for n in got if n not in names)
    if expected is not None:
        workers = {
            url: _check_worker(url, got, expected, names, tol_a, tol_r)
            for url, got in slices.items()
        }
        return WeightSyncReport(reference="expected", atol=tol_a, rtol=tol_r, workers=workers)
    candidates = {
        url: {n: _values(v) for n, v in got.items() if not isinstance(v, BaseException)}
        for url, got in slices.items()
        if not isinstance(got, BaseException)
    }
    best_url: str | None = None
    best_votes = -1
    for url, values in candidates.items():
        votes = sum(
            _check_worker(other, slices[other], values, names, tol_a, tol_r).status == "match"
            for other in candidates
        )
        if votes > best_votes:
            best_url, best_votes = url, votes
    reference = candidates.get(best_url, {}) if best_url is not None else {}
    workers = {
        url: _check_worker(url, got, reference, names, tol_a, tol_r) for url, got in slices.items()
    }
    return WeightSyncReport(reference=best_url, atol=tol_a, rtol=tol_r, workers=workers)
