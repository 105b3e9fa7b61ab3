"""Every worker behind a router as one target: concurrent control calls with per-worker results.

The sglang router forwards no control endpoint, so a weight sync has to reach
each worker itself. A :class:`Fleet` holds one client per worker and runs a
call on all of them concurrently: the async methods in an anyio task group,
the sync ones on one thread per worker, both running the same core plans.
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
