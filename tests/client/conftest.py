"""Tiny loopback servers for socket-level client tests.

``RawHTTPServer`` is a threaded HTTP/1.1 server with keep-alive that counts
accepted connections and echoes ``/generate`` prompts, with optional per-request
delays. ``hanging_address`` is a listening socket whose backlog is full, so
further connects hang (Linux drops the SYNs). ``closed_port`` has no listener.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int


Handler = Callable[[SeenRequest], tuple[int, dict[str, str], bytes]]


def gen_response(text: str, rid: str = "r") -> dict[str, Any]:
    return {
        "text": text,
        "output_ids": [1000, 1001],
        "meta_info": {
            "id": rid,
            "finish_reason": {"type": "length", "length": 2},
            "prompt_tokens": 3,
            "completion_tokens": 2,
        },
    }


def echo_handler(req: SeenRequest) -> tuple[int, dict[str, str], bytes]:
    """``/generate`` and chat echo the prompt; ``/health`` is 200; else echo the JSON body."""
    if req.path == "/health":
        return 200, {}, b""
    payload = json.loads(req.body or b"null")
    if req.path == "/generate" and isinstance(payload, dict):
        out = gen_response("echo:" + str(payload.get("text")), str(payload.get("rid", "r")))
        return 200, {"content-type": "application/json"}, json.dumps(out).encode()
    if req.path == "/v1/chat/completions" and isinstance(payload, dict):
        content = "echo:" + str(payload["messages"][-1]["content"])
        chat = {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": payload.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return 200, {"content-type": "application/json"}, json.dumps(chat).encode()
    return 200, {"content-type": "application/json"}, json.dumps({"echo": payload}).encode()


@dataclass
class RawHTTPServer:
    handler: Handler = echo_handler
    #: seconds to wait before answering, per path (``float("inf")``: never answer)
    delays: dict[str, float] = field(default_factory=dict)
    #: delays consumed by the next requests (first in, first out), any path
    next_delays: list[float] = field(default_factory=list)
    connections: int = 0
    requests: list[SeenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                conn_id = self.connections
                self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn, conn_id), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, conn_id: int) -> None:
        buf = b""
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                body, buf = buf[:length], buf[length:]
                req = SeenRequest(method, target, headers, body, conn_id)
                with self._lock:
                    self.requests.append(req)
                if not self._respond(conn, req):
                    return

    def _respond(self, conn: socket.socket, req: SeenRequest) -> bool:
        """Answer ``req``; False ends the connection (subclasses misbehave here)."""
        with self._lock:
            delay = self.next_delays.pop(0) if self.next_delays else None
        if delay is None:
            delay = self.delays.get(req.path, 0.0)
        if delay > 0:
            # Wait, but notice the client going away or the server stopping.
            deadline = time.monotonic() + delay
            conn.settimeout(0.05)
            while time.monotonic() < deadline and not self._stop.is_set():
                try:
                    data = conn.recv(1, socket.MSG_PEEK)
                except TimeoutError:
                    continue
                if data == b"":
                    return False
                time.sleep(0.05)
            conn.settimeout(None)
            if self._stop.is_set():
                return False
        status, extra, payload = self.handler(req)
        out = [f"HTTP/1.1 {status} X", f"content-length: {len(payload)}"]
        out += [f"{k}: {v}" for k, v in extra.items()]
        conn.sendall(("\r\n".join(out) + "\r\n\r\n").encode() + payload)
        return True

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._accept_thread.join(2)
        for thread in self._threads:
            thread.join(2)


@pytest.fixture
def raw_server() -> Iterator[RawHTTPServer]:
    server = RawHTTPServer()
    try:
        yield server
    finally:
        server.close()


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


@pytest.fixture
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
