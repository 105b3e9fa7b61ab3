"""``target_worker=``: pin one data-plane request to one worker (no I/O).

smg 1.13 reads ``x-smg-target-worker`` only under ``--policy
consistent_hashing``, and only as a 0-based index into a worker list. Which
list depends on the route (observed with the real binary, 3 workers, several
launches): a call routed by model (chat, completions, embeddings) indexes the
workers sorted by their ``id``; ``/generate`` indexes them in the order
``GET /workers`` lists them (neither is the order of ``--worker-urls``). Other
smg policies, sglang-router 0.3.2 and a plain server ignore the header. An
index is sent as given; a worker URL is turned into its index by reading
``GET /workers`` (:func:`target_index_plan`), which fails with
:class:`InvalidRequestError` where no smg lists workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypeVar, overload

from .._errors import APIStatusError, InvalidRequestError
from ..models import WorkerList
from .plans import Plan, list_workers_plan
from .requests import LazyOps, Operation

__all__ = [
    "TARGET_WORKER_HEADER",
    "check_target_worker",
    "target_index",
    "pin_ops",
    "target_index_plan",
    "with_target_worker",
]

T = TypeVar("T")

#: smg's request header naming the worker (by index) to serve a request.
TARGET_WORKER_HEADER = "x-smg-target-worker"


def check_target_worker(target: object) -> int | str | None:
    """``None``, a worker index (an int >= 0), or a worker URL (``http(s)://...``)."""
    if target is None:
        return None
    if isinstance(target, int) and not isinstance(target, bool):
        if target < 0:
            raise InvalidRequestError(f"target_worker index must be >= 0, got {target}")
        return target
    if isinstance(target, str) and target.strip().startswith(("http://", "https://")):
        return target.strip().rstrip("/")
    raise InvalidRequestError(
        f"target_worker must be a worker index (int >= 0) or a worker URL, got {target!r}"
    )


def with_target_worker(op: Operation[T], index: int | None) -> Operation[T]:
    """``op`` sending ``x-smg-target-worker: index`` (unchanged for ``None``)."""
    if index is None:
        return op
    checked = check_target_worker(index)
    if not isinstance(checked, int):
        raise InvalidRequestError(f"target_worker index must be an int, got {index!r}")
    return dataclasses.replace(op, headers=(*op.headers, (TARGET_WORKER_HEADER, str(checked))))


@overload
def pin_ops(ops: LazyOps[T], index: int | None) -> LazyOps[T]: ...


@overload
def pin_ops(ops: list[Operation[T]], index: int | None) -> list[Operation[T]]: ...


def pin_ops(ops: Sequence[Operation[T]], index: int | None) -> Sequence[Operation[T]]:
    """Every op of a fan-out sent to worker ``index`` (``ops`` itself for ``None``)."""
    if index is None:
        return ops
    if isinstance(ops, LazyOps):
        return ops.mapped(lambda op: with_target_worker(op, index))
    return [with_target_worker(op, index) for op in ops]


def target_index(workers: WorkerList, url: str, base_url: str, by_model: bool) -> int:
    """The index smg gives the worker at ``url``: its place among the workers
    sorted by id (``by_model``: a call routed by model), else in ``GET /workers``."""
    ordered = sorted(workers, key=lambda w: w.id) if by_model else list(workers)
    listed = [(w.url or "").rstrip("/") for w in ordered]
    if workers.workers and not all(w.runtime_type is not None for w in workers):
        raise InvalidRequestError(
            f"target_worker={url!r}: {base_url} is not smg (its /workers has no runtime_type; "
            "sglang-router 0.3.2 ignores x-smg-target-worker): use routing_key= instead"
        )
    if url not in listed:
        raise InvalidRequestError(
            f"target_worker={url!r} is not a worker of {base_url}; its workers: "
            + (", ".join(listed) or "none")
        )
    return listed.index(url)


def target_index_plan(url: str, base_url: str, by_model: bool) -> Plan[int]:
    """``GET /workers``, then :func:`target_index`; a base URL without ``/workers``
    (a server) raises :class:`InvalidRequestError`."""
    try:
        workers: WorkerList = yield from list_workers_plan()
    except APIStatusError as exc:
        if exc.status_code not in (404, 405):
            raise
        raise InvalidRequestError(
            f"target_worker={url!r}: {base_url} lists no workers (GET /workers answered "
            f"{exc.status_code}): pinning a worker needs smg (--policy consistent_hashing)"
        ) from None
    return target_index(workers, url, base_url, by_model)
