"""Models of reading weights back from sglang 0.5.23 and of verifying a weight sync.

- ``/get_weights_by_name`` answers a bare JSON list: ``param.float().tolist()
  [:truncate_size]``, so the first ``truncate_size`` values of a 1-D parameter
  or the first ``truncate_size`` whole rows of a 2-D one (TP rank 0's shard,
  gathered for ``o_proj``/``down_proj``); a server with several DP ranks
  answers one such list per rank. :class:`ParameterSlice` keeps it.
- ``/weights_checker`` answers ``{"success", "message", "ranks"?,
  "per_engine_checksum"?}``: :class:`WeightsCheckResult`.
- ``/remote_instance_transfer_engine_info?rank=`` answers
  ``{"rank", "remote_instance_transfer_engine_info": [session_id, weights_info]}``.
- :class:`WeightSyncReport` is the verdict of
  :func:`rlinf_http._core.weights_check.compare_weight_slices`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ._base import ResponseModel, WireModel

__all__ = [
    "ParallelismInfo",
    "ParameterCheck",
    "ParameterSlice",
    "RankChecksums",
    "RemoteTransferEngineInfo",
    "SyncStatus",
    "WeightSyncReport",
    "WeightsCheckResult",
    "WorkerSyncCheck",
]

#: The verdict for one worker (or one parameter of it).
SyncStatus = Literal["match", "mismatch", "error"]


class ParameterSlice(WireModel):
    """The values ``/get_weights_by_name`` returned for ``name``.

    ``values`` is the JSON list as sent: floats (1-D parameter), the first
    ``truncate_size`` rows (2-D), or one of those per DP rank. :meth:`flat`
    lists every float in order and :attr:`shape` gives the nesting lengths
    (ragged lists have no shape).
    """

    name: str
    truncate_size: int = 100
    values: list[Any] = Field(default_factory=list)

    def flat(self) -> list[float]:
        """Every value, depth-first (raises ``ValueError`` on a non-number)."""
        out: list[float] = []
        _flatten(self.values, out)
        return out

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The nesting lengths, e.g. ``(2, 100)``; ``None`` if the lists are ragged."""
        return _shape(self.values)


def _flatten(value: Any, out: list[float]) -> None:
    if isinstance(value, list):
        for item in value:
            _flatten(item, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out.append(float(value))
    else:
        raise ValueError(f"not a number: {value!r}")


def _shape(value: Any) -> tuple[int, ...] | None:
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    inner = {_shape(item) for item in value}
    if len(inner) != 1:
        return None
    (sub,) = inner
    return None if sub is None else (len(value), *sub)


class ParallelismInfo(WireModel):
    """Where one checksum was taken: role (``target``/``draft...``) and ranks."""

    role: str | None = None
    tp_rank: int | None = None
    tp_size: int | None = None
    dp_rank: int | None = None
    dp_size: int | None = None
    pp_rank: int | None = None
    pp_size: int | None = None
    rank: int | None = None
    size: int | None = None


class RankChecksums(WireModel):
    """The checksums of one GPU rank: per tensor, and one over the whole rank."""

    checksums: dict[str, str] = Field(default_factory=dict)
    per_gpu_checksum: str | None = None
    parallelism_info: list[ParallelismInfo] = Field(default_factory=list)


class WeightsCheckResult(ResponseModel):
    """``/weights_checker``: ``per_engine_checksum`` (sha256 over the ranks) with ``checksum``.

    Two workers that hold the same weights with the same parallelism report
    the same ``per_engine_checksum``. A failure (400, ``success: false``) is
    raised as :class:`~rlinf_http.WeightUpdateError`.
    """

    success: bool = True
    message: str = ""
    ranks: list[RankChecksums] | None = None
    per_engine_checksum: str | None = None


class RemoteTransferEngineInfo(ResponseModel):
    """``/remote_instance_transfer_engine_info``: one rank's transfer-engine session."""

    rank: int | None = None
    remote_instance_transfer_engine_info: list[Any] | None = None

    @property
    def session_id(self) -> Any:
        """The transfer-engine session id (first element), or ``None``."""
        info = self.remote_instance_transfer_engine_info
        return info[0] if info else None

    @property
    def weights_info(self) -> Any:
        """The registered weights description (second element), or ``None``."""
        info = self.remote_instance_transfer_engine_info
        return info[1] if info and len(info) > 1 else None


class ParameterCheck(WireModel):
    """The comparison of one parameter on one worker with the reference.

    ``max_abs_diff`` and ``first_mismatch_index`` (a flat, depth-first index)
    are set when both sides had the same shape; ``reason`` says why not
    otherwise (shape, NaN, an error reading it).
    """

    name: str
    status: SyncStatus
    max_abs_diff: float | None = None
    first_mismatch_index: int | None = None
    num_values: int = 0
    reason: str | None = None


class WorkerSyncCheck(WireModel):
    """The verdict for one worker: ``match`` only if every parameter matched."""

    url: str
    status: SyncStatus
    parameters: list[ParameterCheck] = Field(default_factory=list)
    error: str | None = None

    @property
    def max_abs_diff(self) -> float | None:
        """The largest difference over this worker's parameters (``None``: none compared)."""
        diffs = [p.max_abs_diff for p in self.parameters if p.max_abs_diff is not None]
        return max(diffs) if diffs else None


class WeightSyncReport(WireModel):
    """Per-worker verdicts of a weight-sync verification.

    ``reference`` is ``"expected"`` when the trainer's values were given, else
    the URL of the worker the others were compared with (the one most workers
    agree with).
    """

    reference: str | None = None
    atol: float = 0.0
    rtol: float = 0.0
    workers: dict[str, WorkerSyncCheck] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every worker matched."""
        return all(w.status == "match" for w in self.workers.values())

    @property
    def matched(self) -> list[str]:
        """URLs of the workers that match."""
        return [u for u, w in self.workers.items() if w.status == "match"]

    @property
    def mismatched(self) -> list[str]:
        """URLs of the workers whose values differ."""
        return [u for u, w in self.workers.items() if w.status == "mismatch"]

    @property
    def errors(self) -> dict[str, str]:
        """URL -> why the worker could not be compared."""
        return {u: w.error or "error" for u, w in self.workers.items() if w.status == "error"}

    def raise_for_mismatch(self) -> WeightSyncReport:
        """Raise :class:`~rlinf_http.WeightSyncError` unless every worker matched; else ``self``.

        A worker that could not be read (``error``) fails the check too: a sync
        that cannot be confirmed is not confirmed.
        """
        if not self.ok:
            from .._errors import WeightSyncError

            raise WeightSyncError(f"weight sync not confirmed: {self.summary()}", report=self)
        return self

    def summary(self) -> str:
        """One line: counts, and the workers that differ or failed."""
        parts = [f"{len(self.matched)}/{len(self.workers)} workers match"]
        for url in self.mismatched:
            worst = self.workers[url].max_abs_diff
            parts.append(f"{url} differs" + (f" (max abs diff {worst:g})" if worst else ""))
        for url, why in self.errors.items():
            parts.append(f"{url}: {why}")
        return "; ".join(parts)
