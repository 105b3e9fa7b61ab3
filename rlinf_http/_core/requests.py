"""Python arguments -> validated operations (method, path, headers, body bytes). No I/O.

Each builder checks its arguments and raises :class:`InvalidRequestError` before
anything is sent, encodes the body once, and pairs it with the parser for its
response. The facades only send the bytes and hand the answer back.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar, overload

import pydantic
import pydantic_core
from typing_extensions import TypedDict

from .._errors import APIResponseValidationError, InvalidRequestError
from .._version import __version__
from ..models import ChatCompletion, ChatMessage, GenerateOutput, SamplingParams
from .responses import RawResponse, decode_json, parse_model
from .steering import check_lora_path, check_priority, check_rid, new_rid

__all__ = [
    "JSON_CONTENT_TYPE",
    "LazyOps",
    "Operation",
    "build_chat_completion",
    "build_generate",
    "build_health",
    "build_post",
    "check_generate_keywords",
    "check_openai_keywords",
    "check_timeout",
    "default_headers",
    "encode_json",
    "normalize_base_url",
    "normalize_path",
]

T = TypeVar("T")

JSON_CONTENT_TYPE = "application/json"

# RFC 9110 token characters (header names).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
USER_AGENT = f"rlinf-http/{__version__}"

_JSON_HEADERS: tuple[tuple[str, str], ...] = (("content-type", JSON_CONTENT_TYPE),)


@dataclass(frozen=True, slots=True)
class Operation(Generic[T]):
    """One logical call: what to send, and how to read the answer.

    Attributes:
        method: HTTP method.
        path: path below the base URL, starting with ``/``.
        content: the encoded body, or ``None``.
        headers: headers of this call (merged over the client's defaults).
        parse: turns a 2xx :class:`RawResponse` into the result.
    """

    method: str
    path: str
    content: bytes | None
    headers: tuple[tuple[str, str], ...]
    parse: Callable[[RawResponse], T]


class LazyOps(Sequence[Operation[T]]):
    """Operations made when taken: ``make(i)`` builds the ``i``-th one.

    A fan-out holds its operations until its last answer; held this way, it keeps
    only what ``make`` reads (checked bodies, which the garbage collector does not
    track), not the objects of every operation. Each access builds a new one.
    """

    __slots__ = ("_len", "_make")

    def __init__(self, length: int, make: Callable[[int], Operation[T]]) -> None:
        self._len = length
        self._make = make

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> Operation[T]: ...

    @overload
    def __getitem__(self, index: slice) -> list[Operation[T]]: ...

    def __getitem__(self, index: int | slice) -> Operation[T] | list[Operation[T]]:
        if isinstance(index, slice):
            return [self._make(i) for i in range(*index.indices(self._len))]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("operation index out of range")
        return self._make(index)

    def mapped(self, fn: Callable[[Operation[T]], Operation[T]]) -> LazyOps[T]:
        """These operations, each passed through ``fn`` when taken."""
        make = self._make
        return LazyOps(self._len, lambda i: fn(make(i)))


# -- URLs and headers ---------------------------------------------------------------


def normalize_base_url(base_url: object) -> str:
    """Validate a router or server URL and drop trailing slashes.

    Raises :class:`InvalidRequestError` (a ``ValueError``) unless it is an
    ``http``/``https`` URL with a host and without query or fragment.
    """
    if not isinstance(base_url, str):
        base_url = str(base_url) if base_url is not None else ""
    text = base_url.strip()
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidRequestError(f"invalid base_url {base_url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(
            f"invalid base_url {base_url!r}: expected http(s)://host[:port][/path]"
        )
    if parts.query or parts.fragment:
        raise InvalidRequestError(
            f"invalid base_url {base_url!r}: a query or fragment is not allowed"
        )
    del port
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def normalize_path(path: object) -> str:
    """A request path below the base URL, with exactly one leading ``/``."""
    if not isinstance(path, str) or not path.strip():
        raise InvalidRequestError(f"path must be a non-empty string, got {path!r}")
    if "://" in path:
        raise InvalidRequestError(f"path must be relative to the base URL, got {path!r}")
    if "#" in path or any(ord(c) < 0x21 or ord(c) == 0x7F for c in path.strip()):
        raise InvalidRequestError(
            f"path must not contain '#', spaces or control characters, got {path!r}"
        )
    return "/" + path.strip().lstrip("/")


def default_headers(api_key: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers every request of a client carries (lower-case names)."""
    out = {"user-agent": USER_AGENT, "accept": "application/json"}
    if api_key is not None:
        if not isinstance(api_key, str) or not api_key:
            raise InvalidRequestError("api_key must be a non-empty string")
        out["authorization"] = f"Bearer {api_key}"
    if headers:
        for name, value in headers.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise InvalidRequestError(f"header {name!r}: names and values must be str")
            if not _TOKEN.fullmatch(name):
                raise InvalidRequestError(f"invalid header name {name!r}")
            out[name.lower()] = value
    for name, value in out.items():
        if any(c in value for c in "\r\n\0"):
            raise InvalidRequestError(
                f"header {name!r}: the value contains CR, LF or NUL (a trailing newline "
                "from a file?)"
            )
    return out


def check_timeout(value: object, what: str, *, allow_none: bool = True) -> float | None:
    """A finite number of seconds > 0 (or ``None`` when allowed), else InvalidRequestError."""
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        allowed = "a finite number > 0" + (" or None" if allow_none else "")
        raise InvalidRequestError(f"{what} must be {allowed}, got {value!r}")
    return float(value)


def encode_json(body: Any, what: str = "body") -> bytes:
    """Compact JSON bytes; raises :class:`InvalidRequestError` for unencodable values."""
    try:
        return pydantic_core.to_json(body)
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError) as exc:
        raise InvalidRequestError(f"{what} is not JSON-serializable: {exc}") from None


