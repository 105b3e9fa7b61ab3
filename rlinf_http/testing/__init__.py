"""Testing utilities: a fake SGLang server (ASGI app + socket server) and a
launcher for the real ``sglang-router``.

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
from ._router import Gateway, RouterProcess, launch_router, router_available, smg_available
from ._server import FakeServer, FakeWorkerProcess, serve_asgi, start_fake_worker

__all__ = [
    "DropConnection",
    "FakeConfig",
    "FakeSGLangApp",
    "FakeServer",
    "FakeWorkerProcess",
    "FaultSpec",
    "RouterProcess",
    "Gateway",
    "smg_available",
    "launch_router",
    "router_available",
    "serve_asgi",
    "start_fake_worker",
]
