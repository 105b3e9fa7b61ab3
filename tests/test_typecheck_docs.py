"""Static types are checked, not assumed: every Python block of README.md,
docs/guide.md, docs/guide.zh.md and docs/bench.md, plus a file of ``assert_type`` checks of the
client's return types, go through ONE ``mypy --strict`` run.

Conventions for doc authors:

- Each block is checked as its own module. It may use ``router_url``,
  ``server_url`` and ``rl_gateway_url`` (smg with ``--enable-rl``) without
  defining them (the prelude below declares them as str).
- A block that is intentionally a fragment (it continues an earlier block, or
  shows a shape rather than a program) is preceded by the line
  ``<!-- typecheck: skip -->`` directly above its opening fence.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/guide.md", "docs/guide.zh.md", "docs/bench.md")
SKIP_MARK = "<!-- typecheck: skip -->"
PRELUDE = (
    'router_url = "http://127.0.0.1:30000"\nserver_url = "http://127.0.0.1:30001"\n'
    'rl_gateway_url = "http://127.0.0.1:30002"\n'
)
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)

# The return types the issue asks to be true (issue 9 item 10).
TYPE_CHECKS = """
from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

import numpy as np
import numpy.typing as npt

from rlinf_http import (
    AsyncStream,
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    DetokenizeResult,
    EmbeddingResponse,
    EncodeOutput,
    LoraAdapterResult,
    TokenizeResult,
    GenerateOutput,
    GenerateStreamChunk,
    InferenceHTTPClient,
    SamplingParams,
    SingleSampleParams,
    Stream,
    Usage,
)

Many = GenerateOutput | list[GenerateOutput]


def sync_calls(client: InferenceHTTPClient, cfg: dict[str, Any], k: int) -> None:
    assert_type(client.generate("a"), GenerateOutput)
    assert_type(client.generate(prompt="a", sampling_params={"max_new_tokens": 3}), GenerateOutput)
    assert_type(client.generate("a", sampling_params={"n": 1, "temperature": 0}), GenerateOutput)
    assert_type(client.generate(input_ids=[1, 2], sampling_params={"stop": ["x"]}), GenerateOutput)
    one: SingleSampleParams = {"max_new_tokens": 2, "custom_params": {"k": 1}}
    assert_type(client.generate("a", sampling_params=one), GenerateOutput)
    # n > 1 (or not known statically) may be a list: the type says so.
    assert_type(client.generate("a", sampling_params={"n": 3}), Many)
    assert_type(client.generate("a", sampling_params={"n": k}), Many)
    assert_type(client.generate("a", sampling_params=cfg), Many)
    assert_type(client.generate("a", sampling_params=SamplingParams(n=2)), Many)
    assert_type(client.generate(input_ids=[1], sampling_params={"n": 2}), Many)
    assert_type(client.generate(["a", "b"]), list[GenerateOutput])
    assert_type(client.generate(input_ids=[[1], [2]]), list[GenerateOutput])
    assert_type(client.generate("a", stream=True), Stream[GenerateStreamChunk])
    assert_type(client.generate_many(["a"]), list[GenerateOutput])
    assert_type(client.generate_many(["a"], sampling_params={"n": 2}), list[Many])
    assert_type(
        client.generate_many(["a"], return_exceptions=True), list[GenerateOutput | Exception]
    )
    assert_type(
        client.generate_many(["a"], sampling_params=cfg, return_exceptions=True),
        list[Many | Exception],
    )
    msgs = [{"role": "user", "content": "x"}]
    assert_type(client.chat_completion(msgs), ChatCompletion)
    assert_type(client.chat_completion(msgs).usage, Usage)
    assert_type(client.chat_completion_many([msgs]), list[ChatCompletion])
    assert_type(
        client.chat_completion_many([msgs], return_exceptions=True),
        list[ChatCompletion | Exception],
    )


def dataplane_calls(client: InferenceHTTPClient) -> None:
    assert_type(client.completion("a"), Completion)
    assert_type(client.completion([1, 2], stream=True), Stream[CompletionChunk])
    assert_type(client.completion_many(["a"]), list[Completion])
    assert_type(client.completion_many(["a"], return_exceptions=True), list[Completion | Exception])
    assert_type(client.embed("a"), EmbeddingResponse)
    assert_type(client.embed(["a"], as_numpy=True), npt.NDArray[np.float32])
    assert_type(client.encode("a"), EncodeOutput)
    assert_type(client.encode(input_ids=[1]), EncodeOutput)
    assert_type(client.encode(["a", "b"]), list[EncodeOutput])
    assert_type(client.encode(input_ids=[[1], [2]]), list[EncodeOutput])
    assert_type(client.tokenize("a"), TokenizeResult)
    assert_type(client.detokenize([1]), DetokenizeResult)
    assert_type(client.load_lora_adapter("a", "/p"), LoraAdapterResult)


async def async_dataplane_calls(client: InferenceHTTPClient) -> None:
    assert_type(await client.async_completion("a"), Completion)
    assert_type(await client.async_completion("a", stream=True), AsyncStream[CompletionChunk])
    assert_type(await client.async_completion_many(["a"]), list[Completion])
    assert_type(await client.async_embed("a"), EmbeddingResponse)
    assert_type(await client.async_encode(["a"]), list[EncodeOutput])
    assert_type(await client.async_tokenize("a"), TokenizeResult)
    assert_type(await client.async_unload_lora_adapter("a"), LoraAdapterResult)