# -- /generate ------------------------------------------------------------------------

_GENERATE_ONE: pydantic.TypeAdapter[GenerateOutput] = pydantic.TypeAdapter(GenerateOutput)
_GENERATE_MANY: pydantic.TypeAdapter[list[GenerateOutput]] = pydantic.TypeAdapter(
    list[GenerateOutput]
)


def _sampling_check_adapter() -> pydantic.TypeAdapter[dict[str, Any]]:
    """A strict validator of the sampling keys :class:`SamplingParams` knows.

    Built from the model's own fields (one source of truth) as a TypedDict, which
    checks a plain dict several times faster than building a model; unknown keys
    pass through (servers differ in what they accept).
    """
    fields: dict[str, Any] = {}
    for name, info in SamplingParams.model_fields.items():
        annotation: Any = info.annotation
        if info.metadata:
            params = (annotation, *info.metadata)
            annotation = Annotated[params]
        fields[name] = annotation
    make_typed_dict: Any = TypedDict  # built at run time from the model's fields
    checked = make_typed_dict("SamplingCheck", fields, total=False)
    checked.__pydantic_config__ = pydantic.ConfigDict(strict=True, extra="allow")
    adapter: pydantic.TypeAdapter[dict[str, Any]] = pydantic.TypeAdapter(checked)
    return adapter


_SAMPLING_CHECK = _sampling_check_adapter()

_SCALARS = frozenset({str, int, float, bool, type(None)})

# The last all-scalar sampling_params that passed the check: its keys in order, the
# types of its values (1 == True, so types are part of it) and a copy of it.
_last_sampling_checked: tuple[tuple[str, ...], tuple[type, ...], dict[str, Any]] | None = None


def _sampling_to_wire(
    sampling_params: Mapping[str, Any] | SamplingParams | None,
) -> dict[str, Any] | None:
    if sampling_params is None:
        return None
    if isinstance(sampling_params, SamplingParams):
        return sampling_params.to_wire()
    if not isinstance(sampling_params, Mapping):
        raise InvalidRequestError(
            "sampling_params must be a dict or SamplingParams, got "
            f"{type(sampling_params).__name__}"
        )
    wire = dict(sampling_params)
    # Fan-outs and gathers pass the same dict for every prompt: skip re-checking
    # identical contents (same keys in the same order, same types, equal values).
    # Only all-scalar dicts are remembered (a list inside could be mutated later).
    global _last_sampling_checked
    types = tuple(map(type, wire.values()))
    last = _last_sampling_checked
    if last is not None and last[1] == types and last[2] == wire and last[0] == tuple(wire):
        return wire
    # Tuples and sets are sent as JSON arrays; check them as lists.
    known = {
        k: list(v) if isinstance(v, (tuple, set, frozenset)) else v
        for k, v in wire.items()
        if v is not None
    }
    try:
        _SAMPLING_CHECK.validate_python(known)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidRequestError(
            f"invalid sampling_params[{loc!r}]: {first.get('msg')} (got {first.get('input')!r})"
        ) from None
    if _SCALARS.issuperset(types):
        _last_sampling_checked = (tuple(wire), types, dict(wire))
    return wire


