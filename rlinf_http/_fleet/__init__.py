"""Every worker behind a gateway as one target: concurrent control calls with per-worker results.

sglang-router 0.3.2 (and smg without ``--enable-rl``) forwards no control
endpoint, so a weight sync has to reach each worker itself (the direct path). A
:class:`Fleet` holds one client per worker and runs a call on all of them
concurrently: the async methods in an anyio task group, the sync ones on one
thread per worker, both running the same core plans. Through smg with
``--enable-rl`` (the gateway path) the same plans run in lockstep, each step one
``/v1/rl/engine/...`` fan-out sent by smg (:mod:`rlinf_http._core.rl_gateway`).
Every worker is tried; the outcome is a :class:`FleetResult` (worker URL ->
result or exception), and any failure raises :class:`~rlinf_http.FleetError`
afterwards unless ``raise_on_error=False``.

Layout: ``_async.py`` holds every call, written once; ``_sync.py`` is generated
from it by ``scripts/unasync.py``; ``_base.py`` holds what both share and the
hand-written runner pair (task group / threads); ``_fleet.py`` composes them.
"""

from ._fleet import Fleet
from ._result import FleetResult
from ._step import PhaseResult, WeightUpdateReport, WorkerUpdate

__all__ = ["Fleet", "FleetResult", "PhaseResult", "WeightUpdateReport", "WorkerUpdate"]
