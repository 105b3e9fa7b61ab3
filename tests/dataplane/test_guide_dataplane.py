"""The guide's data-plane section runs: each of its Python blocks that talks to a
server (``server_url``) is executed against the fake server on a real socket
(English and Chinese guide). Blocks that need a router are type-checked only
(tests/test_typecheck_docs.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlinf_http import InferenceHTTPClient
from rlinf_http.testing import FakeConfig, FakeServer

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = {
    "docs/guide.md": ("## Completions, embeddings, tokenizer", "## Errors"),
    "docs/guide.zh.md": ("## 补全、向量、分词", "## 错误"),
}
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def section_blocks() -> list[tuple[str, str]]:
    out = []
    for doc, (first, after) in SECTIONS.items():
        text = (ROOT / doc).read_text(encoding="utf-8")
        section = text[text.index(first) : text.index(after, text.index(first))]
        for i, code in enumerate(_FENCE.findall(section)):
            if "router_url" not in code:
                out.append((f"{doc}#{i}", code))
    return out


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(itl_s=0.002)) as srv:
        yield srv


def test_section_has_runnable_blocks() -> None:
    names = [name for name, _ in section_blocks()]
    assert sum(n.startswith("docs/guide.md") for n in names) >= 5
    assert sum(n.startswith("docs/guide.zh.md") for n in names) >= 2


@pytest.mark.parametrize(("name", "code"), section_blocks(), ids=lambda v: str(v)[:40])
def test_guide_block_runs_against_the_fake_server(
    name: str, code: str, server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("numpy")
    namespace: dict[str, object] = {"server_url": server.url, "__name__": "__main__"}
    try:
        exec(compile(code, name, "exec"), namespace)
    finally:  # the snippets leave their clients open, as scripts may
        for value in namespace.values():
            if isinstance(value, InferenceHTTPClient):
                value.close()
    printed = capsys.readouterr().out
    assert printed.strip(), f"{name} printed nothing"
    if "abort_request" in code:
        assert "aborted" in printed or "已中止" in printed
