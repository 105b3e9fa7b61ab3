"""Enter a state, run a block, leave the state: also when the block fails or is interrupted.

``bracket`` (sync) and ``abracket`` (async) back ``paused()`` and the weight
update sessions of the client and the fleet. They differ in how the closing
call is bounded, so both are written here by hand:

- after a normal block, ``leave`` runs unbounded (``leave(None)``), like any call;
  interrupted or cancelled, it is tried once more as below;
- after a block that raised, ``leave`` gets :data:`CLEANUP_TIMEOUT_S`;
- after an interruption (Ctrl-C, cancellation), ``leave`` gets
  :data:`INTERRUPT_CLEANUP_TIMEOUT_S`, so the program ends within seconds even
  when a server hangs; a second Ctrl-C ends the sync form at once.

``leave(bound)`` receives that bound in seconds and must finish within it (the
fleet gives up on the workers still pending and reports them). When the closing
call fails, is cut short or is interrupted, a WARNING on the ``rlinf_http``
logger says so and ``hint`` tells how to finish by hand (for example
``fleet.continue_generation()``): the state may not have been left.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio

__all__ = [
    "CLEANUP_TIMEOUT_S",
    "INTERRUPT_CLEANUP_TIMEOUT_S",
    "abracket",
    "bracket",
]

logger = logging.getLogger("rlinf_http")

#: Seconds the closing call of a bracket (continue, end of a session) may take
#: after the block raised.
CLEANUP_TIMEOUT_S = 60.0

#: Seconds it may take after the block was interrupted (Ctrl-C) or cancelled:
#: short, so that an interrupted program ends even when a server hangs.
INTERRUPT_CLEANUP_TIMEOUT_S = 5.0

Leave = Callable[[float | None], object]
ALeave = Callable[[float | None], Awaitable[object]]


@contextlib.contextmanager
def bracket(enter: Callable[[], object], leave: Leave, what: str, hint: str) -> Iterator[None]:
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
        _leave_quietly(leave, INTERRUPT_CLEANUP_TIMEOUT_S, what, hint)
        raise
    try:
        yield
    except Exception:
        _leave_quietly(leave, CLEANUP_TIMEOUT_S, what, hint)
        raise
    except BaseException:
        _leave_quietly(leave, INTERRUPT_CLEANUP_TIMEOUT_S, what, hint)
        raise
    try:
        leave(None)
    except Exception:
        raise
    except BaseException:  # Ctrl-C while leaving: one more try, bounded
        _leave_quietly(leave, INTERRUPT_CLEANUP_TIMEOUT_S, what, hint)
        raise


def _leave_quietly(leave: Leave, bound: float, what: str, hint: str) -> None:
    try:
        leave(bound)
    except Exception as exc:
        logger.warning("%s after a failed block also failed: %s; %s", what, exc, hint)
    except BaseException:  # a second Ctrl-C: give up at once, but say so
        logger.warning("%s was interrupted and may not have happened; %s", what, hint)
        raise


@contextlib.asynccontextmanager
async def abracket(
    enter: Callable[[], Awaitable[object]], leave: ALeave, what: str, hint: str
) -> AsyncIterator[None]:
    """Async :func:`bracket`; ``leave`` runs shielded from cancellation, bounded in time.

    A cancelled ``enter`` may have half happened: ``leave`` runs then too.
    """
    try:
        await enter()
    except anyio.get_cancelled_exc_class():
        await _aleave_quietly(leave, INTERRUPT_CLEANUP_TIMEOUT_S, what, hint)
        raise
    try:
        yield
    except Exception:
        await _aleave_quietly(leave, CLEANUP_TIMEOUT_S, what, hint)
        raise
    except BaseException:
        await _aleave_quietly(leave, INTERRUPT_CLEANUP_TIMEOUT_S, what, hint)
        raise
    try:
        await leave(None)
    except anyio.get_cancelled_exc_class():  # cancelled while leaving: again, shielded
        await _aleave_quietly(leave, INTERRUPT_CLEANUP_TIMEOUT_S, what, hint)
        raise


async def _aleave_quietly(leave: ALeave, bound: float, what: str, hint: str) -> None:
    # ``leave`` bounds itself; the outer bound (with a margin) is the guarantee.
    with anyio.CancelScope(shield=True), anyio.move_on_after(bound + 1.0) as scope:
        try:
            await leave(bound)
        except Exception as exc:
            logger.warning("%s after a failed block also failed: %s; %s", what, exc, hint)
    if scope.cancelled_caught:
        logger.warning("%s did not finish within %g s; %s", what, bound, hint)
