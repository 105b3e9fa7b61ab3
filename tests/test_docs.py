"""The user docs point only to things users have, and install the way that works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

# files of the development environment that users of the package do not have
_PRIVATE = re.compile(
    r"/work/|shared/|sglang_api\.md|sglang_control_plane\.md|bench_anchor\.md"
    r"|client_anchors\.md|\breference §"
)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_pointers_to_files_users_do_not_have(doc: Path) -> None:
    hits = [
        f"{doc.name}:{n}: {line.strip()}"
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
        if _PRIVATE.search(line)
    ]
    assert hits == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_install_commands_work_without_pypi(doc: Path) -> None:
    # rlinf-http is not on PyPI: `pip install 'rlinf-http[...]'` cannot work
    text = doc.read_text(encoding="utf-8")
    assert re.findall(r"pip install(?: -\S+)* ['\"]?rlinf-http", text) == []


def test_install_from_a_clone_keeps_the_extras_names() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for doc in ("docs/guide.md", "docs/guide.zh.md", "docs/bench.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        extras = set(re.findall(r"pip install -e '\.\[([a-z,]+)\]'", text))
        assert extras, doc
        for group in extras:
            for extra in group.split(","):
                assert f"\n{extra} = [" in pyproject, (doc, extra)
