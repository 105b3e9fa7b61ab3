"""GRPO groups: ``n`` samples of a prompt, always a list, over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlinf_http import GenerateOutput, InferenceHTTPClient, InvalidRequestError, SamplingParams
from rlinf_http.testing import FakeServer


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


def test_generate_group_returns_n_samples(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        group = client.generate_group("one two three", n=4, sampling_params={"max_new_tokens": 3})
        assert isinstance(group, list) and len(group) == 4
        assert all(isinstance(out, GenerateOutput) for out in group)
        assert len({out.meta_info.id for out in group}) == 4
        single = client.generate_group(input_ids=[1, 2, 3], n=1)
        assert isinstance(single, list) and len(single) == 1
        typed = client.generate_group("x", n=2, sampling_params=SamplingParams(max_new_tokens=2))
        assert len(typed) == 2


def test_generate_groups_keeps_input_order(server: FakeServer) -> None:
    prompts = ["a", "a b", "a b c"]
    with InferenceHTTPClient(server.url) as client:
        groups = client.generate_groups(prompts, n=3, concurrency=2)
    assert [len(g) for g in groups] == [3, 3, 3]
    for prompt, group in zip(prompts, groups, strict=True):
        assert {out.meta_info.prompt_tokens for out in group} == {len(prompt.split())}


@pytest.mark.anyio
async def test_async_generate_group_and_groups(server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url) as client:
        group = await client.async_generate_group("hello", n=2)
        assert len(group) == 2
        groups = await client.async_generate_groups(input_ids=[[1], [1, 2]], n=2)
        assert [len(g) for g in groups] == [2, 2]


def test_group_arguments_checked_before_io() -> None:
    client = InferenceHTTPClient("http://127.0.0.1:9")  # nothing listens: no I/O may happen
    with pytest.raises(InvalidRequestError, match="n must be an int"):
        client.generate_group("a", n=0)
    with pytest.raises(InvalidRequestError, match="n=2"):
        client.generate_group("a", n=3, sampling_params={"n": 2})
    with pytest.raises(InvalidRequestError, match="generate_groups"):
        client.generate_group(["a", "b"], n=2)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="generate_groups"):
        client.generate_group(input_ids=[[1], [2]], n=2)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="n must be an int"):
        client.generate_groups(["a"], n=True)
