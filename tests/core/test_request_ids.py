"""Request ids (body ``rid`` and ``x-request-id``): uuid4 hex, unique, untouched by a
user's ``random.seed``, and not repeated by a forked child."""

from __future__ import annotations

import os
import random
import re
import uuid

import pytest

from rlinf_http._core.steering import new_rid


def test_ids_are_uuid4_hex_and_unique() -> None:
    ids = [new_rid() for _ in range(20000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert all(uuid.UUID(hex=i).version == 4 for i in ids)
    assert all(uuid.UUID(hex=i).variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_users_random_seed_does_not_repeat_ids() -> None:
    random.seed(0)
    first = [new_rid() for _ in range(3)]
    random.seed(0)
    second = [new_rid() for _ in range(3)]
    assert set(first).isdisjoint(second)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids and leave at once
        try:
            os.write(write, " ".join(new_rid() for _ in range(3)).encode())
        finally:
            os._exit(0)
    os.close(write)
    parent = {new_rid() for _ in range(3)}
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(child) == 3 and child.isdisjoint(parent)
