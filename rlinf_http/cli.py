"""The ``rlinf-http`` command line (typer + rich, from the ``cli``/``bench`` extras).

Commands: ``bench`` (the benchmark harness, see ``docs/bench.md``), ``health``,
``generate``, ``chat`` and ``serve-fake``. Importing :mod:`rlinf_http` never
imports typer or rich; :func:`main` reports a missing extra clearly.
"""

# No ``from __future__ import annotations``: typer reads the annotations of the
# command functions, which are defined inside _build_app().

import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

_MISSING_EXTRA = (
    "rlinf-http: the command line needs the 'cli' extra (typer, rich); the benchmark "
    "needs the 'bench' extra. Install with:  pip install 'rlinf-http[bench]'"
)


def _parse_rate(value: str) -> float:
    v = value.strip().lower()
    if v in ("inf", "infinity"):
        return math.inf
    rate = float(v)
    if not rate > 0:
        raise ValueError(f"request rate must be > 0 or 'inf', got {value!r}")
    return rate


def _parse_list(value: str, conv: Any) -> list[Any]:
    return [conv(x) for x in value.replace(" ", "").split(",") if x]


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

    console = Console()
    err = Console(stderr=True)
    app = typer.Typer(
        name="rlinf-http",
        help="rlinf-http: a typed client for SGLang routers and servers, and a benchmark.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    def fail(message: str, code: int = 1) -> "typer.Exit":
        err.print(f"[bold red]error:[/] {message}", highlight=False)
        return typer.Exit(code)

    @app.command(context_settings={"help_option_names": ["-h", "--help"], "allow_extra_args": True})
    def bench(
        ctx: typer.Context,
        url: str | None = typer.Option(
            None,
            "--url",
            "--base-url",
            help="router or server URL; omit for the embedded fake workers + router",
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
            None, help="append the result as one JSON line (JSONL)"
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
        ray_actors: int = typer.Option(1, help="Ray load-generating actors"),
        sweep_concurrency: str | None = typer.Option(None, help="e.g. 1,16,64,256"),
        sweep_rate: str | None = typer.Option(None, help="e.g. 1,2,4,8 (req/s)"),
        plot_file: Path | None = typer.Option(None, help="sweep PNG path"),  # noqa: B008
        processes: int = typer.Option(1, help="client processes sharing the workload"),
        num_workers: int = typer.Option(2, help="embedded: fake workers"),
        fake_ttft_ms: float = typer.Option(20.0, help="embedded: time to first token (ms)"),
        fake_itl_ms: float = typer.Option(5.0, help="embedded: inter-token latency (ms)"),
        router: bool = typer.Option(
            True, "--router/--no-router", help="embedded: use sglang-router if installed"
        ),
        model: str = typer.Option("default", help="model name sent to chat"),
        ready_timeout: float = typer.Option(300.0, help="readiness wait (s); 0 skips"),
        request_timeout: float | None = typer.Option(None, help="per-request deadline (s)"),
        header: list[str] | None = typer.Option(None, help="KEY=VALUE, repeatable"),  # noqa: B008
        flush_cache: bool = typer.Option(False, help="POST /flush_cache after warmup"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no live progress"),
    ) -> None:
        """Benchmark a router or server (bench_serving's metrics, plus client health)."""
        from pydantic import ValidationError

        try:
            from .bench import options as opts
            from .bench.report import (
                append_jsonl,
                plot_sweep,
                render_result,
                result_to_json,
                sweep_to_json,
                write_json,
            )
            from .bench.runner import BenchConfig, run_benchmark, run_sweep
        except ImportError as exc:
            raise fail(f"{_MISSING_EXTRA} ({exc})") from None
        try:
            goodput_values = list(goodput or [])
            if ctx.args:  # `--goodput ttft:200 tpot:20`: the values after the first
                if not goodput_values:
                    raise opts.BenchOptionError("bench", f"unexpected arguments {ctx.args}")
                goodput_values.extend(ctx.args)
            if ray is not None and ray.startswith("-"):
                raise opts.BenchOptionError("--ray", "give local, auto or an address")
            if output_file is not None:
                opts.check_writable(output_file)
            extra = json.loads(extra_request_body) if extra_request_body else {}
            if not isinstance(extra, dict):
                raise ValueError("--extra-request-body must be a JSON object")
            if output_len_distribution is not None:
                opts.check_choice(
                    "--output-len-distribution",
                    output_len_distribution,
                    ("lognormal", "uniform", "fixed"),
                )
            if ray is not None:
                from .bench.ray import require_ray

                require_ray()
            sized = {} if num_prompts is None else {"num_prompts": num_prompts}
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
                ray_actors=ray_actors,
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
                use_router=None if router else False,
                model=model,
                ready_timeout=ready_timeout,
                request_timeout=request_timeout,
                headers=_parse_headers(header),
                flush_cache=flush_cache,
            )
            concurrencies = _parse_list(sweep_concurrency, int) if sweep_concurrency else []
            rates = _parse_list(sweep_rate, _parse_rate) if sweep_rate else []
            if concurrencies and rates:
                raise ValueError("give --sweep-concurrency or --sweep-rate, not both")
            if calibrate and (concurrencies or rates):
                raise opts.BenchOptionError("--calibrate", "calibrates one run; not with sweeps")
            config.check()
        except opts.BenchOptionError as exc:
            raise typer.BadParameter(exc.detail, param_hint=f"'{exc.option}'") from None
        except (ValueError, ValidationError, ImportError) as exc:
            raise fail(str(exc), 2) from None

        where = url or (
            f"embedded: {num_workers} fake workers (ttft {fake_ttft_ms:g} ms, "
            f"itl {fake_itl_ms:g} ms)"
        )
        try:
            with _progress(console, quiet or processes > 1) as progress:
                if concurrencies or rates:
                    label = "concurrency" if concurrencies else "rate"

                    def on_point(point: Any) -> None:
                        m = point.metrics
                        v = (
                            point.config.max_concurrency
                            if concurrencies
                            else point.config.request_rate
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
                    )
                    out = output_file or Path("rlinf-bench-sweep.json")
                    png = plot_file or out.with_suffix(".png")
                    write_json(out, sweep_to_json(sweep))
                    plot_sweep(sweep, png)
                    console.print(_sweep_table(sweep))
                    console.print(f"wrote {out} and {png}", highlight=False)
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
                    status=lambda msg: err.print(msg, highlight=False, markup=False),
                )
        except KeyboardInterrupt:
            raise fail("interrupted (everything started was stopped)", 130) from None
        except Exception as exc:
            raise fail(f"{type(exc).__name__}: {exc}") from None
        console.print(render_result(result))
        if output_file is not None:
            append_jsonl(output_file, result_to_json(result, details=output_details))
            console.print(f"appended one JSON line to {output_file}", highlight=False)

    @app.command()
    def health(
        url: str = typer.Argument(..., help="router or server URL"),
        wait: float = typer.Option(0.0, help="wait up to this many seconds for readiness"),
    ) -> None:
        """GET /health (or wait for readiness); exit 0 when healthy."""
        from ._client import InferenceHTTPClient

        with InferenceHTTPClient(url) as client:
            if wait > 0:
                try:
                    kind = client.wait_until_ready(timeout=wait)
                except Exception as exc:
                    raise fail(f"not ready: {exc}") from None
                console.print(f"ready ({kind})")
                return
            if not client.health():
                raise fail(f"{url} is not healthy")
            console.print("healthy")

    @app.command()
    def generate(
        url: str = typer.Argument(..., help="router or server URL"),
        prompt: str = typer.Argument(..., help="prompt text"),
        max_new_tokens: int = typer.Option(64, help="max new tokens"),
        temperature: float = typer.Option(0.0, help="sampling temperature"),
        stream: bool = typer.Option(False, "--stream/--no-stream", help="stream the output"),
    ) -> None:
        """POST /generate and print the text."""
        from ._client import InferenceHTTPClient
        from .models import SingleSampleParams

        params: SingleSampleParams = {"max_new_tokens": max_new_tokens, "temperature": temperature}
        try:
            with InferenceHTTPClient(url) as client:
                if stream:
                    with client.generate(prompt, sampling_params=params, stream=True) as chunks:
                        for chunk in chunks:
                            sys.stdout.write(chunk.delta)
                            sys.stdout.flush()
                    sys.stdout.write("\n")
                    return
                out = client.generate(prompt, sampling_params=params)
                console.print(out.text, highlight=False, markup=False)
        except Exception as exc:
            raise fail(f"{type(exc).__name__}: {exc}") from None

    @app.command()
    def chat(
        url: str = typer.Argument(..., help="router or server URL"),
        message: str = typer.Argument(..., help="the user message"),
        model: str = typer.Option("default", help="model name"),
        max_tokens: int = typer.Option(64, help="max tokens"),
        temperature: float = typer.Option(0.0, help="sampling temperature"),
        stream: bool = typer.Option(False, "--stream/--no-stream", help="stream the output"),
    ) -> None:
        """POST /v1/chat/completions and print the reply."""
        from ._client import InferenceHTTPClient

        messages = [{"role": "user", "content": message}]
        try:
            with InferenceHTTPClient(url) as client:
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
        except Exception as exc:
            raise fail(f"{type(exc).__name__}: {exc}") from None

    @app.command("serve-fake")
    def serve_fake(
        host: str = typer.Option("127.0.0.1", help="bind address"),
        port: int = typer.Option(30000, help="port (0 = any free port)"),
        ttft_ms: float = typer.Option(20.0, help="time to first token (ms)"),
        itl_ms: float = typer.Option(5.0, help="inter-token latency (ms)"),
        incremental: bool = typer.Option(False, help="incremental streaming output"),
    ) -> None:
        """Run a fake sglang server (prints its URL first) until Ctrl-C."""
        from .testing import FakeConfig
        from .testing._server import run_worker_main

        config = FakeConfig(
            ttft_s=ttft_ms / 1000.0, itl_s=itl_ms / 1000.0, incremental_streaming=incremental
        )
        try:
            run_worker_main(host, port, config)
        except KeyboardInterrupt:
            pass

    return app


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


def _sweep_table(sweep: Any) -> Any:
    from rich.table import Table

    name = "concurrency" if sweep.parameter == "max_concurrency" else "rate (req/s)"
    table = Table(title="Sweep")
    for col in (
        name,
        "ok",
        "failed",
        "req/s",
        "out tok/s",
        "TTFT p50",
        "TTFT p99",
        "E2E p50",
        "E2E p99",
        "client",
    ):
        table.add_column(col, justify="right")
    for v, p in zip(sweep.values, sweep.points, strict=True):
        m = p.metrics
        table.add_row(
            f"{v:g}",
            str(m.completed),
            str(m.failed),
            f"{m.request_throughput:.2f}",
            f"{m.output_throughput:.0f}",
            f"{m.ttft_ms.median:.1f}",
            f"{m.ttft_ms.p99:.1f}",
            f"{m.e2e_latency_ms.median:.1f}",
            f"{m.e2e_latency_ms.p99:.1f}",
            "[bold red]SATURATED[/]" if m.client_saturated else "ok",
        )
    return table


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

    app(args=normalize_bench_argv(sys.argv[1:] if argv is None else argv), prog_name="rlinf-http")


if __name__ == "__main__":
    main()
