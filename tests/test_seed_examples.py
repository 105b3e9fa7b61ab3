"""The RLinf seed guide's examples, verbatim but for the import line, against
(a) the fake sglang server on a real socket and (b) the real sglang-router in front
of two fake worker processes.

The guide's code is kept as text and executed; only
``from rlinf.utils.http_client import InferenceHTTPClient`` became
``from rlinf_http import InferenceHTTPClient`` (the guide's lost indentation is
restored). The names the guide assumes (``router_url``, ``cfg``, ``prompts``,
``server_group``) are provided by the test.
"""

from __future__ import annotations

import textwrap
import types
from collections.abc import Iterator
from typing import Any

import pytest

from rlinf_http import ChatCompletion, FinishLength, GenerateOutput, Usage

testing = pytest.importorskip("rlinf_http.testing")

SEED_IMPORT = "from rlinf.utils.http_client import InferenceHTTPClient"
OUR_IMPORT = "from rlinf_http import InferenceHTTPClient"

SYNC_EXAMPLE = """
from rlinf.utils.http_client import InferenceHTTPClient
client = InferenceHTTPClient(router_url) # 此时未建 session——同步方法用 requests
assert client.health()
out = client.generate(
    prompt="The capital of France is",
    sampling_params={"temperature": 0.0, "max_new_tokens": 32},
)
reply = client.chat_completion(
    messages=[{"role": "user", "content": "Hello"}],
    model=cfg.router_server_args.model_path, # router 接受任意字符串
    temperature=0.0,
    max_tokens=32,
)
"""

FAN_OUT_EXAMPLE = """
import asyncio
from rlinf.utils.http_client import InferenceHTTPClient
async def fan_out(router_url: str, prompts: list[str]) -> list[dict]:
    async with InferenceHTTPClient(router_url) as client:
        tasks = [
            client.async_generate(
                prompt=p,
                sampling_params={"temperature": 0.0, "max_new_tokens": 32},
            )
            for p in prompts
        ]
        return await asyncio.gather(*tasks)
results = asyncio.run(fan_out(router_url, prompts))
"""

CHAT_MANY_EXAMPLE = """
import asyncio
from rlinf.utils.http_client import InferenceHTTPClient
async def chat_many(
    router_url: str,
    model: str,
    messages_list: list[list[dict]],
) -> list[dict]:
    async with InferenceHTTPClient(router_url) as client:
        tasks = [
            client.async_chat_completion(
                messages=m, model=model, temperature=0.0, max_tokens=32
            )
            for m in messages_list
        ]
        return await asyncio.gather(*tasks)
"""
# The guide defines chat_many without calling it; the test calls it like fan_out.
CHAT_MANY_CALL = "replies = asyncio.run(chat_many(router_url, model, messages_list))"

DIRECT_EXAMPLE = """
from rlinf.utils.http_client import InferenceHTTPClient
server_urls = server_group.get_server_url().wait()
direct = InferenceHTTPClient(server_urls[0])
"""


def run_seed(code: str, namespace: dict[str, Any]) -> dict[str, Any]:
    source = textwrap.dedent(code)
    assert source.count(SEED_IMPORT) == 1
    exec(compile(source.replace(SEED_IMPORT, OUR_IMPORT), "<seed-guide>", "exec"), namespace)
    return namespace


class _Waitable:
    def __init__(self, value: Any) -> None:
        self._value = value

    def wait(self) -> Any:
        return self._value


def seed_names(router_url: str, server_urls: list[str]) -> dict[str, Any]:
    cfg = types.SimpleNamespace(
        router_server_args=types.SimpleNamespace(model_path="/models/Qwen2.5-0.5B-Instruct")
    )
    server_group = types.SimpleNamespace(get_server_url=lambda: _Waitable(server_urls))
    return {
        "router_url": router_url,
        "cfg": cfg,
        "prompts": [f"Question {i}: what is {i} + {i}?" for i in range(24)],
        "model": cfg.router_server_args.model_path,
        "messages_list": [[{"role": "user", "content": f"Hello {i}"}] for i in range(12)],
        "server_group": server_group,
    }


@pytest.fixture(scope="module", params=["fake-server", "sglang-router"])
def deployment(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str]]]:
    """``(router_url, server_urls)`` of a running deployment."""
    if request.param == "fake-server":
        with testing.FakeServer() as srv:
            yield srv.url, [srv.url]
        return
    if not testing.router_available():
        pytest.skip("sglang-router (with its Rust extension) is not installed")
    workers = []
    try:
        for _ in range(2):
            workers.append(testing.start_fake_worker())
        with testing.launch_router([w.url for w in workers]) as router:
            yield router.url, [w.url for w in workers]
    finally:
        for worker in workers:
            worker.stop()


EXPECTED_32 = testing.FakeSGLangApp.output_text(32)


def check_generate(out: Any) -> None:
    assert isinstance(out, GenerateOutput)
    assert out.text == EXPECTED_32
    assert out["text"] == EXPECTED_32
    assert out.output_ids == testing.FakeSGLangApp.output_ids(32)
    assert out.meta_info.completion_tokens == 32
    assert out["meta_info"]["completion_tokens"] == 32
    assert out.meta_info.prompt_tokens > 0
    assert isinstance(out.finish_reason, FinishLength)


def check_chat(reply: Any) -> None:
    assert isinstance(reply, ChatCompletion)
    content = reply.choices[0].message.content
    assert isinstance(content, str) and content.strip()
    assert reply["choices"][0]["message"]["content"] == content
    assert reply.choices[0].message.role == "assistant"
    assert isinstance(reply.usage, Usage)
    assert reply.usage.completion_tokens == 32
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 32


def test_sync_example(deployment: tuple[str, list[str]]) -> None:
    router_url, server_urls = deployment
    ns = run_seed(SYNC_EXAMPLE, seed_names(router_url, server_urls))
    check_generate(ns["out"])
    check_chat(ns["reply"])
    ns["client"].close()


def test_async_fan_out_example(deployment: tuple[str, list[str]]) -> None:
    router_url, server_urls = deployment
    names = seed_names(router_url, server_urls)
    ns = run_seed(FAN_OUT_EXAMPLE, names)
    results = ns["results"]
    assert isinstance(results, list)
    assert len(results) == len(names["prompts"])
    for out in results:
        check_generate(out)
    # Every request id is distinct: 24 separate requests, not one answer repeated.
    assert len({out.meta_info.id for out in results}) == len(results)


def test_async_chat_many_example(deployment: tuple[str, list[str]]) -> None:
    router_url, server_urls = deployment
    names = seed_names(router_url, server_urls)
    ns = run_seed(CHAT_MANY_EXAMPLE + CHAT_MANY_CALL, names)
    replies = ns["replies"]
    assert len(replies) == len(names["messages_list"])
    for reply in replies:
        check_chat(reply)
        assert reply.model  # echoed model name


def test_direct_to_server_example(deployment: tuple[str, list[str]]) -> None:
    router_url, server_urls = deployment
    ns = run_seed(DIRECT_EXAMPLE, seed_names(router_url, server_urls))
    direct = ns["direct"]
    assert direct.base_url == server_urls[0]
    assert direct.health() is True
    out = direct.generate(
        prompt="The capital of France is",
        sampling_params={"temperature": 0.0, "max_new_tokens": 32},
    )
    check_generate(out)
    # A batch works against a server directly (the router refuses batches).
    outs = direct.generate(prompt=["a", "b"], sampling_params={"max_new_tokens": 32})
    assert isinstance(outs, list) and len(outs) == 2
    for item in outs:
        check_generate(item)
    direct.close()
