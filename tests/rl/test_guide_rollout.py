"""The guide's "Partial rollouts" code, English and Chinese, run as written against a
fake sglang server (``server_url``); the printed lines are checked against the
comments the guide shows."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlinf_http.testing import FakeConfig, FakeServer

DOCS = Path(__file__).resolve().parents[2] / "docs"
SECTIONS = {"guide.md": "## Partial rollouts", "guide.zh.md": "## 部分 rollout"}


def section_blocks(name: str) -> list[str]:
    text = (DOCS / name).read_text(encoding="utf-8")
    start = text.index(SECTIONS[name])
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


def shown(block: str) -> list[str]:
    """What the block's ``print(...)  # shown`` comments say it prints."""
    return [
        line.split("# ", 1)[1].strip()
        for line in block.splitlines()
        if line.lstrip().startswith("print(") and "# " in line
    ]


@pytest.fixture
def server() -> Iterator[FakeServer]:
    # 10 ms per token: the rollouts are still running when the guide aborts them
    with FakeServer(config=FakeConfig(itl_s=0.01)) as srv:
        yield srv


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_guide_partial_rollouts_section_runs(name: str, server: FakeServer) -> None:
    blocks = section_blocks(name)
    assert len(blocks) == 2
    for i, block in enumerate(blocks):
        out = io.StringIO()
        namespace = {"server_url": server.url, "__name__": "guide"}
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"<{name} partial-rollouts block {i}>", "exec"), namespace)
        assert out.getvalue().splitlines() == shown(block)
    assert server.app.weight_version == "3"
