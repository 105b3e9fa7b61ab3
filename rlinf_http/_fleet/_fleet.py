"""``Fleet``: one client per worker, composed of the async calls and their generated sync twins."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._core.requests import check_timeout
from .._errors import FleetError, InvalidRequestError
from .._options import ClientOptions
from ._async import AsyncFleetCalls
from ._base import Prototype, worker_url, worker_urls
from ._result import FleetResult
from ._sync import FleetCalls

if TYPE_CHECKING:  # the fleet never imports the client module at run time
    from .. import InferenceHTTPClient

__all__ = ["Fleet", "register_client_class"]

# The class ``Fleet.from_urls`` builds its clients with. ``rlinf_http._client``
# registers ``InferenceHTTPClient`` when it is imported (``import rlinf_http``
# does), so this module needs no import of it; the other ways to a fleet copy a
# client they are given.
_client_class: list[type[InferenceHTTPClient]] = []


def register_client_class(cls: type[InferenceHTTPClient]) -> None:
    """Make ``cls`` the client class :meth:`Fleet.from_urls` builds."""
    _client_class[:] = [cls]


class Fleet(AsyncFleetCalls, FleetCalls):
    """One client per worker; each control call runs on all of them concurrently.

    Get one from a router with ``client.fleet()`` / ``await client.async_fleet()``
    (or for a single server: a fleet of one), or build one with
    :meth:`from_urls`. ``len(fleet)``, ``for url in fleet`` and
    :meth:`client` give the workers. Every call returns a :class:`FleetResult`
    and raises :class:`~rlinf_http.FleetError` after all workers were tried if
    any failed (``raise_on_error=False`` returns the errors in the result).
    Arguments are checked once, before any request is sent.

    The weight-sync idiom continues every worker even when the block raises::

        with client.fleet().paused(mode="retract") as fleet:
            fleet.update_weights_from_disk("/ckpt/step-100", weight_version="100")
    """

    def __init__(
        self, clients: Iterable[InferenceHTTPClient], *, call_timeout: float | None = None
    ) -> None:
        #: seconds each worker's call may wait on its server (``None``: no bound)
        self.call_timeout = check_timeout(call_timeout, "call_timeout")
        self._clients: dict[str, InferenceHTTPClient] = {}
        self._router: InferenceHTTPClient | None = None
        for client in clients:
            if client.base_url in self._clients:
                raise InvalidRequestError(f"worker {client.base_url} is given twice")
            self._clients[client.base_url] = client
        if not self._clients:
            raise InvalidRequestError("a Fleet needs at least one worker")
        # The worker clients belong to the fleet: their sync sessions close with it.
        weakref.finalize(self, _close_all, list(self._clients.values()))

    @classmethod
    def from_urls(
        cls, urls: Iterable[str], *, call_timeout: float | None = None, **client_options: Any
    ) -> Fleet:
        """A fleet of the workers at ``urls``; ``client_options`` go to each client.

        ``@<rank>`` suffixes (as a DP-aware router lists them) are stripped and
        repeated URLs kept once. ``call_timeout`` bounds, in seconds, how long each
        worker's call waits on its server (to connect, and for each read): a worker
        that hangs then fails with :class:`~rlinf_http.APITimeoutError` inside the
        :class:`~rlinf_http.FleetError` raised once the others completed. ``None``
        (the default): no bound, as on a client; a sync call can then only end
        when every worker answers.
        """
        unique = worker_urls(urls)
        (client_class,) = _client_class
        options = [ClientOptions.build(url, **client_options) for url in unique]
        return cls([client_class.from_options(o) for o in options], call_timeout=call_timeout)

    @classmethod
    def _of(
        cls,
        prototype: Prototype,
        urls: list[str] | None,
        worker_type: str | None,
        call_timeout: float | None,
        overrides: dict[str, Any],
    ) -> Fleet:
        """A fleet of ``urls`` (``None``: the prototype's own server), each ``prototype.copy()``."""
        if urls is not None and not urls:
            kind = f" of type {worker_type!r}" if worker_type else ""
            raise FleetError(
                f"the router at {prototype.options.base_url} lists no workers{kind}",
                operation="fleet",
                result=FleetResult({}, "fleet"),
            )
        targets = [prototype.options.base_url] if urls is None else urls
        clients = [prototype.copy(base_url=url, **overrides) for url in targets]
        fleet = cls(clients, call_timeout=call_timeout)
        if urls is not None:  # behind a router: update_weights takes failed workers out of it
            fleet._router = prototype.copy()
        return fleet

    # -- the workers ----------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """The worker URLs, in order."""
        return list(self._clients)

    def client(self, url: str) -> InferenceHTTPClient:
        """The client of the worker at ``url``."""
        try:
            return self._clients[worker_url(url)]
        except KeyError:
            raise InvalidRequestError(f"{url!r} is not a worker of this fleet") from None

    def subset(self, urls: Iterable[str]) -> Fleet:
        """A new fleet of the workers at ``urls`` (in this fleet's order), with this
        fleet's settings: each worker client is a ``copy()`` of this one's, and
        ``call_timeout`` is kept.

        To retry the workers a call failed on: ``fleet.subset(exc.errors)`` for a
        :class:`~rlinf_http.FleetError` ``exc`` (or ``result.errors`` of a
        :class:`FleetResult`). The new fleet has its own connections; close it
        like any fleet. Every URL must be a worker of this fleet.
        """
        wanted = set(worker_urls(urls))
        unknown = wanted - set(self._clients)
        if unknown:
            raise InvalidRequestError(f"not workers of this fleet: {sorted(unknown)}")
        if not wanted:
            raise InvalidRequestError("a Fleet needs at least one worker")
        fleet = Fleet(
            [c.copy() for url, c in self._clients.items() if url in wanted],
            call_timeout=self.call_timeout,
        )
        fleet._router = None if self._router is None else self._router.copy()
        return fleet

    def without(self, urls: Iterable[str]) -> Fleet:
        """A new fleet of the other workers (see :meth:`subset`); e.g. without the dead ones."""
        dropped = set(worker_urls(urls))
        return self.subset([url for url in self._clients if url not in dropped])

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._clients))

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and worker_url(url) in self._clients

    def __repr__(self) -> str:
        return f"Fleet({list(self._clients)!r})"

    @property
    def router_url(self) -> str | None:
        """The router whose ``GET /workers`` listed the workers (``None``: no router)."""
        return None if self._router is None else self._router.base_url

    def close(self) -> None:
        """Close every worker client's sync session."""
        for client in self._clients.values():
            client.close()
        if self._router is not None:
            self._router.close()

    async def aclose(self) -> None:
        """Close every worker client's sessions."""
        for client in self._clients.values():
            await client.aclose()
        if self._router is not None:
            await self._router.aclose()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _close_all(clients: list[InferenceHTTPClient]) -> None:
    for client in clients:
        client.close()
