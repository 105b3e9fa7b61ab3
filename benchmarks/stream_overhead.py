"""Per-event client cost of reading SSE streams.

    python benchmarks/stream_overhead.py [--quick] [--out DIR]

The built-in server (``benchmarks/_server.py``) answers ``GET /stream?n=N`` with N
small ``data: {...}`` events, each written as its own chunk.  Each client runs in
its own subprocess, reads ``--streams`` concurrent streams line by line (what an
SSE consumer does), and reports client CPU µs per event and events/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from client_overhead import _raise_nofile, _stop, _usage  # noqa: E402

KINDS = {
    "ours_lines": "rlinf AsyncTransport, httpx aiter_lines",
    "ours_raw": "rlinf AsyncTransport, httpx aiter_raw",
    "httpx_lines": "httpx default transport, aiter_lines",
    "aiohttp_lines": "aiohttp, async for line in content",
}


async def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    kind, url, streams, events = spec["kind"], spec["url"], spec["streams"], spec["events"]
    if kind.startswith("aiohttp"):
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def one() -> int:
            count = 0
            async with session.get(url) as response:
                async for line in response.content:
                    if line.startswith(b"data:"):
                        count += 1
            return count

        close = session.close
    else:
        import httpx

        if kind.startswith("ours"):
            from rlinf_http.transports import AsyncTransport

            client = httpx.AsyncClient(transport=AsyncTransport(), timeout=None)
        else:
            client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=None))
        raw = kind == "ours_raw"

        async def one() -> int:
            count = 0
            async with client.stream("GET", url) as response:
                if raw:
                    async for chunk in response.aiter_raw():
                        count += chunk.count(b"data:")
                else:
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            count += 1
            return count

        close = client.aclose

    await asyncio.gather(*[one() for _ in range(streams)])  # warm-up
    cpu0 = _usage()
    t0 = time.perf_counter()
    counts = await asyncio.gather(*[one() for _ in range(streams)])
    elapsed = time.perf_counter() - t0
    cpu = _usage() - cpu0
    await close()
    total = sum(counts)
    expected = streams * (events + 1)
    return {
        "events": total,
        "expected": expected,
        "elapsed": elapsed,
        "cpu_us_per_event": cpu / max(total, 1) * 1e6,
        "events_per_s": total / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="SSE per-event client overhead")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import asyncio

        _raise_nofile()
        print("RESULT " + json.dumps(asyncio.run(_worker(json.loads(args.worker)))), flush=True)
        return

    events = 2000 if args.quick else 10000
    tmp = Path(tempfile.mkdtemp(prefix="rlinf-stream-"))
    portfile = tmp / "port"
    server = subprocess.Popen([sys.executable, str(HERE / "_server.py"), str(portfile)])
    results = []
    try:
        deadline = time.monotonic() + 10
        while not portfile.exists() or not portfile.read_text():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("stream server failed to start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{portfile.read_text()}/stream?n={events}"
        for kind in KINDS:
            spec = {"kind": kind, "url": url, "streams": args.streams, "events": events}
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                print(f"  !! {kind} timed out")
                continue
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"  !! {kind} failed:\n{proc.stderr[-800:]}")
                continue
            result = {**spec, **json.loads(line[7:])}
            results.append(result)
            print(
                f"  {KINDS[kind]:45s} {result['cpu_us_per_event']:7.2f} µs CPU/event "
                f"{result['events_per_s']:12,.0f} events/s  ({result['events']}/"
                f"{result['expected']} events)",
                flush=True,
            )
    finally:
        _stop(server)
        portfile.unlink(missing_ok=True)
        tmp.rmdir()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stream_overhead.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'stream_overhead.json'}")


if __name__ == "__main__":
    main()
