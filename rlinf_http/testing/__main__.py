"""``python -m rlinf_http.testing serve ...``: run a fake SGLang server.

The first line printed on stdout is the bound base URL.
"""

from __future__ import annotations

import argparse
import sys

from ._app import FakeConfig
from ._server import run_worker_main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rlinf_http.testing")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a fake SGLang server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    serve.add_argument("--ttft-ms", type=float, default=0.0, help="time to first token")
    serve.add_argument("--itl-ms", type=float, default=0.0, help="inter-token latency")
    serve.add_argument(
        "--incremental",
        action="store_true",
        help="behave like --incremental-streaming-output (delta streaming)",
    )
    serve.add_argument("--model-name", default="fake-model", help="served model name")
    serve.add_argument("--model-path", default=None, help="local dir (default: package dir)")
    serve.add_argument("--tokenizer-path", default=None)
    serve.add_argument("--stream-interval", type=int, default=1)
    serve.add_argument("--default-max-new-tokens", type=int, default=128)
    serve.add_argument("--eos-after", type=int, default=None)
    serve.add_argument(
        "--legacy-info-routes",
        action="store_true",
        help="only /get_server_info and /get_model_info (old server)",
    )
    serve.add_argument("--weight-version", default="default", help="initial weight version")
    serve.add_argument("--load-format", default="auto")
    serve.add_argument(
        "--weight-update-ms", type=float, default=0.0, help="how long a weight update takes"
    )
    serve.add_argument(
        "--worker-id", default=None, help="name sent as x-fake-worker on data-plane responses"
    )
    serve.add_argument("--embedding-dim", type=int, default=16)
    serve.add_argument("--max-running-requests", type=int, default=1024)
    serve.add_argument(
        "--disable-lora", action="store_true", help="behave as a server without --enable-lora"
    )
    serve.add_argument("--parent-pid", type=int, default=None, help="exit when this parent dies")
    serve.add_argument("--exit-on-stdin-eof", action="store_true", help="exit when stdin closes")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = _parser()
    args = parser.parse_args(argv)
    kwargs = {}
    if args.model_path is not None:
        kwargs["model_path"] = args.model_path
    try:
        config = FakeConfig(
            served_model_name=args.model_name,
            tokenizer_path=args.tokenizer_path,
            ttft_s=args.ttft_ms / 1000.0,
            itl_s=args.itl_ms / 1000.0,
            incremental_streaming=args.incremental,
            stream_interval=args.stream_interval,
            default_max_new_tokens=args.default_max_new_tokens,
            legacy_info_routes_only=args.legacy_info_routes,
            eos_after=args.eos_after,
            weight_version=args.weight_version,
            load_format=args.load_format,
            weight_update_s=args.weight_update_ms / 1000.0,
            worker_id=args.worker_id,
            embedding_dim=args.embedding_dim,
            max_running_requests=args.max_running_requests,
            enable_lora=not args.disable_lora,
            **kwargs,
        )
    except ValueError as exc:  # a negative or non-finite latency: exit 2
        parser.error(str(exc))
    try:
        run_worker_main(
            args.host,
            args.port,
            config,
            parent_pid=args.parent_pid,
            exit_on_stdin_eof=args.exit_on_stdin_eof,
        )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
