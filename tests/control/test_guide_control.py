"""The guide's "Weight sync in an RL loop" code, English and Chinese, run as written.

Every ``python`` block of the section is executed in order with the names the
guide assumes: ``server_url`` (a fake sglang server) and ``router_url`` (a real
gateway in front of two fake workers: smg 1.13 with ``--enable-rl`` and
sglang-router 0.3.2, the module-scoped ``gateway`` fixture). The printed lines and the
workers' state afterwards are checked.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateways import start_gateway

from rlinf_http.testing import FakeServer

DOCS = Path(__file__).resolve().parents[2] / "docs"
SECTIONS = {
    "guide.md": "## Weight sync in an RL loop",
    "guide.zh.md": "## RL 循环中的权重同步",
}


def section_blocks(name: str) -> list[str]:
    text = (DOCS / name).read_text(encoding="utf-8")
    start = text.index(SECTIONS[name])
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def cluster(gateway: str) -> Iterator[tuple[FakeServer, list[FakeServer], str]]:
    with FakeServer() as server, FakeServer() as w1, FakeServer() as w2:
        with start_gateway(gateway, [w1.url, w2.url]) as router:
            yield server, [w1, w2], router.url


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_guide_weight_sync_section_runs(
    name: str, cluster: tuple[FakeServer, list[FakeServer], str]
) -> None:
    server, workers, router_url = cluster
    blocks = section_blocks(name)
    assert len(blocks) == 7
    out = io.StringIO()
    for i, block in enumerate(blocks):
        namespace = {"server_url": server.url, "router_url": router_url, "__name__": "guide"}
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"<{name} weight-sync block {i}>", "exec"), namespace)
    lines = out.getvalue().splitlines()
    urls = {w.url for w in workers}
    # block 0: one server
    assert lines[:4] == [
        "True Succeeded to update model weights.",
        "1 /ckpt/step-1",
        "0",
        "400 The group to be destroyed does not exist.",
    ]
    # block 1: the sync idiom through the router; block 2: the async one
    count, listed = lines[4].split(" ", 1)
    assert count == "2" and set(ast.literal_eval(listed)) == urls
    assert ast.literal_eval(lines[5]) == dict.fromkeys(urls, "100")
    assert lines[6] == "100"
    assert ast.literal_eval(lines[7]) == dict.fromkeys(urls, "200")
    # block 3: partial failure, one worker down
    assert ast.literal_eval(lines[8]) == {server.url: True, "http://127.0.0.1:9": False}
    assert lines[9:12] == ["['http://127.0.0.1:9']", "True", str([server.url])]
    assert lines[12] == f"False {{'{server.url}': '300'}}"
    # block 5 prints the waiting requests per worker
    assert ast.literal_eval(lines[13]) == dict.fromkeys(urls, 0)
    # block 6: the fleet's own check, and fleets of some workers
    assert ast.literal_eval(lines[14]) == {server.url: "ready", "http://127.0.0.1:9": "dead"}
    assert lines[15] == "['http://127.0.0.1:9'] 30.0"
    assert lines[16] == str([server.url])
    assert len(lines) == 17
    # blocks 4-5: NCCL sketch, memory; the workers end up serving step 102, continued
    for w in workers:
        state = w.app.control_state()
        assert state["weight_version"] == "102" and state["paused"] is None
        assert state["released_memory_tags"] == [] and state["weight_update_groups"] == {}
        assert state["weight_update_session"] is False
        assert [u["weight_version"] for u in state["weight_updates"]] == [
            "100",
            "200",
            "101",
            "102",
        ]
    assert server.app.control_state()["weight_version"] == "300"
