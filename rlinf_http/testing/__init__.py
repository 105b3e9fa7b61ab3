"""Testing utilities: a fake SGLang server (ASGI app + socket server) and a
launcher for the real gateways (smg 1.13 and ``sglang-router`` 0.3.2).

Quick start::

    import httpx
    from rlinf_http.testing import FakeSGLangApp, FakeServer, FaultSpec

    app = FakeSGLangApp()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://fake")

    with FakeServer() as srv:  # real sockets, background thread
        httpx.post(srv.url + "/generate", json={"text": "hi"})

pytest users can load the fixtures with
``pytest_plugins = ["rlinf_http.testing.pytest_plugin"]``.
"""

from ._app import DropConnection, FakeConfig, FakeSGLangApp, FaultSpec
from ._remote import (
    FakeServerError,
    add_faults,
    async_add_faults,
    async_clear_faults,
    async_pending_faults,
    clear_faults,
    control_state,
    pending_faults,
)
from ._router import Gateway, RouterProcess, launch_router, router_available, smg_available
from ._server import FakeServer, FakeWorkerProcess, serve_asgi, start_fake_worker

__all__ = [
    "DropConnection",
    "FakeConfig",
    "FakeSGLangApp",
    "FakeServer",
    "FakeServerError",
    "FakeWorkerProcess",
    "FaultSpec",
    "RouterProcess",
    "Gateway",
    "smg_available",
    "add_faults",
    "async_add_faults",
    "async_clear_faults",
    "async_pending_faults",
    "clear_faults",
    "control_state",
    "launch_router",
    "pending_faults",
    "router_available",
    "serve_asgi",
    "start_fake_worker",
]