# -- keywords that belong somewhere else ------------------------------------------------

# Sampling parameters sglang reads only inside ``sampling_params`` (none of them is
# also a top-level ``/generate`` field): sent top-level, the router drops them and
# the server ignores them, so the call silently runs with defaults.
_SAMPLING_ONLY = frozenset(SamplingParams.model_fields) | {"beam_width", "watermark"}

# OpenAI spellings a /generate caller may reach for, and their sglang names.
_OPENAI_TO_NATIVE: Mapping[str, str] = {
    "max_tokens": "max_new_tokens",
    "max_completion_tokens": "max_new_tokens",
    "min_tokens": "min_new_tokens",
    "seed": "sampling_seed",
}

# sglang-native names the OpenAI-style endpoints spell differently (they would be
# ignored there: unknown request fields are dropped).
_NATIVE_TO_OPENAI: Mapping[str, str] = {
    "max_new_tokens": "max_tokens",
    "min_new_tokens": "min_tokens",
    "sampling_seed": "seed",
}


def check_generate_keywords(extra: Mapping[str, Any]) -> None:
    """Reject keywords of ``generate`` that are sampling parameters (no I/O).

    ``generate("hi", max_new_tokens=3)`` would send ``max_new_tokens`` as a
    top-level field, which is dropped: say where it belongs instead. Other
    unknown keywords pass through as top-level fields.
    """
    if not extra:
        return
    for key in extra:
        native = key if key in _SAMPLING_ONLY else _OPENAI_TO_NATIVE.get(key)
        if native is None:
            continue
        spelled = "" if native == key else f" (sglang's name for {key!r})"
        raise InvalidRequestError(
            f"{key!r} is a sampling parameter: pass it as "
            f"sampling_params={{{native!r}: {extra[key]!r}}}{spelled}; as a top-level "
            "/generate field it would be dropped and the default used"
        )


