"""The endpoint classes touch nothing of the client but ``self._driver``.

Each is one concern, written once (async) and generated (sync); the client
composes them. A method that reaches for another private name (``self._x``)
would couple one endpoint to another or to the client's internals: fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rlinf_http"
ENDPOINT_MODULES = sorted(
    [
        *(PACKAGE / "_endpoints" / "_async").glob("*.py"),
        *(PACKAGE / "_endpoints" / "_sync").glob("*.py"),
        PACKAGE / "_control.py",  # FleetAccess
    ]
)


def _private_self_attributes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr.startswith("_")
            and node.attr != "_driver"
        ):
            found.append(f"{path.name}:{node.lineno}: self.{node.attr}")
    return found


def test_there_are_endpoint_modules() -> None:
    assert len(ENDPOINT_MODULES) >= 20


@pytest.mark.parametrize("path", ENDPOINT_MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_endpoint_touches_only_the_driver(path: Path) -> None:
    assert _private_self_attributes(path) == []


def test_the_check_catches_a_private_access(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("class A:\n    def f(self):\n        return self._policy(0), self._driver\n")
    assert _private_self_attributes(bad) == ["bad.py:3: self._policy"]
