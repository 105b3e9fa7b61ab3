"""How many objects Python's garbage collector tracks for one kept ``generate`` result.

A gather over thousands of prompts keeps every result alive, and every full collection
scans them all (benchmarks/backends.py --table gather): the count is part of the call's
cost. Counted, not timed: a regression (a closure, a default list, a tracked record of
the request) shows up as a higher count.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from conftest import RawHTTPServer, SeenRequest  # type: ignore[import-not-found]

from rlinf_http import GenerateOutput, InferenceHTTPClient

N = 200
#: three models (GenerateOutput, MetaInfo, the finish reason), the dicts and
#: field-name sets pydantic gives the first two and the sets of all three, and
#: the output_ids list; the remembered request and the request id are untracked.
TRACKED_PER_RESULT = 9


def _new_tracked(before: set[int]) -> list[Any]:
    """Objects tracked now and not before, but the test server's records of requests."""
    gc.collect()
    return [o for o in gc.get_objects() if id(o) not in before and not isinstance(o, SeenRequest)]


def _kept(results: list[GenerateOutput]) -> float:
    assert len(results) == N and all(r.text.startswith("echo:") for r in results)
    return N


def test_a_kept_result_costs_nine_tracked_objects_sync(raw_server: RawHTTPServer) -> None:
    with InferenceHTTPClient(raw_server.url, max_retries=0) as client:
        client.generate("warm", sampling_params={"max_new_tokens": 2})
        gc.collect()
        before = {id(o) for o in gc.get_objects()}
        results = [
            client.generate(f"p{i}", sampling_params={"max_new_tokens": 2}) for i in range(N)
        ]
        new = _new_tracked(before)
        per_result = (len(new) - 1) / _kept(results)  # - the results list
        assert per_result < TRACKED_PER_RESULT + 0.5, per_result  # (+ a few strays per run)
        assert client.resume(results[0]) is results[0]  # finished: still resumable input


@pytest.mark.anyio
async def test_a_kept_result_costs_nine_tracked_objects_async(raw_server: RawHTTPServer) -> None:
    async with InferenceHTTPClient(raw_server.url, max_retries=0) as client:
        await client.async_generate("warm", sampling_params={"max_new_tokens": 2})
        gc.collect()
        before = {id(o) for o in gc.get_objects()}
        results = [
            await client.async_generate(f"p{i}", sampling_params={"max_new_tokens": 2})
            for i in range(N)
        ]
        new = _new_tracked(before)
        per_result = (len(new) - 1) / _kept(results)
        assert per_result < TRACKED_PER_RESULT + 0.5, per_result  # (+ a few strays per run)
