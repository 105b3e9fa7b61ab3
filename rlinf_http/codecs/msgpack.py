"""SGLang's msgpack + numpy wire codec, without importing sglang or torch.

The embodied / VLA endpoints of sglang (``POST /v1/actions/generations``) accept and
return ``application/msgpack`` bodies in which numpy values are encoded as maps:

* an ``np.ndarray`` becomes a 4-entry map whose keys are msgpack *bin* strings, in
  this order: ``__ndarray__`` (``true``), ``data`` (the C-order bytes), ``dtype``
  (``arr.dtype.str``, with explicit byte order) and ``shape`` (an array of ints);
* a numpy scalar that does not subclass a Python type (``np.float32``, ``np.int64``,
  ``np.bool_``...) becomes ``{__npgeneric__: true, data: scalar.item(), dtype: ...}``;
  ``np.float64``, ``np.str_`` and ``np.bytes_`` subclass ``float``/``str``/``bytes``
  and therefore travel as plain msgpack values;
* structured (``V``), object (``O``) and complex (``c``) dtypes are rejected.

:func:`packb` and :func:`unpackb` are byte-compatible with sglang's
``pack_msgpack``/``unpack_msgpack``. :func:`to_wire` performs the normalisation the
RLinf client applies to a payload before packing it (tensors to arrays, ``Batch``
objects and mappings to ``dict`` with ``str`` keys, sequences to lists).

``msgpack`` and ``numpy`` are optional (the ``rlinf-http[msgpack]`` extra): this
module imports without them and raises :class:`~rlinf_http.MissingDependencyError`
when :func:`packb` or :func:`unpackb` is called.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from rlinf_http._errors import InvalidRequestError, MissingDependencyError, RLinfHTTPError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CONTENT_TYPE", "packb", "to_wire", "unpackb"]

#: The media type of msgpack bodies (request ``Content-Type`` and ``Accept``).
CONTENT_TYPE: Final = "application/msgpack"

#: dtype kinds sglang refuses to encode: structured/void, object, complex.
_UNSUPPORTED_KINDS: Final = frozenset("VOc")

_INSTALL_HINT: Final = (
    "the msgpack codec needs the 'msgpack' and 'numpy' packages; "
    "install the rlinf-http[msgpack] extra (in a clone of the repository: "
    "pip install -e '.[msgpack]')"
)


class _Codec:
    """The loaded dependencies plus the encode/decode hooks bound to them."""

    __slots__ = ("default", "msgpack", "object_hook")

    def __init__(
        self,
        msgpack: ModuleType,
        default: Callable[[Any], Any],
        object_hook: Callable[[dict[Any, Any]], Any],
    ) -> None:
        self.msgpack = msgpack
        self.default = default
        self.object_hook = object_hook


_codec_cache: _Codec | None = None


def _reset_cache() -> None:
    """Forget the loaded dependencies (the next call imports them again). For tests."""
    global _codec_cache
    _codec_cache = None


def _codec() -> _Codec:
    """The codec, importing ``msgpack`` and ``numpy`` on first use (successes are cached)."""
    global _codec_cache
    codec = _codec_cache
    if codec is None:
        codec = _codec_cache = _load()
    return codec


def _load() -> _Codec:
    try:
        msgpack = importlib.import_module("msgpack")
        import numpy as np
    except ImportError as exc:
        raise MissingDependencyError(f"{_INSTALL_HINT} ({exc})") from exc

    ndarray_type = np.ndarray
    generic_type = np.generic

    def check_dtype(dtype: np.dtype[Any]) -> None:
        if dtype.kind in _UNSUPPORTED_KINDS:
            raise InvalidRequestError(
                f"Unsupported dtype: {dtype} ({dtype.str!r}); the msgpack wire format "
                "cannot carry structured, object or complex values"
            )

    def default(obj: Any) -> Any:
        if isinstance(obj, ndarray_type):
            check_dtype(obj.dtype)
            return {
                b"__ndarray__": True,
                b"data": obj.tobytes(order="C"),
                b"dtype": obj.dtype.str,
                b"shape": list(obj.shape),
            }
        if isinstance(obj, generic_type):
            check_dtype(obj.dtype)
            value = obj.item()
            if value is not None and not isinstance(value, (bool, int, float, str, bytes)):
                # e.g. np.datetime64 with a day unit (-> datetime.date) or np.longdouble
                # (-> itself): packing it would fail or recurse forever.
                raise InvalidRequestError(
                    f"Unsupported numpy scalar: {obj!r} (dtype {obj.dtype.str!r}) has no "
                    "plain msgpack representation; send it as a 0-d array instead"
                )
            return {b"__npgeneric__": True, b"data": value, b"dtype": obj.dtype.str}
        raise InvalidRequestError(
            f"cannot encode an object of type {type(obj).__qualname__} as msgpack "
            "(call to_wire() first to convert tensors, Batch objects and sequences)"
        )

    def field(obj: dict[Any, Any], name: str, encoded: bytes) -> Any:
        if encoded in obj:
            return obj[encoded]
        if name in obj:
            return obj[name]
        raise ValueError(
            f"malformed msgpack numpy map: missing {name!r} in {sorted(map(str, obj))}"
        )

    def object_hook(obj: dict[Any, Any]) -> Any:
        if obj.get(b"__ndarray__") or obj.get("__ndarray__"):
            dtype = np.dtype(field(obj, "dtype", b"dtype"))
            if dtype.kind == "O":
                raise ValueError(f"refusing to decode an array of object dtype {dtype.str!r}")
            data = field(obj, "data", b"data")
            shape = tuple(field(obj, "shape", b"shape"))
            try:
                return np.ndarray(shape=shape, dtype=dtype, buffer=data)
            except TypeError as exc:
                raise ValueError(
                    f"malformed msgpack ndarray (dtype {dtype.str!r}, shape {shape}, "
                    f"{len(data)} data bytes): {exc}"
                ) from exc
        if obj.get(b"__npgeneric__") or obj.get("__npgeneric__"):
            dtype = np.dtype(field(obj, "dtype", b"dtype"))
            return dtype.type(field(obj, "data", b"data"))
        return obj

    return _Codec(msgpack, default, object_hook)


def packb(obj: Any) -> bytes:
    """Encode ``obj`` exactly as sglang's ``pack_msgpack`` does.

    Plain values are packed with ``use_bin_type=True`` (``str`` -> str, ``bytes`` ->
    bin, tuples and lists -> array, dicts -> map); numpy arrays and scalars use the
    marker maps described in the module docstring. Run :func:`to_wire` first on
    payloads that may contain tensors, ``Batch`` objects or dict keys that are not
    strings.

    Raises:
        InvalidRequestError: the payload contains an unsupported dtype (structured,
            object, complex), a value msgpack cannot carry (unknown type, integer out
            of the 64-bit range, nesting too deep). Nothing has been sent.
        MissingDependencyError: ``msgpack`` or ``numpy`` is not installed.
    """
    codec = _codec()
    try:
        data: bytes = codec.msgpack.packb(obj, default=codec.default, use_bin_type=True)
    except RLinfHTTPError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidRequestError(f"cannot encode the payload as msgpack: {exc}") from exc
    return data


def unpackb(data: bytes) -> Any:
    """Decode a body produced by sglang's ``pack_msgpack`` (or by :func:`packb`).

    Every map goes through the numpy hook: a map with a truthy ``__ndarray__`` key
    (bin or str) becomes a **read-only** ``np.ndarray`` viewing the received bytes, a
    ``__npgeneric__`` map becomes a numpy scalar of its dtype, other maps are returned
    unchanged. msgpack strings decode to ``str`` (``raw=False``), bin to ``bytes``.

    Raises:
        ValueError: the body is not valid msgpack or a numpy map is malformed
            (``msgpack`` reports truncated or trailing data as ``ValueError`` too).
        MissingDependencyError: ``msgpack`` or ``numpy`` is not installed.
    """
    codec = _codec()
    return codec.msgpack.unpackb(data, object_hook=codec.object_hook, raw=False)


def _is_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None:
        tensor_type = getattr(torch, "Tensor", None)
        if isinstance(tensor_type, type) and isinstance(obj, tensor_type):
            return True
    # Duck typing: torch-like tensors (or torch objects when torch is not imported).
    return all(callable(getattr(obj, name, None)) for name in ("detach", "cpu", "numpy"))


_KEEP_AS_IS: Final = (str, bytes, bytearray, memoryview)


def to_wire(obj: Any) -> Any:
    """Normalise a payload the way the RLinf client does before :func:`packb`.

    Recursively:

    * torch tensors (and tensor-like objects with ``detach``/``cpu``/``numpy``
      methods) become numpy arrays via ``.detach().cpu().numpy()``; torch is never
      imported by this function;
    * mappings, and objects with a ``to_dict()`` method such as tianshou's ``Batch``,
      become ``dict`` with ``str(key)`` keys;
    * tuples, lists and other sequences become lists, except ``str``, ``bytes``,
      ``bytearray`` and ``memoryview`` which are kept;
    * everything else (numpy arrays and scalars included) is returned unchanged.

    Does not need ``msgpack`` or ``numpy``.

    Raises:
        InvalidRequestError: a tensor cannot be converted to numpy (e.g. bfloat16).
    """
    if obj is None or isinstance(obj, (bool, int, float, *_KEEP_AS_IS)):
        return obj
    if isinstance(obj, Mapping):
        return {str(key): to_wire(value) for key, value in obj.items()}
    if isinstance(obj, Sequence):
        return [to_wire(item) for item in obj]
    if type(obj).__module__ == "numpy":
        return obj
    if _is_tensor(obj):
        try:
            return obj.detach().cpu().numpy()
        except (TypeError, RuntimeError) as exc:
            raise InvalidRequestError(
                f"cannot convert {type(obj).__qualname__} to a numpy array: {exc}"
            ) from exc
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        converted = to_dict()
        if isinstance(converted, Mapping):
            return {str(key): to_wire(value) for key, value in converted.items()}
        return to_wire(converted)
    return obj
