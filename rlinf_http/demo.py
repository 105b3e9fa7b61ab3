"""A short tour against the embedded fake sglang server: ``python -m rlinf_http.demo``.

Starts a fake server on a loopback port, then shows health, generate, chat,
streaming, and an async fan-out of 1,000 requests with its request rate.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from . import InferenceHTTPClient
from .testing import FakeConfig, FakeServer


async def _fan_out(url: str, n: int) -> float:
    async with InferenceHTTPClient(url) as client:
        prompts = [f"prompt number {i}" for i in range(n)]
        started = time.perf_counter()
        outs = await asyncio.gather(
            *(
                client.async_generate(prompt=p, sampling_params={"max_new_tokens": 8})
                for p in prompts
            )
        )
        elapsed = time.perf_counter() - started
        assert all(o.meta_info.completion_tokens == 8 for o in outs)
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args(argv)
    with FakeServer(config=FakeConfig()) as server:
        print(f"fake sglang server at {server.url}")
        client = InferenceHTTPClient(server.url)
        print("health:", client.health())
        out = client.generate(
            prompt="The capital of France is",
            sampling_params={"temperature": 0.0, "max_new_tokens": 8},
        )
        print(
            f"generate: {out.text!r} ({out.meta_info.completion_tokens} tokens, "
            f"finish={out.meta_info.finish_reason})"
        )
        reply = client.chat_completion(
            messages=[{"role": "user", "content": "Hello"}], temperature=0.0, max_tokens=8
        )
        print(
            f"chat: {reply.choices[0].message.content!r} "
            f"(usage: {reply.usage.total_tokens if reply.usage else '?'} tokens)"
        )
        with client.generate(
            prompt="Stream me", sampling_params={"max_new_tokens": 4}, stream=True
        ) as stream:
            print("stream deltas:", [chunk.delta for chunk in stream])
        client.close()
        elapsed = asyncio.run(_fan_out(server.url, args.requests))
        print(
            f"async fan-out: {args.requests} requests in {elapsed:.2f} s "
            f"= {args.requests / elapsed:,.0f} req/s (client and server share this machine)"
        )


if __name__ == "__main__":
    main()
