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
