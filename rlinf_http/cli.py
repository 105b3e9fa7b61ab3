"""The ``rlinf-http`` command line (typer + rich, from the ``cli``/``bench`` extras).

Commands: ``bench`` (the benchmark harness, see ``docs/bench.md``), ``health``,
``generate``, ``chat`` and ``serve-fake``. Importing :mod:`rlinf_http` never
imports typer or rich; :func:`main` reports a missing extra clearly.
"""

# No ``from __future__ import annotations``: typer reads the annotations of the
# command functions, which are defined inside _build_app().

import contextlib
import json
import math
import os
import signal
import sys
import threading
import traceback
import types
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._errors import APIStatusError, InvalidRequestError, RLinfHTTPError

__all__ = ["main"]

#: Set this environment variable to get the full message and traceback of a CLI error.
_DEBUG_ENV = "RLINF_HTTP_DEBUG"

_MISSING_EXTRA = (
    "rlinf-http: the command line needs the 'cli' extra (typer, rich); the benchmark "
    "needs the 'bench' extra. In a clone of the repository:  pip install -e '.[bench]'"
)


class _UsageError(ValueError):
    """A bad command-line value: exit status 2, the message names the option."""


class _Failure(Exception):
    """An expected CLI failure: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> _Failure:
    """The exception to raise for a CLI failure (``raise fail("...")``); printed as text."""
    return _Failure(message, code)


def _parse_list(value: str, conv: Any, option: str) -> list[Any]:
    out = []
    for x in value.replace(" ", "").split(","):
        if not x:
            continue
        try:
            out.append(conv(x))
        except (_UsageError, InvalidRequestError):
            raise
        except ValueError:
            raise _UsageError(
                f"{option}: expected a comma-separated list of numbers, got {value!r}"
            ) from None
    if not out:
        raise _UsageError(f"{option}: expected a comma-separated list of numbers, got {value!r}")
    return out


def _cli_url(value: str, name: str = "URL") -> str:
    """A router/server URL from the command line; ``host:port`` means ``http://host:port``."""
    from ._core.requests import normalize_base_url

    text = value.strip()
    try:
        if "://" not in text:
            # host:port (no scheme): accept it as http://host:port, but only with a port,
            # so that a typo such as "not-a-url" is an error rather than a DNS lookup
            url = normalize_base_url("http://" + text)
            if urllib.parse.urlsplit(url).port is None:
                raise InvalidRequestError("neither a scheme nor a port")
            return url
        return normalize_base_url(text)
    except InvalidRequestError:
        raise _UsageError(
            f"{name}: {value!r} is not a URL; expected http(s)://host[:port][/path] or host:port"
        ) from None


