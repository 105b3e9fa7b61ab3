"""The base of every endpoint class: it holds the client's driver, and nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._driver import Driver

__all__ = ["Endpoint"]


class Endpoint:
    """A group of calls over ``self._driver`` (set by the client that inherits it)."""

    __slots__ = ()

    _driver: Driver
