"""The sync side is generated from the async source: it must be current."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("unasync", ROOT / "scripts" / "unasync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["unasync"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_current() -> None:
    assert _script().main(["--check"]) == 0


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "    async def async_generate(self) -> AsyncStream[C]:\n",
            "    def generate(self) -> Stream[C]:\n",
        ),
        ("        return await self._driver.asend(op)\n", "        return self._driver.send(op)\n"),
        ("        async with anyio_thing() as x:\n", "        with anyio_thing() as x:\n"),
        ("class AsyncGenerate(Endpoint):\n", "class Generate(Endpoint):\n"),
        # the fleet: its brackets and its hand-written runner pair
        ("        async with abracket(\n", "        with bracket(\n"),
        (
            "        return await self._async_all(*end, deadline=bound)\n",
            "        return self._all(*end, deadline=bound)\n",
        ),
        (
            "        await self.aclose()  # unasync: keep\n",
            "        await self.aclose()  # unasync: keep\n",
        ),
    ],
)
def test_rules(source: str, expected: str) -> None:
    assert _script().unasync_line(source) == expected


def test_markers() -> None:
    text = (
        "a = 1\n# unasync: async-only\nasync_only = 2\n# unasync: end\n"
        "# unasync: sync-only\n# sync_only = 3\n# unasync: end\n"
    )
    out = _script().unasync_text(text, "x.py")
    assert "async_only" not in out and "only = 2" not in out
    assert "\nsync_only = 3\n" in out
