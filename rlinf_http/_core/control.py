"""The RL control plane without I/O: argument checks, bodies, answers and plans.

Every control endpoint of an sglang server (weights, pause/continue, memory,
loads) is built here. Arguments are checked when the plan is made, before any
I/O (:class:`InvalidRequestError`); bodies are encoded as sglang requires (a
JSON object, ``{}`` where every field has a default, bytes as base64); answers
of every shape sglang uses (JSON, ``null``, empty, text) are parsed. Multi-step
calls -- a ``/begin_weight_update`` ... ``/end_weight_update`` session around an
update, worker discovery from the router's ``GET /workers`` -- are plans,
driven by the client's one sync and one async driver.

sglang-router 0.3.2 forwards none of these endpoints (it answers 404), so a
caller sends each one to every worker: :mod:`rlinf_http._fleet` does that
concurrently, or through smg's RL control plane, which runs these same plans
(:mod:`.rl_gateway`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import pydantic
import pydantic_core

from .._errors import (
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    CacheNotFlushedError,
    InvalidRequestError,
    NotFoundError,
    RLinfHTTPError,
    WeightUpdateError,
)
from ..models import (
    GenerationControlResult,
    Loads,
    WeightUpdateResult,
    WeightVersionResult,
    WorkerList,
)
from ..models._base import ResponseModel
from .plans import Call, Plan, model_info_plan
from .requests import JSON_CONTENT_TYPE, Operation, build_health, check_timeout, encode_json
from .responses import RawResponse, parse_model, recast, status_error

__all__ = [
    "LOAD_SECTIONS",
    "MEMORY_TAGS",
    "PAUSE_MODES",
    "SELECTORS",
    "WORKER_TYPES",
    "PauseMode",
    "Selector",
    "begin_weight_update_plan",
    "continue_generation_plan",
    "destroy_weights_update_group_plan",
    "discover_workers_plan",
    "end_weight_update_plan",
    "health_plan",
    "init_weights_update_group_plan",
    "loads_plan",
    "pause_generation_plan",
    "release_memory_occupation_plan",
    "resume_memory_occupation_plan",
    "update_weight_version_plan",
    "update_weights_from_disk_plan",
    "update_weights_from_distributed_plan",
    "update_weights_from_tensor_plan",
    "weight_version_plan",
    "worker_state_plan",
    "worker_url",
    "worker_urls",
]

R = TypeVar("R", bound=ResponseModel)

PauseMode = Literal["abort", "retract", "in_place"]
Selector = Literal["all", "target", "draft"]
#: What a worker's own probe says (see :func:`worker_state_plan`).
WorkerState = Literal["ready", "not_ready", "unresponsive", "dead"]

#: ``pause_generation`` modes: ``abort`` ends running requests (they return with
#: ``finish_reason.type == "abort"``); ``retract`` and ``in_place`` hold them
#: until ``continue_generation`` (``retract`` frees their KV cache, ``in_place``
#: keeps it).
PAUSE_MODES: tuple[str, ...] = ("abort", "retract", "in_place")
#: Which model runners a weight update loads: the target model, the speculative
#: draft model, or both.
SELECTORS: tuple[str, ...] = ("all", "target", "draft")
#: GPU memory kinds ``release_memory_occupation`` / ``resume_memory_occupation`` take.
MEMORY_TAGS: tuple[str, ...] = ("kv_cache", "weights", "cuda_graph")
#: The sections ``GET /v1/loads?include=`` accepts (a bad name makes the server fail).
LOAD_SECTIONS: tuple[str, ...] = ("core", "memory", "spec", "lora", "disagg", "queues", "all")
#: The router's worker types.
WORKER_TYPES: tuple[str, ...] = ("regular", "prefill", "decode")

_JSON = (("content-type", JSON_CONTENT_TYPE),)

# sglang's message when the load succeeded but the cache flush after it failed.
_FLUSH_FAILED = re.compile(r"flush", re.IGNORECASE)
# A DP-aware router lists one entry per rank: http://host:port@<rank>.
_RANK_SUFFIX = re.compile(r"@\d+$")


# -- argument checks ------------------------------------------------------------------


def _text(value: object, what: str, *, optional: bool = False) -> str | None:
    """A non-empty str (or ``None`` when ``optional``); sglang rejects other types."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        hint = " (sglang takes strings only: pass str(...))" if isinstance(value, int) else ""
        allowed = "a non-empty str" + (" or None" if optional else "")
        raise InvalidRequestError(f"{what} must be {allowed}, got {value!r}{hint}")
    return value


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequestError(f"{what} must be True or False, got {value!r}")
    return value


