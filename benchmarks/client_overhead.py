"""Client overhead benchmark: rlinf-http transports vs aiohttp, httpx and requests.

One command::

    python benchmarks/client_overhead.py [--quick] [--out DIR] [--profile KIND]

Starts a fast static server on loopback (nginx when available, else a built-in
asyncio+httptools server, with a loud warning), then runs every client in its own
subprocess at 1, 16, 256, 1024 and 4096 concurrent ``POST /generate`` requests
(async) and sequential / 8 threads (sync).  Reports req/s, client CPU per request
(getrusage of the client process), peak RSS and ratios; runs ``wrk`` at 256
connections for scale; writes ``results.json`` and ``client_overhead.png`` to
``--out`` (default ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _server import GENERATE_BODY  # noqa: E402

PAYLOAD = json.dumps(
    {
        "text": "Question: what is six times seven? Answer:",
        "sampling_params": {"temperature": 0.0, "max_new_tokens": 16},
        "return_logprob": False,
    }
).encode()
HEADERS = {"Content-Type": "application/json"}

ASYNC_KINDS = [
    "rlinf_typed",
    "rlinf_typed_httpx",
    "ours_client",
    "ours_direct",
    "ours_raw",
    "aiohttp",
    "httpx_default",
]
SYNC_KINDS = ["rlinf_typed_sync", "ours_sync", "requests", "httpx_sync"]
CONCURRENCY = [1, 16, 256, 1024, 4096]
SYNC_THREADS = [1, 8]

LABELS = {
    "rlinf_typed": "rlinf-http InferenceHTTPClient.async_generate (default transport)",
    "rlinf_typed_httpx": "rlinf-http InferenceHTTPClient.async_generate, transport='httpx'",
    "rlinf_typed_sync": "rlinf-http InferenceHTTPClient.generate (default transport)",
    "ours_client": "rlinf AsyncTransport via httpx.AsyncClient.send",
    "ours_direct": "rlinf AsyncTransport.handle_async_request",
    "ours_raw": "rlinf AsyncTransport.raw_request (prebuilt head)",
    "aiohttp": "aiohttp session (RLinf pattern)",
    "httpx_default": "httpx.AsyncClient default transport",
    "ours_sync": "rlinf SyncTransport via httpx.Client.post",
    "requests": "requests.post, no session (RLinf sync)",
    "httpx_sync": "httpx.Client default transport",
}


# -- servers -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check_server(port: int) -> bool:
    request = (
        b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(PAYLOAD), PAYLOAD)
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(request * 2)  # two requests on one connection: body must be consumed
            data = b""
            deadline = time.monotonic() + 2
            while data.count(GENERATE_BODY) < 2 and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.1 200") and data.count(GENERATE_BODY) == 2
    except OSError:
        return False


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


def _ensure_tool(name: str, package: str) -> str | None:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {package} with apt-get ...", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", package],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    return None


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 32768; multi_accept on; }}
http {{
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_buffer_size 64k;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=8192;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


@contextlib.contextmanager
def run_server() -> Iterator[tuple[int, str]]:
    """Yields (port, kind) of a running server; stops it afterwards."""
    tmp = tempfile.mkdtemp(prefix="rlinf-bench-")
    proc: subprocess.Popen[bytes] | None = None
    try:
        nginx = _ensure_tool("nginx", "nginx")
        if nginx:
            port = _free_port()
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(NGINX_CONF.format(dir=tmp, port=port, body=GENERATE_BODY.decode()))
            proc = subprocess.Popen(
                [nginx, "-c", str(conf), "-p", tmp],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if _wait_port(port, proc) and _check_server(port):
                yield port, "nginx"
                return
            _stop(proc)
            proc = None
        print(
            "\n" + "!" * 78 + "\n!! WARNING: nginx unavailable or not working; falling back to the"
            " built-in\n!! asyncio server. Server CPU now competes with the client: numbers are"
            " lower.\n" + "!" * 78 + "\n",
            flush=True,
        )
        portfile = Path(tmp) / "port"
        proc = subprocess.Popen([sys.executable, str(HERE / "_server.py"), str(portfile)])
        deadline = time.monotonic() + 10
        while not portfile.exists() or not portfile.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("built-in server failed to start")
            time.sleep(0.05)
        port = int(portfile.read_text())
        if not _check_server(port):
            raise RuntimeError("built-in server does not answer")
        yield port, "builtin"
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # nginx: fast shutdown on SIGTERM
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- workers (run in a subprocess each) --------------------------------------------------
def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _usage() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _async_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    kind, conc, n, cap, url = (
        spec["kind"],
        spec["concurrency"],
        spec["requests"],
        spec["max_seconds"],
        spec["url"],
    )
    closers: list[Any] = []
    if kind in ("rlinf_typed", "rlinf_typed_httpx"):
        from rlinf_http import InferenceHTTPClient

        typed = InferenceHTTPClient(
            url.rsplit("/generate", 1)[0],
            transport="httpx" if kind == "rlinf_typed_httpx" else "auto",
            max_retries=0,
        )
        closers.append(typed.aclose)
        sampling = {"temperature": 0.0, "max_new_tokens": 16}

        async def one() -> bytes:
            out = await typed.async_generate(
                prompt="Question: what is six times seven? Answer:", sampling_params=sampling
            )
            # Checked against the server's body below, like the raw clients.
            return GENERATE_BODY if out.meta_info.completion_tokens == 6 else out.text.encode()
    elif kind in ("ours_client", "ours_direct", "httpx_default"):
        import httpx

        if kind == "httpx_default":
            client = httpx.AsyncClient(timeout=None)
            transport: Any = None
        else:
            from rlinf_http.transports import AsyncTransport

            transport = AsyncTransport()
            client = httpx.AsyncClient(transport=transport, timeout=None)
        closers.append(client.aclose)
        request = client.build_request("POST", url, content=PAYLOAD, headers=HEADERS)

        if kind == "ours_direct":

            async def one() -> bytes:
                response = await transport.handle_async_request(request)
                return await response.aread()
        else:

            async def one() -> bytes:
                response = await client.send(request)
                return response.content
    elif kind == "ours_raw":
        from urllib.parse import urlsplit

        from rlinf_http.transports import AsyncTransport

        raw_transport = AsyncTransport()
        closers.append(raw_transport.aclose)
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        origin = (parts.scheme, parts.hostname, parts.port)
        head = (
            b"POST %b HTTP/1.1\r\nHost: %b:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n"
            % (parts.path.encode(), parts.hostname.encode(), parts.port, len(PAYLOAD))
        )
        timeouts = (10.0, None, None, None)

        async def one() -> bytes:
            return (await raw_transport.raw_request(origin, head, PAYLOAD, timeouts))[2]
    elif kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=16384, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None),
        )
        closers.append(session.close)

        async def one() -> bytes:
            async with session.post(url, data=PAYLOAD, headers=HEADERS) as response:
                return await response.read()
    else:
        raise SystemExit(f"unknown kind {kind}")

    # Warm-up: open the connections.
    try:
        warm = await asyncio.wait_for(asyncio.gather(*[one() for _ in range(min(conc, n))]), cap)
    except asyncio.TimeoutError:
        raise SystemExit(f"warm-up of {conc} concurrent requests took over {cap} s") from None
    assert warm[0] == GENERATE_BODY, warm[0][:200]

    done = 0
    errors = 0
    deadline = time.monotonic() + cap

    async def loop() -> None:
        nonlocal done, errors
        while done < n:
            done += 1
            try:
                await one()
            except Exception:
                errors += 1
            if time.monotonic() > deadline:
                return

    cpu0 = _usage()
    t0 = time.perf_counter()
    await asyncio.gather(*[loop() for _ in range(conc)])
    elapsed = time.perf_counter() - t0
    cpu = _usage() - cpu0
    for close in closers:
        await close()
    return {"completed": done, "errors": errors, "elapsed": elapsed, "cpu": cpu}


def _sync_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import itertools
    import threading

    kind, threads, n, cap, url = (
        spec["kind"],
        spec["concurrency"],
        spec["requests"],
        spec["max_seconds"],
        spec["url"],
    )
    if kind == "requests":
        import requests

        def one() -> bytes:
            response = requests.post(
                url,
                data=PAYLOAD,
                headers=HEADERS,
                proxies={"http": None, "https": None},  # type: ignore[dict-item]
                timeout=(10, None),
            )
            return response.content
    elif kind == "rlinf_typed_sync":
        from rlinf_http import InferenceHTTPClient

        typed = InferenceHTTPClient(url.rsplit("/generate", 1)[0], max_retries=0)
        sampling = {"temperature": 0.0, "max_new_tokens": 16}

        def one() -> bytes:
            out = typed.generate(
                prompt="Question: what is six times seven? Answer:", sampling_params=sampling
            )
            return GENERATE_BODY if out.meta_info.completion_tokens == 6 else out.text.encode()
    else:
        import httpx

        if kind == "ours_sync":
            from rlinf_http.transports import SyncTransport

            client = httpx.Client(transport=SyncTransport(), timeout=None)
        else:
            client = httpx.Client(timeout=None)

        def one() -> bytes:
            return client.post(url, content=PAYLOAD, headers=HEADERS).content

    assert one() == GENERATE_BODY
    counter = itertools.count()
    done = [0] * threads
    errors = [0] * threads
    deadline = time.monotonic() + cap

    def loop(index: int) -> None:
        while next(counter) < n:
            done[index] += 1
            try:
                one()
            except Exception:
                errors[index] += 1
            if time.monotonic() > deadline:
                return

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    cpu0 = _usage()
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    cpu = _usage() - cpu0
    return {"completed": sum(done), "errors": sum(errors), "elapsed": elapsed, "cpu": cpu}


def worker_main(spec: dict[str, Any]) -> None:
    _raise_nofile()
    if spec["mode"] == "async":
        import asyncio

        result = asyncio.run(_async_worker(spec))
    else:
        result = _sync_worker(spec)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def run_point(spec: dict[str, Any], script: Path | None = None) -> dict[str, Any]:
    """Run ``script --worker SPEC`` (this script by default) and read its RESULT line."""
    try:
        proc = subprocess.run(
            [sys.executable, str(script or Path(__file__).resolve()), "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=spec["max_seconds"] * 3 + 30,
            check=False,
        )
    except subprocess.TimeoutExpired:  # the child is killed by subprocess.run
        print(f"  !! {spec['kind']} c={spec['concurrency']} timed out", flush=True)
        return {**spec, "failed": True}
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr or proc.stdout)[-800:]
        print(f"  !! {spec['kind']} c={spec['concurrency']} failed:\n{tail}", flush=True)
        return {**spec, "failed": True}
    result = json.loads(line[len("RESULT ") :])
    completed = max(result["completed"], 1)
    return {
        **spec,
        **result,
        "rps": completed / result["elapsed"],
        "cpu_us_per_req": result["cpu"] / completed * 1e6,
    }


def run_wrk(url: str, seconds: int) -> dict[str, Any] | None:
    wrk = _ensure_tool("wrk", "wrk")
    if not wrk:
        print("WARNING: wrk not available; skipping the wrk reference point.", flush=True)
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(PAYLOAD.decode())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        script = f.name
    try:
        proc = subprocess.run(
            [wrk, "-t1", "-c256", f"-d{seconds}s", "-s", script, url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
    finally:
        os.unlink(script)
    for line in proc.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return {"kind": "wrk", "concurrency": 256, "rps": float(line.split()[1])}
    print("WARNING: could not parse wrk output:\n" + proc.stdout[-500:], flush=True)
    return None


# -- report ------------------------------------------------------------------------------
def _find(results: list[dict[str, Any]], kind: str, conc: int) -> dict[str, Any] | None:
    for r in results:
        if r["kind"] == kind and r["concurrency"] == conc and not r.get("failed"):
            return r
    return None


def summarise(results: list[dict[str, Any]], wrk: dict[str, Any] | None) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    for conc in CONCURRENCY:
        aio = _find(results, "aiohttp", conc)
        hx = _find(results, "httpx_default", conc)
        for kind in ("rlinf_typed", "ours_client", "ours_direct", "ours_raw"):
            ours = _find(results, kind, conc)
            if ours and aio:
                ratios[f"{kind}/aiohttp rps c={conc}"] = ours["rps"] / aio["rps"]
            if ours and hx:
                ratios[f"{kind}/httpx_default rps c={conc}"] = ours["rps"] / hx["rps"]
    for kind in ("rlinf_typed", "ours_client", "ours_direct", "ours_raw", "aiohttp"):
        lo, hi = _find(results, kind, 16), _find(results, kind, 4096)
        if lo and hi:
            ratios[f"{kind} cpu/req c=4096 / c=16"] = hi["cpu_us_per_req"] / lo["cpu_us_per_req"]
    for threads in SYNC_THREADS:
        for kind in ("rlinf_typed_sync", "ours_sync"):
            ours = _find(results, kind, threads)
            for other in ("requests", "httpx_sync"):
                base = _find(results, other, threads)
                if ours and base:
                    ratios[f"{kind}/{other} rps threads={threads}"] = ours["rps"] / base["rps"]
    if wrk and wrk.get("rps"):
        for kind in ("rlinf_typed", "ours_raw", "aiohttp"):
            ours = _find(results, kind, 256)
            if ours:
                ratios[f"{kind}/wrk rps c=256"] = ours["rps"] / wrk["rps"]
    return ratios


def print_table(results: list[dict[str, Any]], wrk: dict[str, Any] | None) -> None:
    print("\n| client | conc/threads | req/s | CPU µs/req | peak RSS MiB | done | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if r.get("failed"):
            print(f"| {LABELS[r['kind']]} | {r['concurrency']} | FAILED | | | | |")
            continue
        print(
            f"| {LABELS[r['kind']]} | {r['concurrency']} | {r['rps']:,.0f} | "
            f"{r['cpu_us_per_req']:.1f} | {r['peak_rss_mb']:.0f} | {r['completed']} | "
            f"{r['errors']} |"
        )
    if wrk:
        print(f"| wrk (C, for scale) | 256 | {wrk['rps']:,.0f} | | | | |")


def plot(results: list[dict[str, Any]], wrk: dict[str, Any] | None, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("WARNING: matplotlib missing; no plot.")
        return
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for kind in ASYNC_KINDS:
        points = [r for r in results if r["kind"] == kind and not r.get("failed")]
        if points:
            xs = [r["concurrency"] for r in points]
            axes[0].plot(xs, [r["rps"] for r in points], marker="o", label=LABELS[kind])
            axes[1].plot(xs, [r["cpu_us_per_req"] for r in points], marker="o", label=LABELS[kind])
    if wrk:
        axes[0].scatter([256], [wrk["rps"]], marker="*", s=150, color="k", label="wrk")
    for ax, title in zip(axes[:2], ["async req/s", "async client CPU µs/request"], strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent requests")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    labels, values = [], []
    for r in results:
        if r["kind"] in SYNC_KINDS and not r.get("failed"):
            labels.append(f"{r['kind']}\n{r['concurrency']}thr")
            values.append(r["rps"])
    axes[2].bar(range(len(values)), values)
    axes[2].set_xticks(range(len(values)), labels, fontsize=7)
    axes[2].set_title("sync req/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer requests (~2 minutes)")
    parser.add_argument("--out", default=str(HERE / "results"), help="output directory")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile",
        metavar="KIND",
        help="profile one async client (e.g. ours_client) at 256 concurrent under cProfile",
    )
    parser.add_argument("--kinds", help="comma-separated client keys to run (default: all)")
    parser.add_argument("--concurrency", help="comma-separated async concurrencies (default: all)")
    args = parser.parse_args()
    if args.worker:
        worker_main(json.loads(args.worker))
        return

    kinds = set(args.kinds.split(",")) if args.kinds else None
    levels = [int(c) for c in args.concurrency.split(",")] if args.concurrency else CONCURRENCY
    n_async, cap_async = (4000, 4.0) if args.quick else (20000, 20.0)
    n_sync, cap_sync = (1000, 4.0) if args.quick else (5000, 12.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    with run_server() as (port, server_kind):
        url = f"http://127.0.0.1:{port}/generate"
        print(f"server: {server_kind} on 127.0.0.1:{port}", flush=True)
        if args.profile:
            profile(args.profile, url, n_async)
            return
        results: list[dict[str, Any]] = []
        for conc in levels:
            for kind in ASYNC_KINDS:
                if kinds is not None and kind not in kinds:
                    continue
                spec = {
                    "mode": "async",
                    "kind": kind,
                    "concurrency": conc,
                    "requests": n_async,
                    "max_seconds": cap_async,
                    "url": url,
                }
                r = run_point(spec)
                results.append(r)
                if not r.get("failed"):
                    print(
                        f"  {kind:14s} c={conc:<5d} {r['rps']:10,.0f} req/s "
                        f"{r['cpu_us_per_req']:8.1f} µs CPU/req  rss {r['peak_rss_mb']:.0f} MiB",
                        flush=True,
                    )
        for threads in SYNC_THREADS:
            for kind in SYNC_KINDS:
                if kinds is not None and kind not in kinds:
                    continue
                spec = {
                    "mode": "sync",
                    "kind": kind,
                    "concurrency": threads,
                    "requests": n_sync,
                    "max_seconds": cap_sync,
                    "url": url,
                }
                r = run_point(spec)
                results.append(r)
                if not r.get("failed"):
                    print(
                        f"  {kind:14s} t={threads:<5d} {r['rps']:10,.0f} req/s "
                        f"{r['cpu_us_per_req']:8.1f} µs CPU/req",
                        flush=True,
                    )
        wrk = run_wrk(url, 3 if args.quick else 5)

    ratios = summarise(results, wrk)
    print_table(results, wrk)
    print("\nratios:")
    for key, value in ratios.items():
        print(f"  {key:45s} {value:6.2f}")
    report = {
        "server": server_kind,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "quick": args.quick,
        "results": results,
        "wrk": wrk,
        "ratios": ratios,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    plot(results, wrk, out / "client_overhead.png")
    print(f"\nwrote {out / 'results.json'} and {out / 'client_overhead.png'}")


def profile(kind: str, url: str, n: int) -> None:
    import asyncio
    import cProfile
    import pstats

    _raise_nofile()
    spec = {
        "mode": "async",
        "kind": kind,
        "concurrency": 256,
        "requests": n,
        "max_seconds": 30.0,
        "url": url,
    }
    profiler = cProfile.Profile()
    profiler.enable()
    result = asyncio.run(_async_worker(spec))
    profiler.disable()
    print(result)
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
