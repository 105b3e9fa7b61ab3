"""Sans-I/O request serialisation and response parsing."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlinf_http.transports._http11 import ResponseParser, encode_request, origin_of


def parse(chunks: list[bytes], is_head: bool = False, eof: bool = False) -> ResponseParser:
    parser = ResponseParser(is_head)
    for chunk in chunks:
        parser.feed(chunk)
    if eof:
        parser.feed_eof()
    return parser


# -- requests ------------------------------------------------------------------------------
def test_encode_request_small_body_in_one_piece() -> None:
    request = httpx.Request("POST", "http://h:8000/generate?x=1", content=b"{}")
    head = encode_request(request)
    assert head.stream is None and not head.chunked and head.replayable
    assert head.data.startswith(b"POST /generate?x=1 HTTP/1.1\r\nHost: h:8000\r\n")
    assert head.data.endswith(b"Content-Length: 2\r\n\r\n{}")


def test_encode_request_adds_host_when_missing() -> None:
    request = httpx.Request("GET", "http://[::1]:81/", stream=httpx.ByteStream(b""))
    head = encode_request(request)
    assert b"\r\nHost: [::1]:81\r\n" in head.data
    assert head.data.index(b"Host") < head.data.index(b"\r\n\r\n")


def test_encode_request_large_body_separate() -> None:
    body = b"x" * (1 << 20)
    head = encode_request(httpx.Request("POST", "http://h/", content=body))
    assert head.stream == body
    assert head.data.endswith(b"Content-Length: 1048576\r\n\r\n")


def test_encode_request_stream_is_chunked() -> None:
    def gen() -> object:
        yield b"a"

    head = encode_request(httpx.Request("POST", "http://h/", content=gen()))  # type: ignore[arg-type]
    assert head.chunked and not head.replayable
    assert b"Transfer-Encoding: chunked\r\n" in head.data


def test_encode_request_connection_close_and_head() -> None:
    request = httpx.Request("HEAD", "http://h/", headers={"Connection": "close"})
    head = encode_request(request)
    assert head.is_head and not head.keep_alive


def test_origin_of() -> None:
    assert origin_of(httpx.URL("https://a.b/x")) == ("https", "a.b", 443)
    assert origin_of(httpx.URL("http://[::1]:9/")) == ("http", "::1", 9)


# -- responses -----------------------------------------------------------------------------
def test_parse_content_length() -> None:
    p = parse([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"])
    assert p.complete and p.status_code == 200 and p.keep_alive
    assert p.reason_phrase == b"OK"
    assert p.headers == [(b"Content-Length", b"5"), (b"X-A", b"b")]
    assert p.take_body() == b"hello"


def test_parse_interim_100_continue_skipped() -> None:
    p = parse([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"])
    assert p.complete and p.status_code == 201 and p.reason_phrase == b"Created"
    assert p.headers == [(b"Content-Length", b"0")]


def test_parse_head_has_no_body() -> None:
    p = parse([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"], is_head=True)
    assert p.complete and p.take_body() == b""


@pytest.mark.parametrize("status", [204, 304])
def test_parse_no_body_statuses(status: int) -> None:
    p = parse([b"HTTP/1.1 %d X\r\n\r\n" % status])
    assert p.complete and p.keep_alive


def test_parse_close_delimited_and_http10() -> None:
    p = parse([b"HTTP/1.0 200 OK\r\n\r\nabc", b"def"], eof=True)
    assert p.complete and not p.keep_alive and p.http_version == b"HTTP/1.0"
    assert p.take_body() == b"abcdef"


def test_parse_connection_close() -> None:
    p = parse([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"])
    assert p.complete and not p.keep_alive


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"",
    ],
)
def test_parse_truncated(data: bytes) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        parse([data] if data else [], eof=True)


@pytest.mark.parametrize(
    "data",
    [b"garbage\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"],
)
def test_parse_garbage(data: bytes) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        parse([data])


def test_parse_trailing_data_marked() -> None:
    p = parse([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\n"])
    assert p.complete and p.trailing_data


def test_parse_upgrade_is_protocol_error_or_not_reusable() -> None:
    p = ResponseParser()
    try:
        p.feed(b"HTTP/1.1 101 Switching\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw")
    except httpx.RemoteProtocolError:
        return
    assert not p.keep_alive


# -- properties ----------------------------------------------------------------------------
header_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda s: (
        s.strip("-") == s and s.lower() not in {"content-length", "transfer-encoding", "connection"}
    )
)
header_value = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=20
)


def build(status: int, headers: list[tuple[str, str]], chunks: list[bytes], chunked: bool) -> bytes:
    head = [f"HTTP/1.1 {status} Reason Phrase"]
    head += [f"{k}: {v}" for k, v in headers]
    body = b"".join(chunks)
    if chunked:
        head.append("Transfer-Encoding: chunked")
        wire = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
        wire = body
    return ("\r\n".join(head) + "\r\n\r\n").encode() + wire


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from([200, 201, 400, 404, 500, 503]),
    headers=st.lists(st.tuples(header_name, header_value), max_size=8),
    chunks=st.lists(st.binary(min_size=0, max_size=300), max_size=6),
    chunked=st.booleans(),
    splits=st.lists(st.integers(min_value=0, max_value=4000), max_size=10),
)
def test_any_split_parses_identically(
    status: int,
    headers: list[tuple[str, str]],
    chunks: list[bytes],
    chunked: bool,
    splits: list[int],
) -> None:
    wire = build(status, headers, chunks, chunked)
    whole = parse([wire])
    points = sorted({s % (len(wire) + 1) for s in splits})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    split = parse([p for p in pieces if p])
    for p in (whole, split):
        assert p.complete and p.status_code == status
        assert p.reason_phrase == b"Reason Phrase"
        assert [(k.decode(), v.decode()) for k, v in p.headers[: len(headers)]] == [
            (k, v.strip()) for k, v in headers
        ]
    assert whole.take_body() == split.take_body() == b"".join(chunks)


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=70000), min_size=1, max_size=4))
def test_chunk_sizes(sizes: list[int]) -> None:
    chunks = [bytes([65 + i % 26]) * n for i, n in enumerate(sizes)]
    wire = build(200, [], chunks, chunked=True)
    p = parse([wire[i : i + 8192] for i in range(0, len(wire), 8192)])
    assert p.complete and p.take_body() == b"".join(chunks)
