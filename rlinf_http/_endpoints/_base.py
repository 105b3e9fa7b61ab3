"""The base of every endpoint class: it holds only a driver."""

from __future__ import annotations

from typing import Any


class Endpoint:
    __slots__ = ()
    _driver: Any
