"""Issue 9 item 9: a sampling parameter given as a keyword is refused before any I/O,
on every entry point that builds a /generate or chat request (mocked transport)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest
import respx

from rlinf_http import InferenceHTTPClient, InvalidRequestError

BASE = "http://127.0.0.1:30000"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False, using="httpx") as router:
        router.post("/generate").mock(return_value=httpx.Response(500))
        router.post("/v1/chat/completions").mock(return_value=httpx.Response(500))
        yield router


def test_sync_calls_refuse_before_sending(mock: respx.MockRouter) -> None:
    with InferenceHTTPClient(BASE, max_retries=0) as client:
        with pytest.raises(InvalidRequestError, match=r"sampling_params=\{'max_new_tokens': 3\}"):
            client.generate("hi", max_new_tokens=3)
        with pytest.raises(InvalidRequestError, match="sampling_params="):
            client.generate("hi", stream=True, temperature=0.0)
        with pytest.raises(InvalidRequestError, match="sampling_params="):
            client.generate_many(["a", "b"], top_p=0.5)
        with pytest.raises(InvalidRequestError, match="spells it max_tokens="):
            client.chat_completion(MESSAGES, max_new_tokens=3)
        with pytest.raises(InvalidRequestError, match="spells it seed="):
            client.chat_completion_many([MESSAGES], sampling_seed=1)
    assert mock.calls.call_count == 0


@pytest.mark.anyio
async def test_async_calls_refuse_before_sending(mock: respx.MockRouter) -> None:
    async with InferenceHTTPClient(BASE, max_retries=0) as client:
        with pytest.raises(InvalidRequestError, match="sampling_params="):
            await client.async_generate("hi", n=2)
        with pytest.raises(InvalidRequestError, match="sampling_params="):
            await client.async_generate_many(["a"], stop=["x"])
        with pytest.raises(InvalidRequestError, match="spells it min_tokens="):
            await client.async_chat_completion(MESSAGES, stream=True, min_new_tokens=1)
        with pytest.raises(InvalidRequestError, match="sampling_params="):
            client.async_generate_as_completed(["a"], max_tokens=3)
    await anyio.lowlevel.checkpoint()
    assert mock.calls.call_count == 0