def _integer(value: object, what: str, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"{what} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidRequestError(f"{what} must be {bound}, got {value}")
    return value


def _choice(value: object, what: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        names = ", ".join(repr(c) for c in choices)
        raise InvalidRequestError(f"{what} must be one of {names}, got {value!r}")
    return value


def _extra(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    fields = dict(extra or {})
    for key in fields:
        if not isinstance(key, str) or not key:
            raise InvalidRequestError(f"extra field names must be non-empty str, got {key!r}")
    return fields


def _tags(tags: Sequence[str] | None) -> list[str] | None:
    """Memory tags: ``None`` means all three (sglang's own default)."""
    if tags is None:
        return None
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise InvalidRequestError(f"tags must be a list of tag names or None, got {tags!r}")
    out: list[str] = []
    for tag in tags:
        _choice(tag, "each memory tag", MEMORY_TAGS)
        if tag in out:
            raise InvalidRequestError(f"memory tag {tag!r} is given twice")
        out.append(tag)
    if not out:
        raise InvalidRequestError(
            "tags is empty: give None for every tag, or some of " + str(MEMORY_TAGS)
        )
    return out


def _dtype_name(dtype: object) -> str:
    """``"bfloat16"`` from ``"bfloat16"``, ``"torch.bfloat16"`` or ``torch.bfloat16``."""
    text = (
        dtype
        if isinstance(dtype, str)
        else str(dtype)
        if type(dtype).__module__ == "torch"
        else None
    )
    if not text or not text.removeprefix("torch.").isidentifier():
        raise InvalidRequestError(
            f"each dtype must be a torch dtype name such as 'bfloat16', got {dtype!r}"
        )
    return text.removeprefix("torch.")


def _shape(shape: object) -> list[int]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise InvalidRequestError(f"each shape must be a list of ints, got {shape!r}")
    return [_integer(dim, "each shape dimension", low=0) for dim in shape]


def _base64_entry(entry: object) -> str:
    """One ``serialized_named_tensors`` entry as the base64 text sglang expects."""
    if isinstance(entry, (bytes, bytearray, memoryview)):
        return base64.b64encode(entry).decode("ascii")
    if isinstance(entry, str):
        try:
            base64.b64decode(entry, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestError(
                "a str entry of serialized_named_tensors must be base64 text "
                "(pass the serialized bytes to have them encoded)"
            ) from None
        return entry
    raise InvalidRequestError(
        "serialized_named_tensors entries must be bytes (or base64 str), "
        f"got {type(entry).__name__}"
    )


# -- answers --------------------------------------------------------------------------


def _value(raw: RawResponse) -> Any:
    """The body as JSON when it parses, else as text (``None`` when empty)."""
    if not raw.content.strip():
        return None
    try:
        return pydantic_core.from_json(raw.content)
    except ValueError:
        return raw.content.decode("utf-8", errors="replace").strip()


def _as_weight_error(error: APIStatusError, flush: bool) -> WeightUpdateError:
    """The typed weight-update failure for a refused weight call."""
    message = error.message or ""
    cls = CacheNotFlushedError if flush and _FLUSH_FAILED.search(message) else WeightUpdateError
    text = str(error)
    if cls is CacheNotFlushedError:
        text = f"{text} -- {CacheNotFlushedError.GUIDANCE}"
    return recast(error, cls, text)


def _parse_result(model: type[R], flush: bool, raw: RawResponse) -> R:
    """A ``{"success", "message", ...}`` / ``{"message", "status"}`` answer as ``model``.

    ``null`` or an empty body is a bare success; text becomes the message; a 2xx
    that says ``"success": false`` is a failure all the same.
    """
    value = _value(raw)
    if value is None:
        return model()
    if isinstance(value, str):
        return model.model_validate({"message": value})
    if isinstance(value, dict) and value.get("success") is False:
        raise _as_weight_error(status_error(raw), flush)
    return parse_model(_adapter(model), raw)  # else APIResponseValidationError


_ADAPTERS: dict[type[Any], pydantic.TypeAdapter[Any]] = {}


def _adapter(model: type[R]) -> pydantic.TypeAdapter[R]:
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = pydantic.TypeAdapter(model)
    return adapter


def _parse_none(raw: RawResponse) -> None:
    """Any 2xx: ``null``, an empty body or text all mean done."""
    return None


def _parse_loads(raw: RawResponse) -> Loads:
    return parse_model(_adapter(Loads), raw)


def _post(
    path: str, body: Mapping[str, Any], parse: Callable[[RawResponse], Any]
) -> Operation[Any]:
    return Operation("POST", path, encode_json(dict(body), f"the {path} body"), _JSON, parse)


# -- plans ----------------------------------------------------------------------------


def _single(op: Operation[Any], *, max_retries: int | None = 0) -> Plan[Any]:
    return (yield Call(op, max_retries=max_retries))


def _weight_call(op: Operation[R], flush: bool) -> Plan[R]:
    """One weight call: a 400 is a :class:`WeightUpdateError` with the server's message.

    Weight calls are never resent: a load may already have started.
    """
    try:
        result: R = yield Call(op, max_retries=0)
    except BadRequestError as exc:
        raise _as_weight_error(exc, flush) from None
    return result


def _weight_op(
    path: str, body: Mapping[str, Any], flush: bool = False
) -> Operation[WeightUpdateResult]:
    return _post(path, body, functools.partial(_parse_result, WeightUpdateResult, flush))


def _in_session(selector: Selector, update: Plan[R]) -> Plan[R]:
    """``begin_weight_update`` -> ``update`` -> ``end_weight_update``.

    The session is ended even when the update fails (that error is raised);
    sglang 0.5.23 refuses distributed and tensor updates outside a session.
    """
    yield from begin_weight_update_plan(selector)
    try:
        result: R = yield from update
    except RLinfHTTPError:
        with contextlib.suppress(RLinfHTTPError):
            yield from end_weight_update_plan()
        raise
    yield from end_weight_update_plan()
    return result


def update_weights_from_disk_plan(
    model_path: str,
    *,
    load_format: str | None = None,
    weight_version: str | None = None,
    abort_all_requests: bool = False,
    flush_cache: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> Plan[WeightUpdateResult]:
    """``POST /update_weights_from_disk``: load a checkpoint in place."""
    body: dict[str, Any] = {
        **_extra(extra),
        "model_path": _text(model_path, "model_path"),
        "abort_all_requests": _flag(abort_all_requests, "abort_all_requests"),
        "flush_cache": _flag(flush_cache, "flush_cache"),
    }
    if _text(load_format, "load_format", optional=True) is not None:
        body["load_format"] = load_format
    if _text(weight_version, "weight_version", optional=True) is not None:
        body["weight_version"] = weight_version
    return _weight_call(_weight_op("/update_weights_from_disk", body, flush_cache), flush_cache)


def init_weights_update_group_plan(
    master_address: str,
    master_port: int,
    rank_offset: int,
    world_size: int,
    *,
    group_name: str = "weight_update_group",
    backend: str = "nccl",
) -> Plan[WeightUpdateResult]:
    """``POST /init_weights_update_group``: join the trainer's process group.

    It returns only once the rendezvous completed: run the trainer's side of
    the group init concurrently.
    """
    world = _integer(world_size, "world_size", low=2)
    body = {
        "master_address": _text(master_address, "master_address"),
        "master_port": _integer(master_port, "master_port", low=1, high=65535),
        "rank_offset": _integer(rank_offset, "rank_offset", low=1, high=world - 1),
        "world_size": world,
        "group_name": _text(group_name, "group_name"),
        "backend": _text(backend, "backend"),
    }
    return _weight_call(_weight_op("/init_weights_update_group", body), False)


def destroy_weights_update_group_plan(
    group_name: str = "weight_update_group",
) -> Plan[WeightUpdateResult]:
    """``POST /destroy_weights_update_group``."""
    body = {"group_name": _text(group_name, "group_name")}
    return _weight_call(_weight_op("/destroy_weights_update_group", body), False)


def begin_weight_update_plan(selector: Selector = "all") -> Plan[WeightUpdateResult]:
    """``POST /begin_weight_update`` (a 400 if a session is already open)."""
    body = {"selector": _choice(selector, "selector", SELECTORS)}
    return _weight_call(_weight_op("/begin_weight_update", body), False)


def end_weight_update_plan() -> Plan[WeightUpdateResult]:
    """``POST /end_weight_update`` (a 400 if no session is open)."""
    return _weight_call(_weight_op("/end_weight_update", {}), False)


def _update_fields(
    *,
    flush_cache: bool,
    abort_all_requests: bool,
    weight_version: str | None,
    load_format: str | None,
    selector: str,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The fields the distributed and tensor updates share."""
    body: dict[str, Any] = {
        **_extra(extra),
        "flush_cache": _flag(flush_cache, "flush_cache"),
        "abort_all_requests": _flag(abort_all_requests, "abort_all_requests"),
        "selector": _choice(selector, "selector", SELECTORS),
    }
    if _text(weight_version, "weight_version", optional=True) is not None:
        body["weight_version"] = weight_version
    if _text(load_format, "load_format", optional=True) is not None:
        body["load_format"] = load_format
    return body


def _session_update(
    path: str, body: dict[str, Any], selector: Selector, wrap_session: bool
) -> Plan[WeightUpdateResult]:
    flush = bool(body["flush_cache"])
    update = _weight_call(_weight_op(path, body, flush), flush)
    if _flag(wrap_session, "wrap_session"):
        return _in_session(selector, update)
    return update


def update_weights_from_distributed_plan(
    names: Sequence[str],
    dtypes: Sequence[Any],
    shapes: Sequence[Sequence[int]],
    *,
    group_name: str = "weight_update_group",
    flush_cache: bool = True,
    abort_all_requests: bool = False,
    weight_version: str | None = None,
    load_format: str | None = None,
    selector: Selector = "all",
    wrap_session: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Plan[WeightUpdateResult]:
    """``POST /update_weights_from_distributed``: receive tensors broadcast by the trainer.

    The trainer (rank 0 of the group) broadcasts the tensors in ``names`` order
    while this call is pending. ``wrap_session`` sends ``/begin_weight_update``
    before and ``/end_weight_update`` after (sglang 0.5.23 needs the session).
    """
    for what, items in (("names", names), ("dtypes", dtypes), ("shapes", shapes)):
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise InvalidRequestError(f"{what} must be a list, got {items!r}")
    if not names:
        raise InvalidRequestError("names is empty: give the parameters to receive")
    if not len(names) == len(dtypes) == len(shapes):
        raise InvalidRequestError(
            f"names, dtypes and shapes must have one entry per tensor, got "
            f"{len(names)}, {len(dtypes)} and {len(shapes)}"
        )
    body = _update_fields(
        flush_cache=flush_cache,
        abort_all_requests=abort_all_requests,
        weight_version=weight_version,
        load_format=load_format,
        selector=selector,
        extra=extra,
    )
    body["names"] = [_text(name, "each name") for name in names]
    body["dtypes"] = [_dtype_name(dtype) for dtype in dtypes]
    body["shapes"] = [_shape(shape) for shape in shapes]
    body["group_name"] = _text(group_name, "group_name")
    return _session_update("/update_weights_from_distributed", body, selector, wrap_session)


def update_weights_from_tensor_plan(
    serialized_named_tensors: Sequence[bytes | str],
    *,
    load_format: str | None = None,
    flush_cache: bool = True,
    abort_all_requests: bool = False,
    weight_version: str | None = None,
    selector: Selector = "all",
    wrap_session: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Plan[WeightUpdateResult]:
    """``POST /update_weights_from_tensor``: one serialized payload per TP rank.

    Bytes are base64-encoded for the wire (a str entry must already be base64).
    """
    entries = serialized_named_tensors
    if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence) or not entries:
        raise InvalidRequestError(
            "serialized_named_tensors must be a non-empty list (one entry per TP rank)"
        )
    body = _update_fields(
        flush_cache=flush_cache,
        abort_all_requests=abort_all_requests,
        weight_version=weight_version,
        load_format=load_format,
        selector=selector,
        extra=extra,
    )
    body["serialized_named_tensors"] = [_base64_entry(entry) for entry in entries]
    return _session_update("/update_weights_from_tensor", body, selector, wrap_session)


def update_weight_version_plan(
    new_version: str, abort_all_requests: bool = True
) -> Plan[WeightVersionResult]:
    """``POST /update_weight_version`` (sglang aborts in-flight requests by default)."""
    body = {
        "new_version": _text(new_version, "new_version"),
        "abort_all_requests": _flag(abort_all_requests, "abort_all_requests"),
    }
    parse = functools.partial(_parse_result, WeightVersionResult, False)
    return _weight_call(_post("/update_weight_version", body, parse), False)


def weight_version_plan() -> Plan[str | None]:
    """The live weight version, from ``/model_info`` (``/server_info`` keeps the startup one)."""
    info = yield from model_info_plan()
    return info.weight_version


def pause_generation_plan(mode: PauseMode = "abort") -> Plan[GenerationControlResult]:
    """``POST /pause_generation``; ``abort`` returns once no request is in flight."""
    body = {"mode": _choice(mode, "mode", PAUSE_MODES)}
    parse = functools.partial(_parse_result, GenerationControlResult, False)
    return _single(_post("/pause_generation", body, parse), max_retries=None)


def continue_generation_plan(torch_empty_cache: bool = True) -> Plan[GenerationControlResult]:
    """``POST /continue_generation``."""
    body = {"torch_empty_cache": _flag(torch_empty_cache, "torch_empty_cache")}
    parse = functools.partial(_parse_result, GenerationControlResult, False)
    return _single(_post("/continue_generation", body, parse), max_retries=None)


def release_memory_occupation_plan(tags: Sequence[str] | None = None) -> Plan[None]:
    """``POST /release_memory_occupation`` (``None``: every tag). The answer is ``null``."""
    checked = _tags(tags)
    body = {} if checked is None else {"tags": checked}
    return _single(_post("/release_memory_occupation", body, _parse_none))


def resume_memory_occupation_plan(tags: Sequence[str] | None = None) -> Plan[None]:
    """``POST /resume_memory_occupation``: resume only tags that were released."""
    checked = _tags(tags)
    body = {} if checked is None else {"tags": checked}
    return _single(_post("/resume_memory_occupation", body, _parse_none))


def loads_plan(
    include: str | Sequence[str] | None = None, dp_rank: int | None = None
) -> Plan[Loads]:
    """``GET /v1/loads`` (the router answers 404: ask each worker)."""
    query: dict[str, str] = {}
    if include is not None:
        names = [include] if isinstance(include, str) else include
        if not isinstance(names, Sequence) or not names:
            raise InvalidRequestError(
                f"include must be a section name or a list of them, got {include!r}"
            )
        query["include"] = ",".join(
            _choice(n, "each include section", LOAD_SECTIONS) for n in names
        )
    if dp_rank is not None:
        query["dp_rank"] = str(_integer(dp_rank, "dp_rank", low=0))
    path = "/v1/loads" + ("?" + urllib.parse.urlencode(query, safe=",") if query else "")
    return _single(Operation("GET", path, None, (), _parse_loads), max_retries=None)


def health_plan(timeout: float) -> Plan[bool]:
    """``GET /health`` bounded by ``timeout``: ``True`` on 2xx, ``False`` on any failure."""
    bound = check_timeout(timeout, "health timeout", allow_none=False)
    return _healthy(bound)


def _healthy(timeout: float | None) -> Plan[bool]:
    try:
        healthy: bool = yield Call(build_health(), max_retries=0, timeout=timeout)
    except RLinfHTTPError:
        return False
    return healthy


def worker_state_plan(timeout: float) -> Plan[WorkerState]:
    """Ask a worker itself whether it is alive: ``GET /ready``, bounded by ``timeout``.

    - ``"ready"``: it answered 2xx (a server without ``/ready``, sglang before
      0.5.23: its ``/health`` answered 2xx);
    - ``"not_ready"``: it answered with an error status. sglang's ``/ready`` is
      503 while the server is paused, starting or shutting down: alive;
    - ``"unresponsive"``: it took the connection but did not answer in time
      (stopped, hung, or swamped);
    - ``"dead"``: the connection failed (refused, reset): nothing serves there.

    Unlike ``/health``, ``/ready`` runs no generation, so a paused worker
    answers at once.
    """
    bound = check_timeout(timeout, "health timeout", allow_none=False)
    return _worker_state(bound)


def _worker_state(timeout: float | None) -> Plan[WorkerState]:
    for path in ("/ready", "/health"):
        try:
            yield Call(build_health(path), max_retries=0, timeout=timeout)
        except NotFoundError:
            continue  # no /ready on this server: fall back to /health
        except APIStatusError:
            return "not_ready"
        except APITimeoutError:
            return "unresponsive"
        except RLinfHTTPError:
            return "dead"
        return "ready"
    return "not_ready"


# -- workers --------------------------------------------------------------------------


def worker_url(url: str) -> str:
    """A worker URL without a DP rank suffix (``@<rank>``) or trailing slash."""
    return _RANK_SUFFIX.sub("", url.strip().rstrip("/")).rstrip("/")


def worker_urls(
    listing: WorkerList, worker_type: str | None = None, healthy_only: bool = False
) -> list[str]:
    """The worker URLs of a router's ``GET /workers`` answer, each once.

    A DP-aware router lists ``http://host:port@<rank>`` once per rank: the
    suffix is stripped and the duplicates dropped (order kept).
    """
    urls: list[str] = []
    for worker in listing.workers:
        if worker_type is not None and worker.worker_type != worker_type:
            continue
        if healthy_only and not worker.is_healthy:
            continue
        if not worker.url:
            continue
        url = worker_url(worker.url)
        if url not in urls:
            urls.append(url)
    return urls


_worker_list: pydantic.TypeAdapter[WorkerList] = pydantic.TypeAdapter(WorkerList)


def discover_workers_plan(
    worker_type: str | None = None, healthy_only: bool = False
) -> Plan[list[str] | None]:
    """The workers behind a router (``GET /workers``), or ``None`` for a single server.

    An sglang server has no ``/workers`` route: its 404 means the base URL is
    the one server to talk to.
    """
    if worker_type is not None:
        _choice(worker_type, "worker_type", WORKER_TYPES)
    _flag(healthy_only, "healthy_only")
    return _discover(worker_type, healthy_only)


def _discover(worker_type: str | None, healthy_only: bool) -> Plan[list[str] | None]:
    op = Operation("GET", "/workers", None, (), functools.partial(parse_model, _worker_list))
    try:
        listing: WorkerList = yield Call(op)
    except NotFoundError:
        return None
    return worker_urls(listing, worker_type, healthy_only)
