"""Shared pytest configuration: async tests run on asyncio and trio (anyio plugin).

``gateway`` (module-scoped) runs a router-tier module against smg 1.13 and
sglang-router 0.3.2 (see tests/gateways.py); a gateway that is not installed skips.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest
from gateways import GATEWAYS, gateway_available
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# A run writes nothing into the checkout: hypothesis keeps its example database
# and caches in .hypothesis/ of the working directory unless told otherwise.
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="rlinf-hypothesis-")
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
settings.register_profile("rlinf-http", database=None)
settings.load_profile("rlinf-http")

# Started in the background of a non-interactive shell (``cmd &``, nohup), the
# suite inherits SIGINT *ignored*, and so would every program a test starts: the
# Ctrl-C tests would then test nothing but the ignore. A Python-level handler is
# not inherited across exec, so the children get the default (KeyboardInterrupt).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=GATEWAYS)
def gateway(request: pytest.FixtureRequest) -> str:
    """``"smg"`` or ``"sglang-router"``: start it with ``gateways.start_gateway``."""
    name = str(request.param)
    if not gateway_available(name):
        pytest.skip(f"{name} is not installed")
    return name


@pytest.fixture
def hanging_address() -> Iterator[tuple[str, int]]:
    """A loopback address where connect() hangs: listen(0) with the backlog taken."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    # Make sure the trick works on this kernel; otherwise the test cannot mean anything.
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
    except (TimeoutError, OSError):
        pass
    else:
        probe.close()
        listener.close()
        for filler in fillers:
            filler.close()
        pytest.skip("this kernel accepts connections beyond a full listen(0) backlog")
    probe.close()
    try:
        yield "127.0.0.1", port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
