"""Which gateway the embedded default starts (no process is started here)."""

from __future__ import annotations

import pytest

from rlinf_http import MissingDependencyError
from rlinf_http.bench import embedded
from rlinf_http.bench.embedded import EmbeddedTarget, default_gateway


def _installed(monkeypatch: pytest.MonkeyPatch, *, smg: bool, router: bool) -> None:
    monkeypatch.setattr(embedded, "smg_available", lambda: smg)
    monkeypatch.setattr(embedded, "router_available", lambda: router)


@pytest.mark.parametrize(
    ("smg", "router", "want"),
    [
        (True, True, "smg"),
        (True, False, "smg"),
        (False, True, "sglang-router"),
        (False, False, None),
    ],
)
def test_smg_first_then_sglang_router_then_direct(
    monkeypatch: pytest.MonkeyPatch, smg: bool, router: bool, want: str | None
) -> None:
    _installed(monkeypatch, smg=smg, router=router)
    assert default_gateway() == want
    target = EmbeddedTarget()
    assert target.gateway == want and target.use_router is (want is not None)
    assert EmbeddedTarget(use_router=False).gateway is None


def test_a_named_gateway_must_be_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed(monkeypatch, smg=False, router=True)
    with pytest.raises(MissingDependencyError, match=r"\.\[smg\]"):
        EmbeddedTarget(gateway="smg")
    assert EmbeddedTarget(gateway="sglang-router").gateway == "sglang-router"
    _installed(monkeypatch, smg=True, router=False)
    with pytest.raises(MissingDependencyError, match=r"\.\[router\]"):
        EmbeddedTarget(gateway="sglang-router")
    _installed(monkeypatch, smg=False, router=False)
    with pytest.raises(MissingDependencyError, match=r"\.\[smg\]"):
        EmbeddedTarget(use_router=True)


def test_bad_gateway_arguments() -> None:
    with pytest.raises(ValueError, match="smg or sglang-router"):
        EmbeddedTarget(gateway="nginx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="--no-router"):
        EmbeddedTarget(gateway="smg", use_router=False)


@pytest.mark.skipif(not embedded.smg_available(), reason="needs the smg extra")
def test_the_embedded_smg_has_its_rl_plane() -> None:
    import httpx

    with EmbeddedTarget(1) as target:
        assert target.router is not None and "--enable-rl" in target.router.command()
        assert target.info is not None and target.info.gateway == "smg"
        with httpx.Client(trust_env=False, timeout=10) as http:
            listed = http.get(target.url + "/v1/rl/workers").json()["workers"]
        assert [w["url"] for w in listed] == target.info.worker_urls
