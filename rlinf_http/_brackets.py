"""Brackets: run a block between an opening and a closing call, closing even on errors.

Used by the weight-update sessions of a client and by the fleet's ``paused()``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio

__all__ = ["CLEANUP_TIMEOUT_S", "abracket", "bracket"]

logger = logging.getLogger("rlinf_http")

#: How long the closing call of a bracket (continue, end of a session) may take
#: when the block was cancelled: it still runs, shielded, but never hangs.
CLEANUP_TIMEOUT_S = 60.0


@contextlib.contextmanager
def bracket(enter: Callable[[], object], leave: Callable[[], object], what: str) -> Iterator[None]:
    """Run ``enter``, the block, then ``leave`` -- also when the block raises.

    If the block raised, its exception wins; a failing ``leave`` is logged. An
    ``enter`` that fails undoes its own work; one interrupted (Ctrl-C) may have
    half happened, so ``leave`` runs then too.
    """
    try:
        enter()
    except Exception:
        raise
    except BaseException:
        _leave_quietly(leave, what)
        raise
    try:
        yield
    except BaseException:
        _leave_quietly(leave, what)
        raise
    leave()


def _leave_quietly(leave: Callable[[], object], what: str) -> None:
    try:
        leave()
    except Exception as exc:
        logger.warning("%s after a failed block also failed: %s", what, exc)


@contextlib.asynccontextmanager
async def abracket(
    enter: Callable[[], Awaitable[object]], leave: Callable[[], Awaitable[object]], what: str
) -> AsyncIterator[None]:
    """Async :func:`bracket`; ``leave`` runs shielded from cancellation, bounded in time.

    A cancelled ``enter`` may have half happened: ``leave`` runs then too.
    """
    try:
        await enter()
    except anyio.get_cancelled_exc_class():
        await _aleave_quietly(leave, what)
        raise
    try:
        yield
    except BaseException:
        await _aleave_quietly(leave, what)
        raise
    await leave()


async def _aleave_quietly(leave: Callable[[], Awaitable[object]], what: str) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT_S):
        try:
            await leave()
        except Exception as exc:
            logger.warning("%s after a failed block also failed: %s", what, exc)