async def async_calls(client: InferenceHTTPClient) -> None:
    assert_type(await client.async_generate("a"), GenerateOutput)
    assert_type(await client.async_generate("a", sampling_params={"n": 2}), Many)
    assert_type(await client.async_generate(["a"]), list[GenerateOutput])
    assert_type(
        await client.async_generate("a", stream=True), AsyncStream[GenerateStreamChunk]
    )
    assert_type(await client.async_generate_many(["a"]), list[GenerateOutput])
    assert_type(
        await client.async_generate_many(["a"], sampling_params={"n": 2}), list[Many]
    )
    msgs = [{"role": "user", "content": "x"}]
    assert_type(await client.async_chat_completion_many([msgs]), list[ChatCompletion])
    async with client.async_generate_as_completed(["a"]) as results:
        async for i, out in results:
            assert_type(i, int)
            assert_type(out, GenerateOutput)
    async with client.async_generate_as_completed(["a"], return_exceptions=True) as failing:
        async for _, maybe in failing:
            assert_type(maybe, GenerateOutput | Exception)
    async with client.async_chat_completion_as_completed([msgs]) as chats:
        async for _, reply in chats:
            assert_type(reply, ChatCompletion)


def every_overload_branch(client: InferenceHTTPClient, cfg: dict[str, Any]) -> None:
    # one check per overload of the endpoint classes (written once, sync generated)
    msgs = [{"role": "user", "content": "x"}]
    assert_type(client.generate("a", sampling_params=cfg), Many)
    assert_type(
        client.generate_many(["a"], return_exceptions=True), list[GenerateOutput | Exception]
    )
    assert_type(
        client.generate_many(["a"], sampling_params=cfg, return_exceptions=True),
        list[Many | Exception],
    )
    assert_type(client.chat_completion(msgs, stream=True), Stream[ChatCompletionChunk])
    assert_type(
        client.chat_completion_many([msgs], return_exceptions=True),
        list[ChatCompletion | Exception],
    )
    assert_type(client.completion("a", stream=False), Completion)
    assert_type(client.embed(["a"]), EmbeddingResponse)
    # GRPO groups: always lists, whatever n is
    assert_type(client.generate_group("a", n=4), list[GenerateOutput])
    assert_type(
        client.generate_group(input_ids=[1, 2], n=1, sampling_params=cfg), list[GenerateOutput]
    )
    assert_type(client.generate_groups(["a", "b"], n=4), list[list[GenerateOutput]])


async def async_every_overload_branch(client: InferenceHTTPClient, cfg: dict[str, Any]) -> None:
    msgs = [{"role": "user", "content": "x"}]
    assert_type(await client.async_generate(input_ids=[1]), GenerateOutput)
    assert_type(await client.async_generate("a", sampling_params=cfg), Many)
    assert_type(
        await client.async_generate_many(["a"], return_exceptions=True),
        list[GenerateOutput | Exception],
    )
    assert_type(await client.async_chat_completion(msgs), ChatCompletion)
    assert_type(
        await client.async_chat_completion(msgs, stream=True), AsyncStream[ChatCompletionChunk]
    )
    assert_type(await client.async_embed(["a"], as_numpy=True), npt.NDArray[np.float32])
    assert_type(await client.async_encode("a"), EncodeOutput)
    assert_type(await client.async_generate_group("a", n=4), list[GenerateOutput])
    assert_type(
        await client.async_generate_groups(input_ids=[[1], [2]], n=2),
        list[list[GenerateOutput]],
    )
"""


def doc_blocks() -> list[tuple[str, int, str]]:
    """``(doc, line, code)`` for every python block not marked as a fragment."""
    blocks = []
    for doc in DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            if before.strip() == SKIP_MARK:
                continue
            blocks.append((doc, line, match.group(1)))
    return blocks


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Run mypy --strict once; its error lines grouped by checked file name."""
    tmp = tmp_path_factory.mktemp("typecheck")
    names: dict[str, tuple[str, int]] = {}
    for doc, line, code in doc_blocks():
        name = re.sub(r"\W", "_", doc) + f"_line{line}.py"
        (tmp / name).write_text(PRELUDE + code, encoding="utf-8")
        names[name] = (doc, line - PRELUDE.count("\n"))
    (tmp / "client_types.py").write_text(TYPE_CHECKS, encoding="utf-8")
    stdout, stderr, _ = mypy_api.run(
        [
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp / ".mypy_cache"),
            "--python-version",
            "3.10",
            str(tmp),
        ]
    )
    shutil.rmtree(tmp / ".mypy_cache", ignore_errors=True)
    report: dict[str, list[str]] = {"<stderr>": [stderr] if stderr.strip() else []}
    for out_line in stdout.splitlines():
        if ": error:" not in out_line:
            continue
        path, lineno, message = out_line.split(":", 2)
        file_name = Path(path).name
        if file_name in names:  # report the line in the document
            doc, fence = names[file_name]
            report.setdefault(doc, []).append(f"{doc}:{fence + int(lineno)}:{message}")
        else:
            report.setdefault(file_name, []).append(out_line)
    return report


def test_there_are_doc_blocks_to_check() -> None:
    blocks = doc_blocks()
    assert {doc for doc, _, _ in blocks} == set(DOCS)
    assert len(blocks) >= 30


def test_doc_snippets_pass_mypy_strict(mypy_report: dict[str, list[str]]) -> None:
    assert mypy_report["<stderr>"] == []
    docs = {k: v for k, v in mypy_report.items() if k not in ("<stderr>", "client_types.py")}
    assert docs == {}, "\n".join(line for lines in docs.values() for line in lines)


def test_client_return_types_are_true(mypy_report: dict[str, list[str]]) -> None:
    assert mypy_report.get("client_types.py", []) == []
