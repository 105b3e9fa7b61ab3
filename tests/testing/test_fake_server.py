"""The httptools socket server + FakeServer, over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import anyio
import httpx
import pytest
from fake_helpers import sse_events, wait_for

from rlinf_http.testing import FakeConfig, FakeServer, FakeSGLangApp, FaultSpec, serve_asgi


def _raw_exchange(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_basic_roundtrip_and_keepalive(server: FakeServer, http: httpx.Client) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.port > 0
    for i in range(5):
        r = http.post(
            server.url + "/generate",
            json={"text": "a", "sampling_params": {"max_new_tokens": i + 1}},
        )
        assert r.status_code == 200
        assert r.json()["text"] == FakeSGLangApp.output_text(i + 1)
        assert r.headers["content-length"] == str(len(r.content))
    assert http.get(server.url + "/health").status_code == 200
    assert server.connections_opened == 1  # one connection reused for all requests


def test_chunked_request_body_and_pipelining(server: FakeServer) -> None:
    body = json.dumps({"text": "a b c", "sampling_params": {"max_new_tokens": 2}}).encode()
    half = len(body) // 2
    req1 = (
        b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (half, body[:half])
        + b"%x\r\n%s\r\n" % (len(body) - half, body[half:])
        + b"0\r\n\r\n"
    )
    req2 = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = _raw_exchange(server.port, req1 + req2)  # pipelined; second closes
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK")
    headers = first.split(b"\r\n")
    clen = next(h for h in headers if h.lower().startswith(b"content-length"))
    length = int(clen.split(b":")[1])
    payload = json.loads(rest[:length])
    assert payload["meta_info"]["prompt_tokens"] == 3
    second = rest[length:]
    assert second.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in second.lower()
    assert server.app.stats["last_bodies"]["/generate"]["text"] == "a b c"


def test_connection_close_honoured(server: FakeServer) -> None:
    raw = _raw_exchange(
        server.port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert b"fake-model" in raw  # full response, then the server closed the socket


def test_http10_closes(server: FakeServer) -> None:
    raw = _raw_exchange(server.port, b"GET /health HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK")


def test_bad_request_line(server: FakeServer) -> None:
    raw = _raw_exchange(server.port, b"THIS IS NOT HTTP\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400")


def test_large_body(server: FakeServer, http: httpx.Client) -> None:
    ids = list(range(200_000))
    r = http.post(
        server.url + "/generate", json={"input_ids": ids, "sampling_params": {"max_new_tokens": 1}}
    )
    assert r.status_code == 200
    assert r.json()["meta_info"]["prompt_tokens"] == len(ids)


def test_sse_arrives_incrementally(http: httpx.Client) -> None:
    with FakeServer(config=FakeConfig(itl_s=0.1)) as srv:
        arrivals: list[float] = []
        lines: list[str] = []
        body = {"text": "a", "stream": True, "sampling_params": {"max_new_tokens": 5}}
        t0 = time.monotonic()
        with http.stream("POST", srv.url + "/generate", json=body) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers.get("transfer-encoding") == "chunked"
            for line in r.iter_lines():
                if line:
                    lines.append(line)
                    arrivals.append(time.monotonic() - t0)
    assert lines[-1] == "data: [DONE]"
    assert len(lines) == 6
    # first chunk long before the last one: events were flushed one by one
    assert arrivals[3] - arrivals[0] >= 0.2
    assert arrivals[0] < arrivals[-1] - 0.25


def test_client_disconnect_aborts_stream(http: httpx.Client) -> None:
    with FakeServer(config=FakeConfig(itl_s=0.02)) as srv:
        app: FakeSGLangApp = srv.app
        body = {"text": "a", "stream": True, "sampling_params": {"max_new_tokens": 100000}}
        with http.stream("POST", srv.url + "/generate", json=body) as r:
            it = r.iter_lines()
            got = [ln for _, ln in zip(range(4), it, strict=False)]
            assert any(ln.startswith("data: {") for ln in got)
            assert app.running_requests == 1
            # leaving the block without reading everything closes the connection
            r.close()
        wait_for(lambda: app.running_requests == 0, what="generation to stop")
        wait_for(lambda: app.stats["disconnects"] == 1, what="disconnect counted")
        assert app.stats["in_flight"] == 0


def test_client_timeout_aborts_non_stream() -> None:
    with FakeServer(config=FakeConfig(itl_s=0.05)) as srv:
        app: FakeSGLangApp = srv.app
        with httpx.Client(trust_env=False, timeout=httpx.Timeout(5.0, read=0.2)) as c:
            with pytest.raises(httpx.ReadTimeout):
                c.post(
                    srv.url + "/generate",
                    json={"text": "a", "sampling_params": {"max_new_tokens": 1000}},
                )
        wait_for(lambda: app.stats["disconnects"] == 1, what="disconnect counted")
        assert app.running_requests == 0


def test_drop_connection_fault(server: FakeServer, http: httpx.Client) -> None:
    server.app.faults.add(FaultSpec(path="/generate", drop=True))
    with pytest.raises(httpx.TransportError):
        http.post(server.url + "/generate", json={"text": "a"})
    # next request (new connection) works
    assert http.post(server.url + "/generate", json={"text": "a"}).status_code == 200
    assert server.app.stats["requests"]["/generate"] == 2


def test_truncate_stream_fault(server: FakeServer, http: httpx.Client) -> None:
    server.app.faults.add(FaultSpec(path="/generate", truncate_stream_after=2))
    lines: list[str] = []
    body = {"text": "a", "stream": True, "sampling_params": {"max_new_tokens": 10}}
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", server.url + "/generate", json=body) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line:
                    lines.append(line)
    assert len(lines) == 2 and "data: [DONE]" not in lines


def test_stream_error_fault_over_socket(server: FakeServer, http: httpx.Client) -> None:
    server.app.faults.add(FaultSpec(path="/generate", stream_error_after=1))
    r = http.post(server.url + "/generate", json={"text": "a", "stream": True})
    ev = sse_events(r.text)
    assert ev[1]["error"]["code"] == 500 and ev[2] == "[DONE]"


def test_hang_fault_until_disconnect(server: FakeServer) -> None:
    server.app.faults.add(FaultSpec(path="/health", hang=True))
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(5.0, read=0.3)) as c:
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            c.get(server.url + "/health")
        assert time.monotonic() - t0 < 3
        wait_for(lambda: server.app.stats["disconnects"] == 1, what="hang released")
        assert c.get(server.url + "/health").status_code == 200


def test_status_fault_with_retry_after_over_http_api(
    server: FakeServer, http: httpx.Client
) -> None:
    r = http.post(
        server.url + "/_fake/faults",
        json={"path": "/generate", "status": 503, "headers": {"Retry-After": "3"}, "times": 2},
    )
    assert r.status_code == 200
    codes = [http.post(server.url + "/generate", json={"text": "a"}).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    r = http.get(server.url + "/_fake/stats").json()
    assert r["requests"]["/generate"] == 3


def test_fault_delay(server: FakeServer, http: httpx.Client) -> None:
    server.app.faults.add(FaultSpec(path="/health", delay_s=0.2, status=500))
    t0 = time.monotonic()
    assert http.get(server.url + "/health").status_code == 500
    assert time.monotonic() - t0 >= 0.18


def test_concurrency_and_in_flight(http: httpx.Client) -> None:
    with FakeServer(config=FakeConfig(ttft_s=0.2)) as srv:
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                with httpx.Client(trust_env=False, timeout=10) as c:
                    assert c.post(srv.url + "/generate", json={"text": "a"}).status_code == 200
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors
        assert srv.app.stats["max_in_flight"] >= 2
        wait_for(lambda: srv.app.stats["in_flight"] == 0, what="in_flight back to 0")


def _ipv6_loopback_ok() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback_ok(), reason="IPv6 loopback (::1) not available")
def test_ipv6(http: httpx.Client) -> None:
    with FakeServer(host="::1") as srv:
        assert srv.url == f"http://[::1]:{srv.port}"
        r = http.post(
            srv.url + "/generate", json={"text": "a", "sampling_params": {"max_new_tokens": 1}}
        )
        assert r.status_code == 200


def test_stop_closes_open_connections() -> None:
    srv = FakeServer(config=FakeConfig(itl_s=0.05)).start()
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            with httpx.Client(trust_env=False, timeout=10) as c:
                body = {"text": "a", "stream": True, "sampling_params": {"max_new_tokens": 100000}}
                with c.stream("POST", srv.url + "/generate", json=body) as r:
                    for _ in r.iter_lines():
                        pass
        except httpx.TransportError as e:
            errors.append(e)

    t = threading.Thread(target=stream)
    t.start()
    wait_for(lambda: srv.app.running_requests == 1, what="stream started")
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 5
    t.join(5)
    assert not t.is_alive()
    assert errors, "client should see the connection closed"
    with pytest.raises(httpx.ConnectError), httpx.Client(trust_env=False, timeout=2) as c:
        c.get(srv.url + "/health")


# ------------------------------------------------------------------- framing with custom apps


def _app_factory(kind: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        headers = [(b"content-type", b"text/plain")]
        if kind == "explicit":
            headers.append((b"content-length", b"5"))
            await send({"type": "http.response.start", "status": 201, "headers": headers})
            await send({"type": "http.response.body", "body": b"hel", "more_body": True})
            await send({"type": "http.response.body", "body": b"lo"})
        elif kind == "single":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"hello"})
        elif kind == "chunked":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"he", "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": True})
            await send({"type": "http.response.body", "body": b"llo", "more_body": False})
        elif kind == "error":
            raise RuntimeError("boom")

    return app


@pytest.mark.parametrize(
    ("kind", "status", "length", "chunked"),
    [("explicit", 201, "5", False), ("single", 200, "5", False), ("chunked", 200, None, True)],
)
def test_response_framing(
    kind: str, status: int, length: str | None, chunked: bool, http: httpx.Client
) -> None:
    with FakeServer(_app_factory(kind)) as srv:
        for _ in range(2):  # keep-alive still works after each framing mode
            r = http.get(srv.url + "/")
            assert r.status_code == status
            assert r.text == "hello"
            assert r.headers.get("content-length") == length
            assert (r.headers.get("transfer-encoding") == "chunked") is chunked
        assert srv.connections_opened == 1


def test_app_exception_gives_500(http: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with FakeServer(_app_factory("error")) as srv:
        r = http.get(srv.url + "/")
        assert r.status_code == 500
    assert any("ASGI app raised" in rec.message for rec in caplog.records)


def test_serve_asgi_directly() -> None:
    async def main() -> dict[str, Any]:
        ports: list[int] = []
        app = FakeSGLangApp()
        task = asyncio.create_task(serve_asgi(app, "127.0.0.1", 0, ready=ports.append))
        for _ in range(200):
            if ports:
                break
            await asyncio.sleep(0.01)
        assert ports and ports[0] > 0
        async with httpx.AsyncClient(trust_env=False, timeout=5) as c:
            r = await c.get(f"http://127.0.0.1:{ports[0]}/get_server_info")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        data: dict[str, Any] = r.json()
        return data

    assert asyncio.run(main())["served_model_name"] == "fake-model"


@pytest.mark.anyio
async def test_async_client_against_socket_server(server: FakeServer) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as c:
        body = {"text": ["a", "b"], "stream": True, "sampling_params": {"max_new_tokens": 3}}
        async with c.stream("POST", server.url + "/generate", json=body) as r:
            events = [ln async for ln in r.aiter_lines() if ln]
        assert events[-1] == "data: [DONE]"
        codes: list[int] = []

        async def one() -> None:
            codes.append((await c.post(server.url + "/generate", json={"text": "a"})).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
    assert codes == [200] * 10
    assert server.app.stats["requests"]["/generate"] == 11
