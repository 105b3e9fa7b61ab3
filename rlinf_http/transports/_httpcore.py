"""httpx's own transports, with reads watched for response bytes and read deadlines.

The client's sessions on httpx's transports (``transport="httpx"``, and trio
under ``"auto"``) wrap httpcore's network backend so that the retry policy
learns, as with our transports, whether any response byte arrived before a
failure (:func:`._wire.watch_arrival`), and so that sync reads honour
:func:`._wire.read_deadline`.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from ._wire import READ_DEADLINE_EXTENSION, note_arrival, read_timeout_within_deadline

__all__ = ["honours_read_deadline", "watched_async_transport", "watched_transport"]


def _bounded(timeout: float | None) -> float | None:
    bounded = read_timeout_within_deadline(timeout)
    if bounded is not None and bounded <= 0:
        raise httpcore.ReadTimeout("Timed out while receiving data from the host.")
    return bounded


class _Stream(httpcore.NetworkStream):
    __slots__ = ("_inner",)

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, _bounded(timeout))
        if data:
            note_arrival()
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncStream(httpcore.AsyncNetworkStream):
    __slots__ = ("_inner",)

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._inner.read(max_bytes, timeout)
        if data:
            note_arrival()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _AsyncStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _AsyncStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _AsyncStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def honours_read_deadline(response: httpx.Response) -> bool:
    """Whether the sync reads of ``response``'s body honour :func:`._wire.read_deadline`.

    True for our sync transport and for httpx's through a watched backend.
    """
    extensions = response.extensions
    return bool(extensions.get(READ_DEADLINE_EXTENSION)) or isinstance(
        extensions.get("network_stream"), _Stream
    )


def _wrap_backend(transport: Any, wrapper: Any) -> None:
    # httpx has no public way to pass httpcore a network backend: wrap the one its
    # pool holds. Should a future httpx move it, the transport still works, only
    # without the watch (failures are then classified by their type alone).
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is not None:
        pool._network_backend = wrapper(backend)  # type: ignore[union-attr]


def watched_transport(limits: httpx.Limits) -> httpx.HTTPTransport:
    """httpx's sync transport (no environment settings) with a watched backend."""
    transport = httpx.HTTPTransport(limits=limits, trust_env=False)
    _wrap_backend(transport, _Backend)
    return transport


def watched_async_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's async transport (no environment settings) with a watched backend."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    _wrap_backend(transport, _AsyncBackend)
    return transport