def check_openai_keywords(kwargs: Mapping[str, Any], endpoint: str) -> None:
    """Reject sglang-native spellings on an OpenAI-style endpoint (no I/O)."""
    if not kwargs:
        return
    if "sampling_params" in kwargs:
        raise InvalidRequestError(
            f"{endpoint} takes sampling fields as keywords (temperature=..., "
            "max_tokens=...), not sampling_params={...}"
        )
    for key in kwargs:
        openai = _NATIVE_TO_OPENAI.get(key)
        if openai is not None:
            raise InvalidRequestError(
                f"{key!r} is sglang's native name; {endpoint} spells it {openai}= "
                f"(as {key!r} it would be ignored)"
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ids(ids: object, what: str) -> None:
    if not isinstance(ids, Sequence) or isinstance(ids, (str, bytes)):
        raise InvalidRequestError(f"{what} must be a list of ints")
    if len(ids) == 0:
        raise InvalidRequestError(f"{what} must not be empty")
    if not all(_is_int(t) and t >= 0 for t in ids):
        raise InvalidRequestError(f"{what} must contain only non-negative ints")


def build_generate(
    prompt: str | Sequence[str] | None,
    input_ids: Sequence[int] | Sequence[Sequence[int]] | None,
    sampling_params: Mapping[str, Any] | SamplingParams | None,
    return_logprob: bool,
    extra: Mapping[str, Any],
    *,
    stream: bool = False,
    rid: str | Sequence[str] | None = None,
    priority: int | None = None,
    lora_path: str | Sequence[str | None] | None = None,
    rl_fields: Mapping[str, Any] | None = None,
) -> Operation[GenerateOutput | list[GenerateOutput]]:
    """``POST /generate``: exactly one of ``prompt`` / ``input_ids``; a list is a batch.

    The body mirrors the RLinf client (``return_logprob``, ``text`` or ``input_ids``,
    ``sampling_params``) plus any extra top-level fields. The response is parsed as
    a list when the request is a batch or asks for ``n > 1`` samples.

    ``rid`` (a str; for a batch a str prefix or one id per item) is generated when
    absent, so that every request can be aborted; not with ``n > 1``, where sglang
    gives each sample a fresh id anyway. ``priority`` and ``lora_path`` (an
    adapter name, or one per batch item) are checked and sent when given.
    ``rl_fields`` are body fields already checked by
    :func:`~rlinf_http._core.rl_generate.generate_rl_fields`.
    """
    if (prompt is None) == (input_ids is None):
        raise InvalidRequestError("exactly one of prompt or input_ids must be given")
    if not isinstance(return_logprob, bool):
        raise InvalidRequestError(f"return_logprob must be a bool, got {return_logprob!r}")
    body: dict[str, Any] = {"return_logprob": return_logprob}
    batch = False
    if prompt is not None:
        if isinstance(prompt, str):
            body["text"] = prompt
        elif isinstance(prompt, Sequence) and not isinstance(prompt, bytes):
            if len(prompt) == 0 or not all(isinstance(p, str) for p in prompt):
                raise InvalidRequestError("a batch prompt must be a non-empty list of str")
            body["text"] = list(prompt)
            batch = True
        else:
            raise InvalidRequestError(
                f"prompt must be a str or a list of str, got {type(prompt).__name__}"
            )
    else:
        if not isinstance(input_ids, Sequence) or isinstance(input_ids, (str, bytes)):
            raise InvalidRequestError("input_ids must be a list of ints or a list of lists")
        if len(input_ids) > 0 and all(
            isinstance(row, Sequence) and not isinstance(row, (str, bytes)) for row in input_ids
        ):
            for i, row in enumerate(input_ids):
                _check_ids(row, f"input_ids[{i}]")
            body["input_ids"] = [list(row) for row in input_ids]  # type: ignore[arg-type]
            batch = True
        else:
            _check_ids(input_ids, "input_ids")
            body["input_ids"] = list(input_ids)
    wire_sampling = _sampling_to_wire(sampling_params)
    if wire_sampling is not None:
        body["sampling_params"] = wire_sampling
    check_generate_keywords(extra)
    for key, value in extra.items():
        if key in ("text", "input_ids", "sampling_params", "return_logprob"):
            raise InvalidRequestError(f"{key!r} is set through its own argument")
        body[key] = value
    for key, value in (rl_fields or {}).items():
        if key in extra:
            raise InvalidRequestError(f"{key!r} is given twice (as a keyword and in extra)")
        body[key] = value
    n = wire_sampling.get("n") if wire_sampling is not None else None
    many_samples = _is_int(n) and n > 1  # type: ignore[operator]
    size = len(body["text"] if "text" in body else body["input_ids"]) if batch else None
    if rid is not None:
        body["rid"] = check_rid(rid, size)
    elif "rid" not in body and not many_samples:
        body["rid"] = new_rid()
    if priority is not None:
        body["priority"] = check_priority(priority)
    if lora_path is not None:
        body["lora_path"] = check_lora_path(lora_path, size)
    if stream:
        body["stream"] = True
    expect_list = batch or many_samples
    return Operation(
        "POST",
        "/generate",
        encode_json(body, "generate body"),
        _JSON_HEADERS,
        _parse_generate_list if expect_list else _parse_generate_one,
    )


def _parse_generate_one(raw: RawResponse) -> GenerateOutput | list[GenerateOutput]:
    if raw.content[:1] == b"[":
        _shape_error(raw, "a JSON object (single prompt)")
    return parse_model(_GENERATE_ONE, raw)


def _parse_generate_list(raw: RawResponse) -> GenerateOutput | list[GenerateOutput]:
    if raw.content.lstrip()[:1] == b"{":
        _shape_error(raw, "a JSON list (batch or n > 1)")
    return parse_model(_GENERATE_MANY, raw)


def _shape_error(raw: RawResponse, expected: str) -> None:
    raise APIResponseValidationError(
        f"{raw.method} {raw.url}: expected {expected}, got {raw.content[:80]!r}",
        method=raw.method,
        url=raw.url,
        status_code=raw.status_code,
        raw_body=raw.content,
    )


# -- /v1/chat/completions ------------------------------------------------------------

_CHAT: pydantic.TypeAdapter[ChatCompletion] = pydantic.TypeAdapter(ChatCompletion)
#: The model name sent without ``model=`` when the base URL lists no models
#: (``GET /v1/models`` answers 404): such a server or gateway accepts any name.
#: Otherwise the listed model is sent (see :mod:`rlinf_http._core.served_model`).
DEFAULT_CHAT_MODEL = "sglang-model"


def _message_to_wire(i: int, message: object) -> Any:
    if isinstance(message, ChatMessage):
        return message.model_dump(exclude_none=True)
    if not isinstance(message, Mapping):
        raise InvalidRequestError(
            f"messages[{i}] must be a dict or ChatMessage, got {type(message).__name__}"
        )
    if not isinstance(message.get("role"), str):
        raise InvalidRequestError(f"messages[{i}] needs a string 'role'")
    return message


def build_chat_completion(
    messages: Sequence[Mapping[str, Any] | ChatMessage],
    model: str,
    kwargs: Mapping[str, Any],
    *,
    stream: bool = False,
) -> Operation[ChatCompletion]:
    """``POST /v1/chat/completions`` with ``kwargs`` forwarded as JSON fields."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        raise InvalidRequestError("messages must be a list of message dicts")
    if len(messages) == 0:
        raise InvalidRequestError("messages must not be empty")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(f"model must be a non-empty string, got {model!r}")
    check_openai_keywords(kwargs, "chat_completion")
    body: dict[str, Any] = {
        "model": model,
        "messages": [_message_to_wire(i, m) for i, m in enumerate(messages)],
    }
    for key, value in kwargs.items():
        if key in ("model", "messages"):
            raise InvalidRequestError(f"{key!r} is set through its own argument")
        body[key] = value
    if stream:
        body["stream"] = True
    elif body.get("stream"):
        raise InvalidRequestError("use stream=True (the streaming API) to stream a chat")
    return Operation(
        "POST",
        "/v1/chat/completions",
        encode_json(body, "chat body"),
        _JSON_HEADERS,
        _parse_chat,
    )


def _parse_chat(raw: RawResponse) -> ChatCompletion:
    return parse_model(_CHAT, raw)


# -- /health and generic POST ------------------------------------------------------


def _parse_health(raw: RawResponse) -> bool:
    return True


def build_health(path: str = "/health") -> Operation[bool]:
    """``GET /health``: any 2xx is healthy."""
    return Operation("GET", path, None, (), _parse_health)


def _parse_post_json(raw: RawResponse) -> Any:
    if not raw.content.strip():
        return None
    return decode_json(raw)


def _parse_post_msgpack(raw: RawResponse) -> Any:
    from ..codecs import msgpack as codec

    content_type = raw.headers.get("content-type", "")
    if "msgpack" not in content_type:
        raise APIResponseValidationError(
            f"{raw.method} {raw.url}: expected an application/msgpack response, got "
            f"{content_type or 'no content-type'}: {raw.content[:80]!r}",
            method=raw.method,
            url=raw.url,
            status_code=raw.status_code,
            raw_body=raw.content,
        )
    try:
        return codec.unpackb(raw.content)
    except InvalidRequestError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types
        raise APIResponseValidationError(
            f"{raw.method} {raw.url}: the msgpack body does not decode: {exc}",
            method=raw.method,
            url=raw.url,
            status_code=raw.status_code,
            raw_body=raw.content,
        ) from exc


_MSGPACK_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-type", "application/msgpack"),
    ("accept", "application/msgpack"),
)


def build_post(path: str, body: Any, *, msgpack: bool = False) -> Operation[Any]:
    """``POST <path>`` with a JSON or msgpack body; the result is the decoded body.

    With ``msgpack=True`` the payload is normalised as the RLinf client did (torch
    tensors to numpy, mapping keys to ``str``, sequences to lists) and packed with
    sglang's numpy wire codec; the response must be msgpack too. An empty 2xx JSON
    body decodes to ``None``.
    """
    clean = normalize_path(path)
    if msgpack:
        from ..codecs import msgpack as codec

        content = codec.packb(codec.to_wire(body))
        return Operation("POST", clean, content, _MSGPACK_HEADERS, _parse_post_msgpack)
    return Operation("POST", clean, encode_json(body, "post body"), _JSON_HEADERS, _parse_post_json)
