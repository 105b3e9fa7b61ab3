"""The data plane through the real smg 1.13 (and sglang-router 0.3.2, and a server).

Issue #17 item 2: ``model=`` optional, ``.routed_worker_id``, ``target_worker=``
and smg's own error bodies, against the real gateway binaries in front of fake
worker processes whose served model name is their model path (sglang's default,
so the seed's ``model=model_path`` is a served name).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlinf_http import (
    BadRequestError,
    InferenceHTTPClient,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
)
from rlinf_http.testing import (
    FakeConfig,
    FakeWorkerProcess,
    RouterProcess,
    launch_router,
    router_available,
    smg_available,
    start_fake_worker,
)

pytestmark = pytest.mark.skipif(not smg_available(), reason="needs the smg extra")

MODEL = FakeConfig().model_path  # sglang serves a model under its path by default
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def workers() -> Iterator[list[FakeWorkerProcess]]:
    config = FakeConfig(served_model_name=MODEL)
    started = [start_fake_worker(config=config) for _ in range(3)]
    try:
        yield started
    finally:
        for w in started:
            w.stop()


@pytest.fixture(scope="module")
def smg(workers: list[FakeWorkerProcess]) -> Iterator[RouterProcess]:
    with launch_router([w.url for w in workers], gateway="smg") as gw:
        yield gw


@pytest.fixture(scope="module")
def smg_hashing(workers: list[FakeWorkerProcess]) -> Iterator[RouterProcess]:
    with launch_router([w.url for w in workers], gateway="smg", policy="consistent_hashing") as gw:
        yield gw


@pytest.fixture(scope="module")
def old_router(workers: list[FakeWorkerProcess]) -> Iterator[RouterProcess]:
    if not router_available():
        pytest.skip("needs the router extra (sglang-router 0.3.2)")
    with launch_router([w.url for w in workers], gateway="sglang-router") as gw:
        yield gw


@pytest.fixture(params=["smg", "sglang-router", "server"])
def base_url(request: pytest.FixtureRequest, workers: list[FakeWorkerProcess]) -> str:
    if request.param == "server":
        return workers[0].url
    fixture = "smg" if request.param == "smg" else "old_router"
    gateway: RouterProcess = request.getfixturevalue(fixture)
    return gateway.url


# -- model= optional ------------------------------------------------------------------


def test_model_is_optional_on_every_openai_call(base_url: str) -> None:
    with InferenceHTTPClient(base_url) as client:
        assert client.chat_completion(HI, max_tokens=2).model == MODEL
        assert client.completion("hi", max_tokens=2).model == MODEL
        assert client.embed("hi").model == MODEL
        with client.chat_completion(HI, stream=True, max_tokens=2) as chunks:
            assert {c.model for c in chunks} == {MODEL}
        with client.completion("hi", stream=True, max_tokens=2) as parts:
            assert len(list(parts)) > 0
        many = client.chat_completion_many([HI] * 3, max_tokens=2)
        assert [out.model for out in many] == [MODEL] * 3
        assert len(client.completion_many(["a", "b"], max_tokens=2)) == 2
        # /v1/models was read once, by the first call
        assert client._driver.served_models.generation == 1


@pytest.mark.anyio
async def test_async_model_optional_reads_the_list_once(smg: RouterProcess) -> None:
    import anyio

    async with InferenceHTTPClient(smg.url) as client:
        outs: list[Any] = []

        async def one() -> None:
            outs.append(await client.async_chat_completion(HI, max_tokens=2))

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(one)
        assert {o.model for o in outs} == {MODEL}
        async with client.async_chat_completion_as_completed([HI] * 3, max_tokens=2) as done:
            assert len([i async for i, _ in done]) == 3
        stream = await client.async_completion("hi", stream=True, max_tokens=2)
        async with stream:
            assert len([c async for c in stream]) > 0
        assert client._driver.served_models.generation == 1


@pytest.mark.parametrize("gateway", ["smg", "old_router"])
def test_explicit_model_path_is_sent_as_given(gateway: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(gateway).url
    with InferenceHTTPClient(url) as client:
        assert client.chat_completion(HI, MODEL, max_tokens=2).model == MODEL
        assert client.completion("hi", model=MODEL, max_tokens=2).model == MODEL
        assert client._driver.served_models.ids is None  # never read


def test_stale_model_list_is_refreshed_once_on_model_not_found(smg: RouterProcess) -> None:
    with InferenceHTTPClient(smg.url) as client:
        client.chat_completion(HI, max_tokens=2)
        client._driver.served_models.store(("gone-model",))  # the gateway's models changed
        seen = client._driver.served_models.generation
        assert client.chat_completion(HI, max_tokens=2).model == MODEL
        assert client._driver.served_models.generation == seen + 1
        # With no retry allowed the error is raised, and the list is fresh for the next call.
        client._driver.served_models.store(("gone-model",))
        with pytest.raises(NotFoundError) as info:
            client.chat_completion(HI, max_tokens=2, max_retries=0)
        assert info.value.code == "model_not_found"
        assert client.chat_completion(HI, max_tokens=2, max_retries=0).model == MODEL


def test_fanout_with_a_stale_model_is_not_resent(smg: RouterProcess) -> None:
    with InferenceHTTPClient(smg.url) as client:
        client._driver.served_models.store(("gone-model",))
        with pytest.raises(NotFoundError):
            client.chat_completion_many([HI] * 2, max_tokens=2)
        assert client.chat_completion_many([HI] * 2, max_tokens=2)[0].model == MODEL


def test_several_served_models_raise_naming_them() -> None:
    configs = [FakeConfig(served_model_name=name) for name in ("model-a", "model-b")]
    two = [start_fake_worker(config=c) for c in configs]
    try:
        with launch_router([w.url for w in two], gateway="smg") as gw:
            with InferenceHTTPClient(gw.url) as client:
                with pytest.raises(InvalidRequestError, match="several models") as info:
                    client.chat_completion(HI, max_tokens=2)
                assert "'model-a'" in str(info.value) and "'model-b'" in str(info.value)
                assert client.chat_completion(HI, "model-b", max_tokens=2).model == "model-b"
                # one of them leaves: the same client sees it (several are never cached)
                client.remove_worker(two[1].url)
                assert client.chat_completion(HI, max_tokens=2).model == "model-a"
    finally:
        for w in two:
            w.stop()


# -- tokenize: the gateway's own registry ----------------------------------------------


@pytest.mark.parametrize("gateway", ["smg", "old_router"])
def test_tokenize_through_a_gateway_says_what_to_do(
    gateway: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(gateway).url
    with InferenceHTTPClient(url, max_retries=0) as client:
        with pytest.raises(BadRequestError) as info:
            client.tokenize("hello world")
        assert info.value.code == "tokenizer_not_found"
        assert "No tokenizers available" in (info.value.message or "")
        assert "POST /v1/tokenizers" in str(info.value)
        assert "client.copy(base_url=" in str(info.value)
        with pytest.raises(BadRequestError, match="tokenizer registry"):
            client.detokenize([1, 2])


def test_tokenize_on_a_server_without_model(workers: list[FakeWorkerProcess]) -> None:
    with InferenceHTTPClient(workers[0].url) as client:
        assert client.tokenize("hello world").count > 0
        assert isinstance(client.detokenize([1, 2]).text, str)


# -- routed_worker_id --------------------------------------------------------------------


def test_routed_worker_id_on_results_and_streams(
    smg: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    urls = {w.url for w in workers}
    with InferenceHTTPClient(smg.url) as client:
        assert client.chat_completion(HI, max_tokens=2).routed_worker_id in urls
        assert client.generate("hi").routed_worker_id in urls
        assert client.embed("hi").routed_worker_id in urls
        with client.completion("hi", stream=True, max_tokens=2) as stream:
            assert stream.routed_worker_id in urls
        many = client.generate_many(["a"] * 6)
        # round robin: each result names its own worker
        assert {out.routed_worker_id for out in many} == urls
        retried = client.chat_completion(HI, max_tokens=2, max_retries=5)
        assert retried.routed_worker_id in urls


@pytest.mark.anyio
async def test_async_routed_worker_id(smg: RouterProcess, workers: list[FakeWorkerProcess]) -> None:
    urls = {w.url for w in workers}
    async with InferenceHTTPClient(smg.url) as client:
        out = await client.async_completion("hi", max_tokens=2)
        assert out.routed_worker_id in urls
        stream = await client.async_chat_completion(HI, stream=True, max_tokens=2)
        async with stream:
            assert stream.routed_worker_id in urls


def test_routed_worker_id_is_none_where_no_gateway_says(
    old_router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    for url in (old_router.url, workers[0].url):
        with InferenceHTTPClient(url) as client:
            assert client.chat_completion(HI, max_tokens=2).routed_worker_id is None
            assert client.generate("hi").routed_worker_id is None
            with client.generate("hi", stream=True) as stream:
                assert stream.routed_worker_id is None


# -- target_worker -------------------------------------------------------------------------


def test_target_worker_url_pins_every_call(
    smg_hashing: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    with InferenceHTTPClient(smg_hashing.url) as client:
        for w in workers:
            assert (
                client.chat_completion(HI, max_tokens=2, target_worker=w.url).routed_worker_id
                == w.url
            )
            assert (
                client.completion("hi", max_tokens=2, target_worker=w.url + "/").routed_worker_id
                == w.url
            )
            assert client.embed("hi", target_worker=w.url).routed_worker_id == w.url
            assert client.generate("hi", target_worker=w.url).routed_worker_id == w.url
            assert (
                client.generate_group("hi", n=2, target_worker=w.url)[0].routed_worker_id == w.url
            )
            many = client.chat_completion_many([HI] * 3, max_tokens=2, target_worker=w.url)
            assert {out.routed_worker_id for out in many} == {w.url}
            outs = client.generate_many(["a", "b", "c"], target_worker=w.url)
            assert {out.routed_worker_id for out in outs} == {w.url}


def test_target_worker_index_is_smg_s_own(smg_hashing: RouterProcess) -> None:
    # An index is sent as given: for /generate smg counts in GET /workers order.
    with InferenceHTTPClient(smg_hashing.url) as client:
        listed = [w.url for w in client.list_workers()]
        for i, url in enumerate(listed):
            assert client.generate("hi", target_worker=i).routed_worker_id == url


@pytest.mark.anyio
async def test_async_target_worker(
    smg_hashing: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    url = workers[1].url
    async with InferenceHTTPClient(smg_hashing.url) as client:
        out = await client.async_chat_completion(HI, max_tokens=2, target_worker=url)
        assert out.routed_worker_id == url
        async with client.async_generate_as_completed(["a", "b"], target_worker=url) as done:
            assert {o.routed_worker_id async for _, o in done} == {url}
        async with client.async_chat_completion_as_completed(
            [HI] * 2, target_worker=url, max_tokens=2
        ) as done:
            assert {o.routed_worker_id async for _, o in done} == {url}


def test_target_worker_where_it_cannot_pin(
    old_router: RouterProcess, workers: list[FakeWorkerProcess]
) -> None:
    url = workers[0].url
    with InferenceHTTPClient(old_router.url) as client:
        with pytest.raises(InvalidRequestError, match="not smg"):
            client.generate("hi", target_worker=url)
    with InferenceHTTPClient(url) as client:
        with pytest.raises(InvalidRequestError, match="lists no workers"):
            client.chat_completion(HI, target_worker=url)


def test_target_worker_bad_values_raise_before_io(smg_hashing: RouterProcess) -> None:
    with InferenceHTTPClient(smg_hashing.url) as client:
        for bad in (-1, True, "worker-0", 1.5):
            with pytest.raises(InvalidRequestError, match="target_worker"):
                client.generate("hi", target_worker=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError, match="not a worker of"):
            client.generate("hi", target_worker="http://127.0.0.1:1")


# -- smg's error bodies --------------------------------------------------------------------


def test_smg_errors_are_typed_with_code_message_and_param(smg_hashing: RouterProcess) -> None:
    with InferenceHTTPClient(smg_hashing.url, max_retries=0) as client:
        with pytest.raises(NotFoundError) as nf:
            client.chat_completion(HI, "no-such-model")
        assert nf.value.code == "model_not_found"
        assert nf.value.message == "No worker available for model 'no-such-model'"
        with pytest.raises(BadRequestError) as missing:
            client.post("/v1/chat/completions", {"messages": HI})
        assert missing.value.code == "missing_required_parameter"
        assert missing.value.param == "model"
        assert "missing field `model`" in (missing.value.message or "")
        with pytest.raises(ServiceUnavailableError) as busy:
            client.generate("hi", target_worker=7)
        assert busy.value.code == "no_available_workers"
        assert busy.value.headers.get("x-smg-error-code") == "no_available_workers"


# -- the guide's smg blocks run against the real smg ------------------------------------

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def smg_guide_blocks() -> list[tuple[str, str]]:
    out = []
    for doc in ("docs/guide.md", "docs/guide.zh.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        out.extend((doc, code) for code in _FENCE.findall(text) if "target_worker=" in code)
    return out


def test_guide_has_smg_blocks_in_both_languages() -> None:
    assert {doc for doc, _ in smg_guide_blocks()} == {"docs/guide.md", "docs/guide.zh.md"}


@pytest.mark.parametrize(("doc", "code"), smg_guide_blocks(), ids=lambda v: str(v)[:20])
def test_guide_smg_block_runs(doc: str, code: str, smg_hashing: RouterProcess) -> None:
    namespace: dict[str, object] = {"router_url": smg_hashing.url, "__name__": "__main__"}
    try:
        exec(compile(code, doc, "exec"), namespace)
    finally:
        for value in namespace.values():
            if isinstance(value, InferenceHTTPClient):
                value.close()
