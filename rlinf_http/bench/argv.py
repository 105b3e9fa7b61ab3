"""Command-line spellings typer cannot parse directly (no numpy, no typer here).

``--ray`` takes an optional value: a bare ``--ray`` (last, or followed by another
option) means ``--ray local`` (start a local Ray cluster).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["RAY_LOCAL", "normalize_bench_argv"]

RAY_LOCAL = "local"


def normalize_bench_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with a bare ``--ray`` given its implicit value (only after ``bench``)."""
    args = list(argv)
    if "bench" not in args:
        return args
    out: list[str] = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--ray" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append(RAY_LOCAL)
    return out
