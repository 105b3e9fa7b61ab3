"""Old home of the client's I/O half, now :mod:`rlinf_http._driver`: names kept importable."""

from __future__ import annotations

from ._driver import NOT_GIVEN, TimeoutTypes
from ._options import TransportChoice

__all__ = ["NOT_GIVEN", "TimeoutTypes", "TransportChoice"]
