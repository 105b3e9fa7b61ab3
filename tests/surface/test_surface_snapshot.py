"""The public surface, pinned: every public name, signature and overload.

The facade is generated and composed from endpoint classes; this snapshot is
what proves the surface did not move. Regenerate deliberately (after an
addition you mean) with ``RLINF_UPDATE_SURFACE=1 pytest tests/surface``.
"""

from __future__ import annotations

import inspect
import json
import os
import typing
from pathlib import Path
from typing import Any

import pytest

import rlinf_http
from rlinf_http import AsyncStream, Fleet, FleetResult, InferenceHTTPClient, Stream
from rlinf_http._client import AsCompleted

SNAPSHOT = Path(__file__).with_name("surface.json")
# Built by the library, not by users: their constructors are internal.
INTERNAL_INIT = {"Stream", "AsyncStream", "AsCompleted"}
CLASSES: dict[str, type] = {
    "InferenceHTTPClient": InferenceHTTPClient,
    "Fleet": Fleet,
    "FleetResult": FleetResult,
    "Stream": Stream,
    "AsyncStream": AsyncStream,
    "AsCompleted": AsCompleted,
}


def _sig(fn: Any) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return "<no signature>"


def _member(cls: type, name: str) -> dict[str, Any]:
    raw = inspect.getattr_static(cls, name)
    entry: dict[str, Any] = {}
    if isinstance(raw, property):
        entry["kind"] = "property"
        if raw.fget is not None:
            entry["returns"] = str(inspect.signature(raw.fget).return_annotation)
        return entry
    if isinstance(raw, (staticmethod, classmethod)):
        entry["kind"] = type(raw).__name__
        fn = raw.__func__
    elif callable(raw):
        entry["kind"] = "async method" if inspect.iscoroutinefunction(raw) else "method"
        fn = raw
    else:
        entry["kind"] = "attribute"
        return entry
    entry["signature"] = _sig(fn)
    overloads = typing.get_overloads(fn)
    if overloads:
        entry["overloads"] = [_sig(o) for o in overloads]
    return entry


def surface() -> dict[str, Any]:
    out: dict[str, Any] = {"__all__": sorted(rlinf_http.__all__)}
    for label, cls in CLASSES.items():
        names = sorted(
            n
            for n in dir(cls)
            if not n.startswith("_")
            or n in ("__init__", "__enter__", "__exit__", "__aenter__", "__aexit__")
        )
        if label in INTERNAL_INIT:
            names.remove("__init__")
        out[label] = {n: _member(cls, n) for n in names}
        # instance attributes documented on the class (set in __init__)
        out[label]["__annotations__"] = sorted(
            n for n in getattr(cls, "__annotations__", {}) if not n.startswith("_")
        )
    return out


def test_public_surface_is_unchanged() -> None:
    current = json.dumps(surface(), indent=1, sort_keys=True) + "\n"
    if os.environ.get("RLINF_UPDATE_SURFACE") == "1":
        SNAPSHOT.write_text(current)
        pytest.skip("surface snapshot rewritten")
    assert SNAPSHOT.read_text() == current, (
        "the public surface changed; if you meant it, rerun with RLINF_UPDATE_SURFACE=1 "
        "and list the addition in your commit"
    )


def test_instances_keep_their_public_attributes() -> None:
    client = InferenceHTTPClient("http://127.0.0.1:9")
    for name in (
        "base_url",
        "connect_timeout",
        "max_connections",
        "health_timeout",
        "transport",
        "log_bodies",
        "retry_policy",
    ):
        assert hasattr(client, name), name
    fleet = Fleet.from_urls(["http://127.0.0.1:9"], call_timeout=1.0)
    assert fleet.call_timeout == 1.0
    fleet.close()
