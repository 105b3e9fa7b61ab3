"""Tests of rlinf_http._proxy.no_proxy_env."""

from __future__ import annotations

import os

import pytest

from rlinf_http._proxy import PROXY_ENV_VARS, no_proxy_env

ALL_NAMES = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Start every test from a known state; monkeypatch restores the real env afterwards.
    for name in ALL_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def test_covers_all_six_names() -> None:
    assert sorted(PROXY_ENV_VARS) == sorted(ALL_NAMES)


def test_variables_removed_inside_and_restored_after(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {name: f"http://proxy-{i}.example:3128" for i, name in enumerate(ALL_NAMES)}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    with no_proxy_env():
        for name in ALL_NAMES:
            assert name not in os.environ
        # Unrelated variables are untouched.
        assert os.environ["NO_PROXY"] == "127.0.0.1,localhost"
    for name, value in values.items():
        assert os.environ[name] == value


def test_restored_after_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://p:1")
    monkeypatch.setenv("ALL_PROXY", "socks5://p:2")
    with pytest.raises(RuntimeError, match="boom"), no_proxy_env():
        assert "https_proxy" not in os.environ
        raise RuntimeError("boom")
    assert os.environ["https_proxy"] == "http://p:1"
    assert os.environ["ALL_PROXY"] == "socks5://p:2"


def test_absent_variables_stay_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://p:1")
    with no_proxy_env():
        # The block sets variables that were absent before: they must go away.
        os.environ["HTTPS_PROXY"] = "http://leak:1"
        os.environ["http_proxy"] = "http://changed:1"
    assert "HTTPS_PROXY" not in os.environ
    assert os.environ["http_proxy"] == "http://p:1"
    for name in ALL_NAMES:
        if name != "http_proxy":
            assert name not in os.environ


def test_absent_variables_stay_absent_after_exception() -> None:
    with pytest.raises(KeyError), no_proxy_env():
        os.environ["all_proxy"] = "x"
        raise KeyError("k")
    assert "all_proxy" not in os.environ


def test_empty_string_value_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "")
    with no_proxy_env():
        assert "HTTP_PROXY" not in os.environ
    assert os.environ["HTTP_PROXY"] == ""


def test_nested_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://p:1")
    with no_proxy_env():
        with no_proxy_env():
            assert "http_proxy" not in os.environ
        assert "http_proxy" not in os.environ
    assert os.environ["http_proxy"] == "http://p:1"
