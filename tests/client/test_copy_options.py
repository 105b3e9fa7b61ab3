"""``ClientOptions`` and ``client.copy()``: settings as one frozen, checked value."""

from __future__ import annotations

import dataclasses
import pickle

import httpx
import pytest
import respx

from rlinf_http import ClientOptions, InferenceHTTPClient, InvalidRequestError, RetryPolicy


def test_options_are_frozen_and_checked() -> None:
    client = InferenceHTTPClient("http://127.0.0.1:30000/", connect_timeout=3, max_retries=5)
    opts = client.options
    assert opts.base_url == "http://127.0.0.1:30000"
    assert opts.retry_policy.max_retries == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.base_url = "x"  # type: ignore[misc]
    with pytest.raises(InvalidRequestError):
        ClientOptions("http://h", max_connections=0)
    with pytest.raises(InvalidRequestError):
        ClientOptions("http://h", transport="nope")  # type: ignore[arg-type]


def test_copy_keeps_settings_and_overrides() -> None:
    policy = RetryPolicy(max_retries=4, initial_delay=0.01)
    client = InferenceHTTPClient(
        "http://127.0.0.1:30000",
        connect_timeout=2.0,
        headers={"x-team": "rl"},
        api_key="k1",
        retry_policy=policy,
        transport="httpx",
        health_timeout=1.5,
    )
    other = client.copy(base_url="http://127.0.0.1:31000", max_retries=1, headers={"x-b": "2"})
    assert type(other) is InferenceHTTPClient
    assert other.base_url == "http://127.0.0.1:31000"
    assert other.connect_timeout == 2.0
    assert other.transport == "httpx"
    assert other.health_timeout == 1.5
    assert other.retry_policy.max_retries == 1
    assert other.retry_policy.initial_delay == 0.01
    assert other.options.header_map()["x-team"] == "rl"
    assert other.options.header_map()["x-b"] == "2"
    assert other.options.header_map()["authorization"] == "Bearer k1"
    # the original is untouched
    assert client.base_url == "http://127.0.0.1:30000"
    assert "x-b" not in client.options.header_map()
    dropped = client.copy(headers={"x-team": None})
    assert "x-team" not in dropped.options.header_map()


def test_copy_checks_before_io() -> None:
    client = InferenceHTTPClient("http://127.0.0.1:30000")
    with pytest.raises(InvalidRequestError):
        client.copy(connect_timeout=-1)
    with pytest.raises(InvalidRequestError, match="unknown client option"):
        client.copy(conect_timeout=1)
    with pytest.raises(InvalidRequestError):
        client.copy(base_url="ftp://x")


@respx.mock(assert_all_called=True)
def test_copy_sends_with_copied_headers(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get("http://127.0.0.1:31000/model_info").mock(
        return_value=httpx.Response(200, json={"model_path": "m"})
    )
    client = InferenceHTTPClient("http://127.0.0.1:30000", api_key="k", transport="httpx")
    with client.copy(base_url="http://127.0.0.1:31000") as other:
        assert other.model_info().model_path == "m"
    assert route.calls.last.request.headers["authorization"] == "Bearer k"


def test_copy_pickles_and_from_options_round_trips() -> None:
    client = InferenceHTTPClient("http://127.0.0.1:30000", max_retries=3)
    again = pickle.loads(pickle.dumps(client.copy(base_url="http://127.0.0.1:30001")))
    assert again.base_url == "http://127.0.0.1:30001"
    assert again.retry_policy.max_retries == 3
    rebuilt = InferenceHTTPClient.from_options(again.options)
    assert rebuilt.options == again.options
