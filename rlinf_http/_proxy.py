"""Temporarily remove proxy settings from the process environment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Final

__all__ = ["PROXY_ENV_VARS", "no_proxy_env"]

#: The variables :func:`no_proxy_env` removes, lower- and upper-case.
PROXY_ENV_VARS: Final[tuple[str, ...]] = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
)


@contextlib.contextmanager
def no_proxy_env() -> Iterator[None]:
    """Run a block with ``http_proxy``, ``https_proxy`` and ``all_proxy`` unset.

    Both the lower- and upper-case spellings are popped from :data:`os.environ` on
    entry. On exit, normal or by exception, every one of them is put back to exactly
    what it was before: variables that were set get their old value again, variables
    that were absent are removed (even if the block set them). ``no_proxy`` is left
    alone.

    Use it around spawning an sglang router or server so that their HTTP clients do
    not route loopback / intra-cluster traffic through a proxy. The environment is
    process-wide: do not rely on it concurrently from several threads.
    """
    saved = {name: os.environ.pop(name, None) for name in PROXY_ENV_VARS}
    try:
        yield
    finally:
        # Remove first, then set: on Windows the names are case-insensitive, so
        # ``HTTP_PROXY`` and ``http_proxy`` are one variable.
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value
