"""``launch_router(gateway="smg")``: the real smg 1.13 binary, offline, in front of fake workers."""

from __future__ import annotations

import httpx
import pytest

from rlinf_http import MissingDependencyError
from rlinf_http.testing import RouterProcess, launch_router, smg_available, start_fake_worker

pytestmark = pytest.mark.skipif(not smg_available(), reason="needs the smg extra")


def test_smg_with_rl_plane_in_front_of_two_fake_workers() -> None:
    with start_fake_worker() as w1, start_fake_worker() as w2:
        with launch_router([w1.url, w2.url], gateway="smg", enable_rl=True) as gw:
            assert "--enable-rl" in gw.command()
            with httpx.Client(trust_env=False, timeout=10.0) as http:
                ready = http.get(gw.url + "/readiness").json()
                assert ready["healthy_workers"] == 2
                rl = http.get(gw.url + "/v1/rl/workers").json()
                assert sorted(w["url"] for w in rl["workers"]) == sorted([w1.url, w2.url])
                r = http.post(gw.url + "/generate", json={"text": "hi"})
                assert r.status_code == 200
                assert r.headers["x-smg-routed-worker-id"] in (w1.url, w2.url)
        proc = gw.proc
        assert proc is not None and proc.poll() is not None  # stopped with the block


def test_smg_without_rl_plane_answers_404_there() -> None:
    with start_fake_worker() as w1:
        with launch_router([w1.url], gateway="smg") as gw:
            with httpx.Client(trust_env=False, timeout=10.0) as http:
                assert http.get(gw.url + "/v1/rl/workers").status_code == 404


def test_bad_gateway_arguments() -> None:
    with pytest.raises(ValueError, match="gateway"):
        RouterProcess(["http://127.0.0.1:1"], gateway="nginx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="enable_rl"):
        RouterProcess(["http://127.0.0.1:1"], gateway="sglang-router", enable_rl=True)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import rlinf_http.testing._router as router_module

    monkeypatch.setattr(router_module, "smg_available", lambda: False)
    with pytest.raises(MissingDependencyError, match=r"\.\[smg\]"):
        launch_router(["http://127.0.0.1:1"], gateway="smg")


@pytest.mark.parametrize("gateway", ["smg", "sglang-router"])
def test_a_picked_port_taken_before_the_gateway_binds_it_is_picked_again(
    gateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The port launch_router picks is free when picked; another process may take it
    # before the gateway binds it (seen in the suite). The gateway then exits at once
    # with "Address already in use": it is started again on new ports.
    import socket

    from rlinf_http.testing import _router

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    taken = squatter.getsockname()[1]
    real = _router._free_port
    picks: list[int] = []

    def first_taken(host: str = "127.0.0.1") -> int:
        port = taken if not picks else real(host)
        picks.append(port)
        return port

    monkeypatch.setattr(_router, "_free_port", first_taken)
    try:
        with (
            start_fake_worker() as worker,
            launch_router([worker.url], gateway=gateway) as router,  # type: ignore[arg-type]
        ):
            assert router.port != taken
            assert httpx.get(router.url + "/health", timeout=10, trust_env=False).status_code == 200
        assert picks[0] == taken and len(picks) >= 4  # port + metrics port, twice
    finally:
        squatter.close()


def test_a_port_given_in_use_is_an_error_not_a_retry() -> None:
    import socket

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    try:
        with start_fake_worker() as worker, pytest.raises(RuntimeError, match="in use"):
            launch_router([worker.url], gateway="sglang-router", port=squatter.getsockname()[1])
    finally:
        squatter.close()
