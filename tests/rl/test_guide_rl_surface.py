"""The guide's "Verify a weight sync" and "Reward models" code, English and Chinese, run as
written against a fake server (``server_url``) and the real sglang-router in front of two
fake workers (``router_url``); the printed lines are checked."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlinf_http.testing import FakeServer, launch_router, router_available

DOCS = Path(__file__).resolve().parents[2] / "docs"
SECTIONS = {
    "guide.md": ("## Verify a weight sync", "## Reward models"),
    "guide.zh.md": ("## 验证权重同步", "## 奖励模型"),
}

pytestmark = pytest.mark.skipif(
    not router_available(), reason="sglang-router (with its Rust extension) is not installed"
)


def section_block(name: str, heading: str) -> str:
    text = (DOCS / name).read_text(encoding="utf-8")
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)
    assert len(blocks) == 1, (name, heading)
    return str(blocks[0])


@pytest.fixture
def cluster() -> Iterator[tuple[str, str]]:
    with FakeServer() as server, FakeServer() as w1, FakeServer() as w2:
        with launch_router([w1.url, w2.url], ready_timeout=60) as router:
            yield server.url, router.url


def _run(block: str, where: str, server_url: str, router_url: str) -> list[str]:
    out = io.StringIO()
    namespace = {"server_url": server_url, "router_url": router_url, "__name__": "guide"}
    with contextlib.redirect_stdout(out):
        exec(compile(block, where, "exec"), namespace)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_guide_verify_and_reward_blocks_run(name: str, cluster: tuple[str, str]) -> None:
    server_url, router_url = cluster
    verify, rewards = SECTIONS[name]
    lines = _run(section_block(name, verify), f"<{name} verify>", server_url, router_url)
    assert lines == ["False True", "True 2/2 workers match", "1", "True", "1/2 workers match"]
    lines = _run(section_block(name, rewards), f"<{name} rewards>", server_url, router_url)
    assert lines == ["float", "2", "[1.0, 1.0]", "2 True"]
