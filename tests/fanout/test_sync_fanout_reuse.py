"""Sync fan-outs run on one loop thread and one pool per client, across calls."""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
from collections.abc import Iterator

import pytest

from rlinf_http import InferenceHTTPClient
from rlinf_http.testing import FakeServer


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


def _fanout_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rlinf-http-fanout"]


def test_consecutive_generate_many_reuse_connections(server: FakeServer) -> None:
    client = InferenceHTTPClient(server.url)
    try:
        prompts = [f"p{i}" for i in range(8)]
        client.models()  # the sync session's connection (calls without model= read it)
        synced = server.connections_opened
        first = client.generate_many(prompts, concurrency=4)
        opened = server.connections_opened
        second = client.generate_many(prompts, concurrency=4)
        third = client.chat_completion_many(
            [[{"role": "user", "content": "hi"}]] * 4, concurrency=4
        )
        fourth = client.completion_many(["a", "b", "c", "d"], concurrency=4)
        assert len(first) == len(second) == 8 and len(third) == len(fourth) == 4
        # the later calls ran over the connections the first one opened
        assert server.connections_opened == opened
        assert opened - synced <= 4
    finally:
        client.close()


def test_close_stops_the_loop_thread_and_a_later_call_starts_one(server: FakeServer) -> None:
    before = len(_fanout_threads())
    client = InferenceHTTPClient(server.url)
    client.generate_many(["a", "b"])
    assert len(_fanout_threads()) == before + 1
    client.close()
    assert len(_fanout_threads()) == before
    assert len(client.generate_many(["c"])) == 1
    client.close()
    assert len(_fanout_threads()) == before


def test_pickled_client_fans_out_on_its_own_loop(server: FakeServer) -> None:
    client = InferenceHTTPClient(server.url)
    try:
        client.generate_many(["a"])
        copy = pickle.loads(pickle.dumps(client))
        try:
            assert len(copy.generate_many(["b", "c"])) == 2
        finally:
            copy.close()
    finally:
        client.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_fans_out_on_a_fresh_loop(server: FakeServer) -> None:
    client = InferenceHTTPClient(server.url)
    try:
        client.generate_many(["a"])
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                code = 0 if len(client.generate_many(["b", "c"])) == 2 else 1
            finally:
                os.write(write, bytes([code]))
                os._exit(code)
        os.close(write)
        assert os.read(read, 1) == b"\x00"
        os.close(read)
        os.waitpid(pid, 0)
        assert len(client.generate_many(["d"])) == 1  # the parent's loop is intact
    finally:
        client.close()


def test_sync_fanout_refused_inside_an_event_loop(server: FakeServer) -> None:
    client = InferenceHTTPClient(server.url)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="event loop"):
            client.generate_many(["a"])

    asyncio.run(main())
    client.close()
