"""Kept for imports of earlier releases: the bracket helpers live in :mod:`rlinf_http._brackets`.

The control calls of one server are written once in
:mod:`rlinf_http._endpoints._async.control`; ``client.fleet()`` is in
:mod:`rlinf_http._endpoints._async.fleet`.
"""

from __future__ import annotations

from ._brackets import CLEANUP_TIMEOUT_S, abracket, bracket

__all__ = ["CLEANUP_TIMEOUT_S", "abracket", "bracket"]