def _parse_json_object(value: str | None, option: str) -> dict[str, Any]:
    if not value:
        return {}
    try:
        obj = json.loads(value)
    except ValueError as exc:
        raise _UsageError(f"{option}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _UsageError(f"{option}: expected a JSON object, got {value!r}")
    return obj


def _parse_headers(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for h in values or []:
        sep = "=" if "=" in h and (":" not in h or h.index("=") < h.index(":")) else ":"
        if sep not in h:
            raise ValueError(f"--header must be KEY=VALUE or 'Key: Value', got {h!r}")
        k, v = h.split(sep, 1)
        out[k.strip()] = v.strip()
    return out


def _build_app() -> Any:
    import typer
    from rich.console import Console
    from rich.markup import escape as markup_escape

    console = Console()
    err = Console(stderr=True)
    _wrap_help_at_spaces()
    app = typer.Typer(
        name="rlinf-http",
        help="rlinf-http: a typed client for SGLang routers and servers, and a benchmark.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # click's plain help: rich's option panel cuts option names at 80 columns
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
        cls=_group_class(),
    )

    def show_version(value: bool) -> None:
        if value:
            from ._version import __version__

            console.print(f"rlinf-http {__version__}", highlight=False, markup=False)
            raise typer.Exit()

    @app.callback()
    def _options(
        version: bool = typer.Option(
            False,
            "--version",
            callback=show_version,
            is_eager=True,
            help="print the version and exit",
        ),
    ) -> None:
        """rlinf-http: a typed client for SGLang routers and servers, and a benchmark."""

    @app.command(
        context_settings={"allow_extra_args": True},
        short_help="Benchmark a router or server (bench_serving's metrics).",
    )
    def bench(
        ctx: typer.Context,
        url: str | None = typer.Option(
            None,
            "--url",
            "--base-url",
            help="router or server URL; omit for the embedded fake workers + gateway",
        ),
        endpoint: str = typer.Option(
            "generate", help="generate (/generate), chat or completions (/v1/completions)"
        ),
        backend: str | None = typer.Option(
            None, help="bench_serving's name: sglang, sglang-oai, sglang-oai-chat"
        ),
        stream: bool = typer.Option(True, "--stream/--no-stream", help="stream responses"),
        disable_stream: bool = typer.Option(False, help="= --no-stream (bench_serving)"),
        dataset: str = typer.Option(
            "random", "--dataset", "--dataset-name", help="random, sharegpt, rl-groups or trace"
        ),
        dataset_path: str | None = typer.Option(None, help="local ShareGPT JSON file"),
        group_size: int = typer.Option(8, help="rl-groups: samples per prompt (K)"),
        rl_batch_size: int = typer.Option(8, help="rl-groups: prompts per batch (B)"),
        output_len_distribution: str | None = typer.Option(
            None, help="lognormal, uniform or fixed (rl-groups default: lognormal)"
        ),
        output_len_sigma: float = typer.Option(1.0, help="lognormal sigma of output lengths"),
        trace_file: str | None = typer.Option(None, help="trace: mooncake JSONL file"),
        trace_speedup: float = typer.Option(1.0, help="trace: replay X times faster"),
        trace_block_size: int = typer.Option(512, help="trace: tokens per hash id"),
        random_input_len: int = typer.Option(1024, help="input tokens per request"),
        random_output_len: int = typer.Option(128, help="output tokens per request"),
        random_range_ratio: float = typer.Option(
            1.0, help="lengths uniform in [L*ratio, L]; 1.0 (default) = exact lengths"
        ),
        sharegpt_output_len: int | None = typer.Option(None, help="override ShareGPT outputs"),
        seed: int = typer.Option(42, help="seed of prompts and arrival times"),
        num_prompts: int | None = typer.Option(
            None, help="measured requests [default: 1000; a trace: all of it]"
        ),
        request_rate: str = typer.Option("inf", help="requests/s (Poisson) or inf"),
        burstiness: float = typer.Option(1.0, help="gamma shape of arrivals (1 = Poisson)"),
        max_concurrency: int | None = typer.Option(None, help="cap on requests in flight"),
        warmup_requests: int = typer.Option(1, help="unmeasured requests before the run"),
        extra_request_body: str | None = typer.Option(None, help="JSON merged into each body"),
        output_file: Path | None = typer.Option(  # noqa: B008
            None,
            help="append the result as one JSON line (JSONL; a sweep: one line per "
            "point, default bench-results/sweep-<time>.jsonl)",
        ),
        output_details: bool = typer.Option(False, help="add per-request arrays to the JSON"),
        goodput: list[str] | None = typer.Option(  # noqa: B008
            None, help="SLOs KEY:MS for ttft, tpot, e2el (e.g. --goodput ttft:200 tpot:20)"
        ),
        percentile_metrics: str | None = typer.Option(
            None, help="metrics shown: ttft,tpot,itl,e2el (default: all)"
        ),
        metric_percentiles: str | None = typer.Option(
            None, help="percentiles, e.g. 50,90,99 (default: 90,95,99)"
        ),
        calibrate: bool = typer.Option(
            False, help="first measure the harness's error against a fake server"
        ),
        ray: str | None = typer.Option(
            None, help="load from Ray actors: local (bare --ray), auto or an address"
        ),
        ray_actors: int | None = typer.Option(
            None, help="Ray load-generating actors (with --ray) [default: 1]"
        ),
        sweep_concurrency: str | None = typer.Option(None, help="e.g. 1,16,64,256"),
        sweep_rate: str | None = typer.Option(None, help="e.g. 1,2,4,8 (req/s)"),
        plot_file: Path | None = typer.Option(  # noqa: B008
            None, help="sweep PNG path (default: next to the JSONL)"
        ),
        processes: int = typer.Option(1, help="client processes sharing the workload"),
        num_workers: int = typer.Option(2, help="embedded: fake workers"),
        fake_ttft_ms: float = typer.Option(20.0, help="embedded: time to first token (ms)"),
        fake_itl_ms: float = typer.Option(5.0, help="embedded: inter-token latency (ms)"),
        router: bool = typer.Option(
            True, "--router/--no-router", help="embedded: a gateway in front (if installed)"
        ),
        gateway: str | None = typer.Option(
            None,
            help="embedded: smg (with --enable-rl; the default if installed) or sglang-router",
        ),
        model: str | None = typer.Option(
            None, help="model name sent to chat/completions [default: the one /v1/models lists]"
        ),
        ready_timeout: float = typer.Option(300.0, help="readiness wait (s); 0 skips"),
        request_timeout: float | None = typer.Option(None, help="per-request deadline (s)"),
        header: list[str] | None = typer.Option(None, help="KEY=VALUE, repeatable"),  # noqa: B008
        flush_cache: bool = typer.Option(False, help="POST /flush_cache after warmup"),
        weight_update_every: str | None = typer.Option(
            None, help="update weights under load every N s (2, 0.5s) or N RL groups (4g)"
        ),
        weight_update_path: str | None = typer.Option(
            None, help="checkpoint each update loads (default: the served one)"
        ),
        weight_update_pause: str | None = typer.Option(
            None, help="pause mode of each update: retract (default), abort or in_place"
        ),
        fake_load_ms: float = typer.Option(200.0, help="embedded: weight load time (ms)"),
        compare_direct: bool = typer.Option(
            False, help="also run the load directly against the router's workers"
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no live progress"),
    ) -> None:
        """Benchmark a router or server (bench_serving's metrics, plus client health)."""
        import uuid
        from datetime import datetime, timezone

        from pydantic import ValidationError

        try:
            from .bench import options as opts
            from .bench.report import (
                append_jsonl,
                default_sweep_paths,
                plot_sweep,
                render_result,
                render_sweep,
                result_to_json,
                sweep_point_to_json,
            )
            from .bench.runner import BenchConfig, run_benchmark, run_sweep
            from .bench.updates import PAUSE_MODES, parse_update_every
        except ImportError as exc:
            raise fail(f"{_MISSING_EXTRA} ({exc})") from None
        url = None if url is None else _cli_url(url, "--url")
        try:
            goodput_values = list(goodput or [])
            if ctx.args:  # `--goodput ttft:200 tpot:20`: the values after the first
                if not goodput_values:
                    raise opts.BenchOptionError("bench", f"unexpected arguments {ctx.args}")
                goodput_values.extend(ctx.args)
            if ray is not None and ray.startswith("-"):
                raise opts.BenchOptionError("--ray", "give local, auto or an address")
            for option, value in (("--fake-ttft-ms", fake_ttft_ms), ("--fake-itl-ms", fake_itl_ms)):
                if not math.isfinite(value) or value < 0:
                    raise opts.BenchOptionError(
                        option, f"expected a latency >= 0 (ms), got {value:g}"
                    )
            if ray_actors is not None and ray is None:
                raise opts.BenchOptionError("--ray-actors", "only with --ray")
            if output_file is not None:
                opts.check_writable(output_file)
            if plot_file is not None:
                opts.check_writable(plot_file, "--plot-file")
            extra = _parse_json_object(extra_request_body, "--extra-request-body")
            if output_len_distribution is not None:
                opts.check_choice(
                    "--output-len-distribution",
                    output_len_distribution,
                    ("lognormal", "uniform", "fixed"),
                )
            if ray is not None:
                from .bench.ray import require_ray

                require_ray()
            sized: dict[str, Any] = {} if num_prompts is None else {"num_prompts": num_prompts}
            if weight_update_every is not None:
                unit, every = parse_update_every(weight_update_every)
                sized.update(weight_update_every=every, weight_update_unit=unit)
            if weight_update_pause is not None:
                sized["weight_update_pause"] = opts.check_choice(
                    "--weight-update-pause", weight_update_pause, PAUSE_MODES
                )
            if weight_update_path is not None:
                sized["weight_update_path"] = weight_update_path
            config = BenchConfig(
                url=url,
                endpoint=opts.parse_backend(backend) if backend else endpoint,  # type: ignore[arg-type]
                stream=stream and not disable_stream,
                dataset=dataset,  # type: ignore[arg-type]
                dataset_path=dataset_path,
                group_size=group_size,
                rl_batch_size=rl_batch_size,
                output_len_distribution=output_len_distribution,  # type: ignore[arg-type]
                output_len_sigma=output_len_sigma,
                trace_file=trace_file,
                trace_speedup=trace_speedup,
                trace_block_size=trace_block_size,
                goodput=opts.parse_goodput(goodput_values),
                percentile_metrics=opts.parse_percentile_metrics(
                    percentile_metrics or "ttft,tpot,itl,e2el"
                ),
                metric_percentiles=opts.parse_metric_percentiles(metric_percentiles)
                if metric_percentiles
                else [],
                calibrate=calibrate,
                ray_address=ray,
                ray_actors=1 if ray_actors is None else ray_actors,
                **sized,
                random_input_len=random_input_len,
                random_output_len=random_output_len,
                random_range_ratio=random_range_ratio,
                sharegpt_output_len=sharegpt_output_len,
                seed=seed,
                request_rate=opts.parse_rate(request_rate),
                burstiness=burstiness,
                max_concurrency=max_concurrency,
                warmup_requests=warmup_requests,
                extra_request_body=extra,
                processes=processes,
                num_workers=num_workers,
                fake_ttft_ms=fake_ttft_ms,
                fake_itl_ms=fake_itl_ms,
                fake_load_ms=fake_load_ms,
                compare_direct=compare_direct,
                use_router=None if router else False,
                gateway=gateway,  # type: ignore[arg-type]
                model=model,
                ready_timeout=ready_timeout,
                request_timeout=request_timeout,
                headers=_parse_headers(header),
                flush_cache=flush_cache,
            )
            concurrencies = (
                _parse_list(sweep_concurrency, int, "--sweep-concurrency")
                if sweep_concurrency
                else []
            )
            for level in concurrencies:
                if level < 1:
                    raise opts.BenchOptionError(
                        "--sweep-concurrency", f"{level} is not a concurrency (>= 1)"
                    )
            rates = (
                _parse_list(
                    sweep_rate, lambda v: opts.parse_rate(v, "--sweep-rate"), "--sweep-rate"
                )
                if sweep_rate
                else []
            )
            if concurrencies and rates:
                raise ValueError("give --sweep-concurrency or --sweep-rate, not both")
            sweep_stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
            sweep_out, sweep_png = default_sweep_paths(output_file, plot_file, sweep_stamp)
            if (concurrencies or rates) and output_file is None:
                # bench-results/ is created on demand: check that it can be
                opts.check_writable(sweep_out if sweep_out.parent.is_dir() else sweep_out.parent)
            if calibrate and (concurrencies or rates):
                raise opts.BenchOptionError("--calibrate", "calibrates one run; not with sweeps")
            if compare_direct and (concurrencies or rates):
                raise opts.BenchOptionError("--compare-direct", "compares one run; not with sweeps")
            config.check()
        except ValidationError:
            raise  # the CLI's error handler names the options
        except InvalidRequestError:
            raise  # BenchOptionError names its option; the handler exits with 2
        except ValueError as exc:
            raise _UsageError(str(exc)) from None

        where = (
            markup_escape(url)
            if url
            else (
                f"embedded: {num_workers} fake workers (ttft {fake_ttft_ms:g} ms, "
                f"itl {fake_itl_ms:g} ms)"
            )
        )
        try:
            with _second_interrupt_exits(), _progress(console, quiet or processes > 1) as progress:
                if concurrencies or rates:
                    label = "concurrency" if concurrencies else "rate"
                    parameter = "max_concurrency" if concurrencies else "request_rate"
                    swept = [float(v) for v in (concurrencies or rates)]
                    sweep_id = f"{sweep_stamp}-{uuid.uuid4().hex[:6]}"

                    def on_point(point: Any) -> None:
                        m = point.metrics
                        v = (
                            point.config.max_concurrency
                            if concurrencies
                            else point.config.request_rate
                        )
                        # one JSON line per point, appended as it finishes (never truncated)
                        append_jsonl(
                            sweep_out,
                            sweep_point_to_json(
                                point,
                                parameter,
                                float(v),
                                sweep_id=sweep_id,
                                values=swept,
                                details=output_details,
                            ),
                        )
                        sat = " [bold red]CLIENT SATURATED[/]" if m.client_saturated else ""
                        console.print(
                            f"{label} {v}: {m.completed} ok, {m.failed} failed, "
                            f"{m.output_throughput:.0f} out tok/s, TTFT p50 "
                            f"{m.ttft_ms.median:.1f} ms p99 {m.ttft_ms.p99:.1f} ms{sat}",
                            highlight=False,
                        )

                    console.print(f"[bold]rlinf-http bench sweep[/] on {where}", highlight=False)
                    sweep = run_sweep(
                        config,
                        concurrencies=concurrencies,
                        rates=rates,
                        on_point=on_point,
                        progress=progress.callback(),
                        status=lambda msg: err.print(
                            msg, highlight=False, markup=False, soft_wrap=True
                        ),
                    )
                    plot_sweep(sweep, sweep_png)
                    console.print(render_sweep(sweep, console.width))
                    console.print(
                        f"appended {len(sweep.points)} JSON line(s) to {sweep_out}; "
                        f"wrote {sweep_png}",
                        highlight=False,
                    )
                    if any(p.metrics.client_saturated for p in sweep.points):
                        err.print(
                            "[bold red]WARNING: the client was saturated at some points: "
                            "their numbers describe the client, not the server.[/]"
                        )
                    return
                console.print(f"[bold]rlinf-http bench[/] on {where}", highlight=False)
                result = run_benchmark(
                    config,
                    progress=progress.callback(),
                    status=lambda msg: err.print(
                        msg, highlight=False, markup=False, soft_wrap=True
                    ),
                )
        except KeyboardInterrupt:
            raise fail("interrupted (everything started was stopped)", 130) from None
        console.print(render_result(result))
        if output_file is not None:
            append_jsonl(output_file, result_to_json(result, details=output_details))
            console.print(f"appended one JSON line to {output_file}", highlight=False)

    @app.command()
    def health(
        url: str = typer.Argument(..., help="router or server URL (host:port means http://)"),
        wait: float = typer.Option(0.0, help="wait up to this many seconds for readiness"),
    ) -> None:
        """GET /health (or wait for readiness); exit 0 when healthy."""
        from ._client import InferenceHTTPClient

        base = _cli_url(url)
        with InferenceHTTPClient(base) as client:
            if wait > 0:
                try:
                    kind = client.wait_until_ready(timeout=wait)
                except Exception as exc:
                    raise fail(f"{base} not ready within {wait:g} s: {_why(exc)}") from None
                console.print(f"ready ({kind})", highlight=False, markup=False)
                return
            if not client.health():
                raise fail(f"{base} is not healthy: {_health_reason(base)}")
            console.print("healthy")

    @app.command()
    def generate(
        url: str = typer.Argument(..., help="router or server URL (host:port means http://)"),
        prompt: str = typer.Argument(..., help="prompt text"),
        max_new_tokens: int = typer.Option(64, help="max new tokens"),
        temperature: float = typer.Option(0.0, help="sampling temperature"),
        stream: bool = typer.Option(False, "--stream/--no-stream", help="stream the output"),
    ) -> None:
        """POST /generate and print the text."""
        from ._client import InferenceHTTPClient
        from .models import SingleSampleParams

        params: SingleSampleParams = {"max_new_tokens": max_new_tokens, "temperature": temperature}
        with InferenceHTTPClient(_cli_url(url)) as client:
            if stream:
                with client.generate(prompt, sampling_params=params, stream=True) as chunks:
                    for chunk in chunks:
                        sys.stdout.write(chunk.delta)
                        sys.stdout.flush()
                sys.stdout.write("\n")
                return
            out = client.generate(prompt, sampling_params=params)
            console.print(out.text, highlight=False, markup=False)

    @app.command()
    def chat(
        url: str = typer.Argument(..., help="router or server URL (host:port means http://)"),
        message: str = typer.Argument(..., help="the user message"),
        model: str | None = typer.Option(
            None, help="model name (default: the one model GET /v1/models lists)"
        ),
        max_tokens: int = typer.Option(64, help="max tokens"),
        temperature: float = typer.Option(0.0, help="sampling temperature"),
        stream: bool = typer.Option(False, "--stream/--no-stream", help="stream the output"),
    ) -> None:
        """POST /v1/chat/completions and print the reply."""
        from ._client import InferenceHTTPClient

        messages = [{"role": "user", "content": message}]
        with InferenceHTTPClient(_cli_url(url)) as client:
            if stream:
                with client.chat_completion(
                    messages,
                    model,
                    stream=True,
                    max_tokens=max_tokens,
                    temperature=temperature,
                ) as chunks:
                    for chunk in chunks:
                        for c in chunk.choices:
                            sys.stdout.write(c.delta.content or "")
                        sys.stdout.flush()
                sys.stdout.write("\n")
                return
            reply = client.chat_completion(
                messages, model, max_tokens=max_tokens, temperature=temperature
            )
            text = reply.choices[0].message.content if reply.choices else ""
            console.print(str(text or ""), highlight=False, markup=False)

    @app.command("serve-fake")
    def serve_fake(
        host: str = typer.Option("127.0.0.1", help="bind address"),
        port: int = typer.Option(30000, min=0, max=65535, help="port (0 = any free port)"),
        ttft_ms: float = typer.Option(20.0, help="time to first token (ms)"),
        itl_ms: float = typer.Option(5.0, help="inter-token latency (ms)"),
        incremental: bool = typer.Option(False, help="incremental streaming output"),
    ) -> None:
        """Run a fake sglang server (prints its URL first) until Ctrl-C."""
        from .testing import FakeConfig
        from .testing._server import run_worker_main

        for option, value in (("--ttft-ms", ttft_ms), ("--itl-ms", itl_ms)):
            if not math.isfinite(value) or value < 0:
                raise _UsageError(f"{option}: expected a latency >= 0 (ms), got {value:g}")
        config = FakeConfig(
            ttft_s=ttft_ms / 1000.0, itl_s=itl_ms / 1000.0, incremental_streaming=incremental
        )
        try:
            stopped_by = run_worker_main(host, port, config)
        except KeyboardInterrupt:
            stopped_by = signal.SIGINT
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise fail(f"cannot listen on {host}:{port} (--host/--port): {reason}") from None
        if stopped_by == signal.SIGINT:
            raise fail("interrupted", 130)
        if stopped_by == signal.SIGTERM:
            raise fail("terminated", 128 + signal.SIGTERM)

    return app


def _wrap_help_at_spaces() -> None:
    """Help text wraps at spaces only: click's wrapper also breaks at hyphens, which
    splits option names and values across lines (``--no-`` / ``stream``)."""
    import importlib

    import typer.core

    vendored = getattr(typer.core, "_click", None)
    base = vendored.__name__ if vendored is not None else "click"
    try:
        module = importlib.import_module(f"{base}._textwrap")
    except ImportError:  # pragma: no cover - a click without its wrapper module
        return
    wrapper = module.TextWrapper
    if getattr(wrapper, "rlinf_spaces_only", False):
        return

    class SpacesOnly(wrapper):  # type: ignore[misc,valid-type]
        rlinf_spaces_only = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("break_on_hyphens", False)
            super().__init__(*args, **kwargs)

    setattr(module, "TextWrapper", SpacesOnly)  # noqa: B010


@contextlib.contextmanager
def _second_interrupt_exits() -> Iterator[None]:
    """Ctrl-C stops the run (clean-up runs); a second Ctrl-C exits at once with 130.

    The first SIGINT raises :class:`KeyboardInterrupt` (the run stops its tasks,
    client processes, Ray actors and embedded servers); while that clean-up
    lasts, a second SIGINT ends the process on the spot. What it started dies
    with it: the fake workers, the router and the client processes by their
    parent-death signal, a local Ray cluster by Ray's own fate sharing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen = 0

    def on_interrupt(signum: int, frame: types.FrameType | None) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            os.write(2, b"interrupted: stopping (Ctrl-C again to exit at once)\n")
            raise KeyboardInterrupt
        os.write(2, b"interrupted again: exiting now\n")
        os._exit(130)

    try:
        old = signal.signal(signal.SIGINT, on_interrupt)
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        if not seen:  # after a Ctrl-C the handler stays: a second one still exits at once
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGINT, old)


def _why(exc: BaseException) -> str:
    """One short reason for a failed readiness wait or health check (``_core.waits``)."""
    from ._core.waits import last_reason, wait_reason, waiting_cannot_fix

    if isinstance(exc, RLinfHTTPError) and not isinstance(exc, APIStatusError):
        return last_reason(exc)  # the wait's own error: it names the last probe's failure
    return waiting_cannot_fix(exc) or wait_reason(exc)


def _health_reason(base: str) -> str:
    """Why ``GET /health`` failed: the HTTP status, or the connection error."""
    import httpx

    try:
        with httpx.Client(trust_env=False, timeout=5.0) as raw:
            resp = raw.get(base + "/health")
    except httpx.HTTPError as exc:
        return f"{_why(exc)} (GET /health)"
    return f"GET /health answered HTTP {resp.status_code}"


def _group_class() -> Any:
    """The typer group class whose ``main`` is the CLI's one error handler."""
    from typer.core import TyperGroup

    class Group(TyperGroup):
        def main(  # type: ignore[override]
            self,
            args: Any = None,
            prog_name: str | None = None,
            complete_var: str | None = None,
            standalone_mode: bool = True,
            **extra: Any,
        ) -> Any:
            try:
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except BaseException as exc:
                leaf = _leaf_error(exc)
                if not isinstance(leaf, Exception | KeyboardInterrupt):
                    raise  # SystemExit, GeneratorExit
                code = _report_error(leaf)
            else:
                code = rv if isinstance(rv, int) else 0
            if not standalone_mode:
                return code
            sys.exit(code)

    return Group


def _leaf_error(exc: BaseException) -> BaseException:
    """The error to report for ``exc``: an exception group (from a task group) is
    unwrapped; a Ctrl-C or SIGTERM anywhere in it wins."""
    leaves = _leaves(exc)
    interrupts = [e for e in leaves if isinstance(e, KeyboardInterrupt)]
    return (interrupts or leaves)[0]


def _leaves(exc: BaseException) -> list[BaseException]:
    subs = getattr(exc, "exceptions", None)
    if hasattr(exc, "split") and isinstance(subs, tuple) and subs:  # a (Base)ExceptionGroup
        return [leaf for sub in subs for leaf in _leaves(sub)]
    return [exc]


def _report_error(exc: BaseException) -> int:
    """Print ``exc`` as one or two lines of plain text (never markup); the exit status.

    Usage errors (a bad option or argument) exit with 2, failures with 1. The full
    message and the traceback are printed when ``RLINF_HTTP_DEBUG`` is set.
    """
    import typer
    from pydantic import ValidationError

    click_errors = _click_exceptions()
    hint = ""
    no_args = getattr(click_errors, "NoArgsIsHelpError", ())
    if isinstance(exc, no_args):  # the help was printed (or is the message)
        if exc.format_message().strip():
            typer.echo(exc.format_message(), err=True)
        return 2
    if isinstance(exc, click_errors.UsageError):
        message, code = exc.format_message(), 2
        if exc.ctx is not None:
            hint = f"Try '{exc.ctx.command_path} -h' for help."
    elif isinstance(exc, click_errors.ClickException):
        message, code = exc.format_message(), exc.exit_code
    elif isinstance(exc, (KeyboardInterrupt, typer.Abort)):
        message, code = "interrupted", 130
    elif isinstance(exc, _Failure):
        message, code = str(exc), exc.code
    elif isinstance(exc, _UsageError):
        message, code = str(exc), 2
    elif isinstance(exc, ValidationError):
        message, code = _describe_validation(exc), 2
    elif isinstance(exc, InvalidRequestError):  # a bad value given on the command line
        message, code = str(exc), 2
    else:  # a failure: name its type (APIConnectionError, RuntimeError, ...)
        message, code = f"{type(exc).__name__}: {exc}", 1
    debug = bool(os.environ.get(_DEBUG_ENV))
    if debug and not isinstance(exc, click_errors.ClickException):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    lines = message.strip().splitlines() or [type(exc).__name__]
    if len(lines) > 1 and not debug:
        hint = hint or (
            f"({len(lines) - 1} more lines; set {_DEBUG_ENV}=1 to see them and the traceback)"
        )
        lines = lines[:1]
    typer.secho("error: ", fg="red", bold=True, err=True, nl=False)
    typer.echo("\n".join(lines), err=True)
    if hint:
        typer.echo(hint, err=True)
    return code


def _click_exceptions() -> Any:
    """``click.exceptions`` as typer uses it (recent typer versions vendor click)."""
    import typer.core

    vendored = getattr(typer.core, "_click", None)
    if vendored is not None:
        return vendored.exceptions
    import click

    return click.exceptions


#: Option names of :class:`~rlinf_http.bench.runner.BenchConfig` fields that differ
#: from ``--field-name``.
_OPTION_OF_FIELD = {"use_router": "--router/--no-router", "headers": "--header"}


def _describe_validation(exc: Any) -> str:
    """A pydantic ``ValidationError`` as one line naming the command-line options."""
    parts = []
    for e in exc.errors(include_url=False):
        field = str(e["loc"][0]) if e.get("loc") else ""
        option = _OPTION_OF_FIELD.get(field, "--" + field.replace("_", "-")) if field else ""
        msg = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
        value = e.get("input")
        shown = f" (got {value!r})" if field and not isinstance(value, dict) else ""
        parts.append(f"{option}: {msg}{shown}" if option else msg)
    return "; ".join(parts) or str(exc).splitlines()[0]


class _progress:
    """A rich live progress bar fed by the runner's ``progress(done, failed, total)``."""

    def __init__(self, console: Any, disabled: bool) -> None:
        self.console = console
        self.disabled = disabled
        self.bar: Any = None
        self.task: Any = None
        self.line_mode = False
        self.last_line = 0.0

    #: seconds between progress lines when stdout is not a terminal
    LINE_EVERY_S = 5.0

    def __enter__(self) -> "_progress":
        if self.disabled:
            return self
        if not self.console.is_terminal:
            self.line_mode = True
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]requests"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.__enter__()
        return self

    def callback(self) -> Any:
        if self.line_mode:
            import time

            started = time.monotonic()
            self.last_line = started

            def line(done: int, failed: int, total: int) -> None:
                now = time.monotonic()
                if done == total or now - self.last_line >= self.LINE_EVERY_S:
                    self.last_line = now
                    self.console.print(
                        f"progress: {done}/{total} requests done, {failed} failed, "
                        f"{now - started:.0f} s",
                        highlight=False,
                    )

            return line
        if self.bar is None:
            return None

        def update(done: int, failed: int, total: int) -> None:
            if self.task is None or done == 1:
                if self.task is not None:
                    self.bar.remove_task(self.task)
                self.task = self.bar.add_task("bench", total=total, failed=0)
            self.bar.update(self.task, completed=done, failed=failed)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``rlinf-http``)."""
    try:
        import rich  # noqa: F401
        import typer  # noqa: F401
    except ImportError:
        print(_MISSING_EXTRA, file=sys.stderr)
        raise SystemExit(1) from None
    app = _build_app()
    from .bench.argv import normalize_bench_argv  # a bare --ray means --ray local

    args = normalize_bench_argv(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="rlinf-http")  # errors are reported by the group's main()
    except SystemExit as exc:
        if exc.code == 130:
            _exit_now_if_threads_linger(130)
        raise


def _exit_now_if_threads_linger(code: int) -> None:
    """After Ctrl-C was reported: exit now rather than wait for worker threads.

    A blocking call in a worker thread (e.g. the wait for ``--processes`` client
    processes) cannot be cancelled, and the interpreter would wait for it at
    exit. What the CLI started dies with it: client processes, fake workers and
    the router by their parent-death signal.
    """
    lingering = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if lingering:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
