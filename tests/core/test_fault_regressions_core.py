"""Issue 9 regressions in the sans-I/O core: SSE ``retry:``, deep error bodies, retry marks."""

from __future__ import annotations

import httpx
import pytest

from rlinf_http import APIConnectionError, BadRequestError, RetryPolicy, ServiceUnavailableError
from rlinf_http._core.responses import (
    RawResponse,
    error_details,
    retry_delay_after_error,
    status_error,
)
from rlinf_http._core.sse import SSEDecoder
from rlinf_http._core.streams import GenerateStreamParser

URL = "http://h/generate"

# -- item 4: SSE retry fields ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",  # superscript two: str.isdigit() accepts it, int() does not
        "\u0663",  # Arabic-Indic three: int() accepts it, but it is not an ASCII digit
        "9" * 5000,  # beyond int()'s digit limit
        "12a",
        "",
    ],
    ids=["superscript", "arabic-indic", "5000-digits", "trailing-letter", "empty"],
)
def test_malformed_retry_field_is_ignored(value: str) -> None:
    decoder = SSEDecoder()
    wire = f"retry: 1500\n\nretry: {value}\ndata: x\n\n".encode()
    events = decoder.feed(wire)
    assert [(e.data, e.retry) for e in events] == [("x", 1500)]  # the earlier value stays


def test_valid_retry_field_is_kept() -> None:
    events = SSEDecoder().feed(b"retry: 250\ndata: x\n\n")
    assert [(e.data, e.retry) for e in events] == [("x", 250)]


def test_stream_parser_survives_malformed_retry_fields() -> None:
    parser = GenerateStreamParser(url=URL)
    chunk = b'data: {"text": "a", "output_ids": [1], "meta_info": {"completion_tokens": 1}}\n\n'
    wire = b"retry: \xc2\xb2\n\n" + chunk + b"retry: " + b"7" * 5000 + b"\n\n" + b"data: [DONE]\n\n"
    assert [c.text for c in parser.feed(wire)] == ["a"]
    assert parser.done


# -- item 5: error bodies too deeply nested to parse -----------------------------------

DEEP = b"[" * 5000


def test_deeply_nested_error_body_is_kept_as_text() -> None:
    body, message, code = error_details(DEEP, {})
    assert body == DEEP.decode()
    assert message == DEEP.decode()
    assert code is None


@pytest.mark.parametrize(
    ("status", "error"), [(400, BadRequestError), (503, ServiceUnavailableError)]
)
def test_status_error_for_deeply_nested_body(status: int, error: type[Exception]) -> None:
    raw = RawResponse("POST", URL, status, {"content-type": "application/json"}, DEEP)
    exc = status_error(raw)
    assert isinstance(exc, error)
    assert exc.body == DEEP.decode() and exc.raw_body == DEEP


def test_deep_error_event_in_stream_is_typed() -> None:
    from rlinf_http import StreamErrorEvent

    parser = GenerateStreamParser(url=URL)
    with pytest.raises(StreamErrorEvent):
        parser.feed(b'data: {"error": ' + b"[" * 200 + b"]" * 200 + b"}\n\n")


# -- items 1 and 6: what the transports mark on a failure -----------------------------

POLICY = RetryPolicy(max_retries=2, initial_delay=0.5, jitter=0.0)


def _marked(exc: Exception, **marks: bool) -> Exception:
    for name, value in marks.items():
        setattr(exc, name, value)
    return exc


def test_response_started_is_never_retried() -> None:
    exc = _marked(httpx.RemoteProtocolError("Malformed HTTP response"), response_started=True)
    with pytest.raises(APIConnectionError):
        retry_delay_after_error(POLICY, 0, exc, "POST", URL)


def test_stale_connection_is_retried_at_once_but_counted() -> None:
    exc = _marked(httpx.ReadError("reset"), stale_connection=True)
    assert retry_delay_after_error(POLICY, 0, exc, "POST", URL) == 0.0
    assert retry_delay_after_error(POLICY, 1, exc, "POST", URL) == 0.0
    with pytest.raises(APIConnectionError):  # the policy's budget still applies
        retry_delay_after_error(POLICY, 2, exc, "POST", URL)
    with pytest.raises(APIConnectionError):
        retry_delay_after_error(POLICY.with_max_retries(0), 0, exc, "POST", URL)


def test_unmarked_connection_error_waits_for_backoff() -> None:
    assert retry_delay_after_error(POLICY, 0, httpx.ReadError("reset"), "POST", URL) == 0.5
