"""Tests of rlinf_http.codecs.msgpack (sglang's numpy wire codec)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rlinf_http._errors import InvalidRequestError, MissingDependencyError
from rlinf_http.codecs import msgpack as codec
from rlinf_http.codecs.msgpack import CONTENT_TYPE, packb, to_wire, unpackb

# ---------------------------------------------------------------------------- helpers


def assert_same_array(got: Any, expected: np.ndarray[Any, Any]) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype
    assert got.dtype.str == expected.dtype.str
    assert got.shape == expected.shape
    # Byte comparison: exact for NaN, -0.0, NaT, and independent of memory layout.
    assert got.tobytes() == expected.tobytes()


def assert_same(got: Any, expected: Any) -> None:
    """Structural equality after a round trip (tuples come back as lists)."""
    if isinstance(expected, np.ndarray):
        assert_same_array(got, expected)
    elif isinstance(expected, dict):
        assert isinstance(got, dict)
        assert list(got) == list(expected)
        for key in expected:
            assert_same(got[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, list)
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert_same(g, e)
    else:
        assert type(got) is type(expected)
        assert got == expected


# --------------------------------------------------------------------- wire format


F32_0_TO_5_LE = bytes.fromhex(
    "00000000"
    "0000803f"
    "00000040"  # 0.0 1.0 2.0
    "00004040"
    "00008040"
    "0000a040"  # 3.0 4.0 5.0
)

SPEC_EXAMPLE = (
    b"\x84"
    + b"\xc4\x0b__ndarray__"
    + b"\xc3"
    + b"\xc4\x04data"
    + b"\xc4\x18"
    + F32_0_TO_5_LE
    + b"\xc4\x05dtype"
    + b"\xa3<f4"
    + b"\xc4\x05shape"
    + b"\x92\x02\x03"
)


def test_content_type() -> None:
    assert CONTENT_TYPE == "application/msgpack"


def test_spec_example_exact_bytes() -> None:
    arr = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.float32)
    assert len(SPEC_EXAMPLE) == 68
    assert packb(arr) == SPEC_EXAMPLE


def test_spec_example_decodes() -> None:
    out = unpackb(SPEC_EXAMPLE)
    assert_same_array(out, np.array([[0, 1, 2], [3, 4, 5]], dtype="<f4"))


def test_big_endian_array_keeps_byte_order() -> None:
    arr = np.array([1.5, -2.0], dtype=">f8")
    wire = packb(arr)
    raw = msgpack.unpackb(wire, raw=False)
    assert raw == {
        b"__ndarray__": True,
        b"data": bytes.fromhex("3ff8000000000000c000000000000000"),
        b"dtype": ">f8",
        b"shape": [2],
    }
    assert_same_array(unpackb(wire), arr)


def test_transposed_array_sent_in_logical_c_order() -> None:
    arr = np.arange(6, dtype="<i2").reshape(2, 3).T
    assert not arr.flags.c_contiguous
    raw = msgpack.unpackb(packb(arr), raw=False)
    assert raw[b"data"] == bytes.fromhex("000003000100040002000500")
    assert raw[b"shape"] == [3, 2]
    out = unpackb(packb(arr))
    assert out.tolist() == [[0, 3], [1, 4], [2, 5]]


def test_zero_d_array_shape_is_empty_list() -> None:
    arr = np.array(7, dtype="<i8")
    raw = msgpack.unpackb(packb(arr), raw=False)
    assert raw[b"shape"] == []
    assert_same_array(unpackb(packb(arr)), arr)


def test_plain_values_use_bin_type() -> None:
    payload = {"s": "text", "b": b"\x00\x01", "t": (1, 2), "n": None, "f": 1.5}
    wire = packb(payload)
    assert wire == msgpack.packb(payload, use_bin_type=True)
    assert unpackb(wire) == {"s": "text", "b": b"\x00\x01", "t": [1, 2], "n": None, "f": 1.5}


# -------------------------------------------------------------------- numpy scalars


def test_float32_scalar_uses_marker_map_and_round_trips() -> None:
    value = np.float32(0.5)
    wire = packb(value)
    assert msgpack.unpackb(wire, raw=False) == {
        b"__npgeneric__": True,
        b"data": 0.5,
        b"dtype": "<f4",
    }
    out = unpackb(wire)
    assert type(out) is np.float32
    assert out == np.float32(0.5)


@pytest.mark.parametrize(
    ("value", "dtype_str"),
    [(np.int64(-3), "<i8"), (np.uint8(200), "|u1"), (np.bool_(True), "|b1")],
)
def test_other_generic_scalars_round_trip(value: np.generic, dtype_str: str) -> None:
    raw = msgpack.unpackb(packb(value), raw=False)
    assert raw[b"__npgeneric__"] is True
    assert raw[b"dtype"] == dtype_str
    out = unpackb(packb(value))
    assert type(out) is type(value)
    assert out == value


def test_float64_and_str_scalars_are_plain_values() -> None:
    assert packb(np.float64(1.25)) == msgpack.packb(1.25)
    assert type(unpackb(packb(np.float64(1.25)))) is float
    assert packb(np.str_("hi")) == msgpack.packb("hi", use_bin_type=True)
    assert unpackb(packb(np.str_("hi"))) == "hi"


def test_nested_scalars_in_payload() -> None:
    out = unpackb(packb({"a": [np.float32(1.0), np.float64(2.0)], "b": np.int32(3)}))
    assert type(out["a"][0]) is np.float32
    assert type(out["a"][1]) is float
    assert type(out["b"]) is np.int32


# ------------------------------------------------------------------------ decoding


def test_decoded_arrays_are_read_only() -> None:
    out = unpackb(packb(np.arange(4, dtype="<i4")))
    assert out.flags.writeable is False
    with pytest.raises(ValueError):
        out[0] = 1


def test_str_keyed_marker_maps_decode() -> None:
    wire = msgpack.packb(
        {
            "arr": {"__ndarray__": True, "data": b"\x01\x00\x02\x00", "dtype": "<u2", "shape": [2]},
            "scalar": {"__npgeneric__": True, "data": 2.5, "dtype": "<f2"},
        },
        use_bin_type=True,
    )
    out = unpackb(wire)
    assert_same_array(out["arr"], np.array([1, 2], dtype="<u2"))
    assert type(out["scalar"]) is np.float16
    assert out["scalar"] == 2.5


def test_other_maps_unchanged() -> None:
    payload = {"__ndarray__": False, "data": b"x", "dtype": "<f4", "shape": [1]}
    assert unpackb(packb(payload)) == payload
    assert unpackb(packb({"k": {"x": 1}})) == {"k": {"x": 1}}


def test_malformed_ndarray_map_raises_value_error() -> None:
    short = msgpack.packb(
        {b"__ndarray__": True, b"data": b"\x00", b"dtype": "<f4", b"shape": [2]},
        use_bin_type=True,
    )
    with pytest.raises(ValueError, match="malformed"):
        unpackb(short)
    missing = msgpack.packb({b"__ndarray__": True, b"dtype": "<f4"}, use_bin_type=True)
    with pytest.raises(ValueError, match="data"):
        unpackb(missing)


def test_object_dtype_never_decoded() -> None:
    wire = msgpack.packb(
        {b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "|O", b"shape": [1]},
        use_bin_type=True,
    )
    with pytest.raises(ValueError):
        unpackb(wire)


# ---------------------------------------------------------------- unsupported input


@pytest.mark.parametrize(
    "value",
    [
        np.zeros(2, dtype=np.complex64),
        np.array([object(), 1], dtype=object),
        np.zeros(2, dtype=[("x", "<i4"), ("y", "<f4")]),
        np.complex128(1 + 2j),
        {"nested": [np.zeros(1, dtype=np.complex128)]},
    ],
    ids=["complex-array", "object-array", "structured-array", "complex-scalar", "nested"],
)
def test_unsupported_dtypes_raise_invalid_request(value: Any) -> None:
    with pytest.raises(InvalidRequestError, match="Unsupported dtype") as info:
        packb(value)
    assert isinstance(info.value, ValueError)


def test_unsupported_dtype_message_names_dtype() -> None:
    with pytest.raises(InvalidRequestError, match="complex64"):
        packb(np.zeros(1, dtype=np.complex64))


def test_unknown_objects_raise_invalid_request() -> None:
    with pytest.raises(InvalidRequestError, match="object"):
        packb({"x": object()})
    with pytest.raises(InvalidRequestError):
        packb({"x": {1, 2}})


def test_day_datetime_scalar_rejected_but_array_fine() -> None:
    with pytest.raises(InvalidRequestError, match="0-d array"):
        packb(np.datetime64("2020-01-01"))
    arr = np.array("2020-01-01", dtype="<M8[D]")
    assert_same_array(unpackb(packb(arr)), arr)


def test_integer_out_of_range_is_invalid_request() -> None:
    with pytest.raises(InvalidRequestError):
        packb(2**70)


# --------------------------------------------------------------- property tests


DTYPES = [
    "|b1",
    "|i1",
    "<i2",
    "<i4",
    "<i8",
    "|u1",
    "<u2",
    "<u4",
    "<u8",
    "<f2",
    "<f4",
    "<f8",
    ">f8",
    ">i4",
    "<U2",
    "<M8[D]",
    "<M8[ns]",
]


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    arr: np.ndarray[Any, Any] = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["plain", "transposed", "strided"]))
    if layout == "transposed":
        arr = arr.T
    elif layout == "strided" and arr.ndim > 0:
        arr = arr[::2]
    return arr


@given(arrays())
@settings(max_examples=300, deadline=None)
def test_array_round_trip(arr: np.ndarray[Any, Any]) -> None:
    out = unpackb(packb(arr))
    assert_same_array(out, arr)
    # The wire carries exactly the logical C-order bytes and the dtype string.
    raw = msgpack.unpackb(packb(arr), raw=False)
    assert list(raw) == [b"__ndarray__", b"data", b"dtype", b"shape"]
    assert raw[b"data"] == np.ascontiguousarray(arr).tobytes()
    assert raw[b"dtype"] == arr.dtype.str
    assert raw[b"shape"] == list(arr.shape)


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | arrays()
)

PAYLOADS = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@given(PAYLOADS)
@settings(max_examples=200, deadline=None)
def test_nested_payload_round_trip(payload: Any) -> None:
    assert_same(unpackb(packb(payload)), payload)


@given(PAYLOADS)
@settings(max_examples=100, deadline=None)
def test_to_wire_is_idempotent_on_wire_payloads(payload: Any) -> None:
    once = to_wire(payload)
    assert_same(to_wire(once), once)
    assert_same(unpackb(packb(once)), payload)


# ------------------------------------------------------------------------- to_wire


class FakeTensor:
    """Quacks like a torch tensor: detach().cpu().numpy()."""

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.calls: list[str] = []

    def detach(self) -> FakeTensor:
        self.calls.append("detach")
        return self

    def cpu(self) -> FakeTensor:
        self.calls.append("cpu")
        return self

    def numpy(self) -> np.ndarray[Any, Any]:
        self.calls.append("numpy")
        return np.asarray(self.values, dtype=np.float32)


class FakeBatch:
    """Quacks like tianshou's Batch: not a Mapping, but has to_dict()."""

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def to_dict(self) -> dict[str, Any]:
        return dict(self._fields)


class FrozenMapping(Mapping[Any, Any]):
    def __init__(self, data: dict[Any, Any]) -> None:
        self._data = data

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_to_wire_stringifies_mapping_keys() -> None:
    out = to_wire({1: "a", (2, 3): {4.5: "b"}, "k": FrozenMapping({None: 1})})
    assert out == {"1": "a", "(2, 3)": {"4.5": "b"}, "k": {"None": 1}}
    assert type(out["k"]) is dict
    # Stringified keys are what msgpack's strict_map_key decoding needs.
    assert unpackb(packb(out)) == out


def test_to_wire_sequences_to_lists() -> None:
    out = to_wire((1, (2, 3), [4, (5,)], range(2)))
    assert out == [1, [2, 3], [4, [5]], [0, 1]]
    assert type(out) is list and type(out[1]) is list and type(out[2][1]) is list


def test_to_wire_keeps_str_bytes_and_arrays() -> None:
    arr = np.arange(3)
    scalar = np.float32(1)
    out = to_wire({"s": "abc", "b": b"abc", "ba": bytearray(b"x"), "a": arr, "n": scalar})
    assert out["s"] == "abc" and out["b"] == b"abc" and out["ba"] == bytearray(b"x")
    assert out["a"] is arr
    assert out["n"] is scalar


def test_to_wire_converts_tensor_like_objects() -> None:
    tensor = FakeTensor([1.0, 2.0])
    out = to_wire({"obs": {"state": tensor}, "list": [tensor]})
    state = out["obs"]["state"]
    assert isinstance(state, np.ndarray)
    assert state.tolist() == [1.0, 2.0]
    assert tensor.calls[:3] == ["detach", "cpu", "numpy"]
    assert isinstance(out["list"][0], np.ndarray)


def test_to_wire_tensor_conversion_failure_is_invalid_request() -> None:
    class BadTensor(FakeTensor):
        def numpy(self) -> np.ndarray[Any, Any]:
            raise TypeError("Got unsupported ScalarType BFloat16")

    with pytest.raises(InvalidRequestError, match="BFloat16"):
        to_wire({"x": BadTensor([1.0])})


def test_to_wire_does_not_import_torch() -> None:
    if "torch" in sys.modules:
        pytest.skip("torch already imported in this process")
    to_wire({"x": FakeTensor([1.0]), "y": (1, 2)})
    assert "torch" not in sys.modules


def test_to_wire_with_real_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    out = to_wire({"t": t, "g": torch.ones(2, requires_grad=True)})
    assert_same_array(out["t"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert isinstance(out["g"], np.ndarray)


def test_to_wire_batch_like_objects() -> None:
    batch = FakeBatch(obs=FakeBatch(img=FakeTensor([0.5])), ids=(1, 2), meta={3: "x"})
    out = to_wire({"b": batch})
    assert set(out["b"]) == {"obs", "ids", "meta"}
    assert isinstance(out["b"]["obs"]["img"], np.ndarray)
    assert out["b"]["ids"] == [1, 2]
    assert out["b"]["meta"] == {"3": "x"}


def test_to_wire_then_packb_matches_rlinf_payload_shape() -> None:
    payload = {
        "model": "m",
        "input": {
            "prompt": ("pick", "place"),
            "observation": {"state": FakeTensor([1.0, 2.0])},
        },
        "parameters": {"session_ids": ("s0", "s1"), "reset_mask": (True, False), "seed": 0},
        "runtime": {"response_format": "envelope", "output_format": "numpy"},
    }
    out = unpackb(packb(to_wire(payload)))
    assert out["input"]["prompt"] == ["pick", "place"]
    assert_same_array(out["input"]["observation"]["state"], np.array([1, 2], dtype="<f4"))
    assert out["parameters"]["reset_mask"] == [True, False]


# -------------------------------------------------------------- missing dependency


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    codec._reset_cache()
    yield
    codec._reset_cache()


@pytest.mark.parametrize("module", ["msgpack", "numpy"])
def test_missing_dependency_raises_at_call_time(
    module: str, monkeypatch: pytest.MonkeyPatch, fresh_cache: None
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        MissingDependencyError,
        match=r"rlinf-http\[msgpack\] extra \(in a clone of the repository: pip install -e",
    ) as info:
        packb({"a": 1})
    assert isinstance(info.value, ImportError)
    with pytest.raises(MissingDependencyError):
        unpackb(b"\x80")
    # to_wire needs neither dependency.
    assert to_wire({1: (2,)}) == {"1": [2]}


def test_dependency_loaded_again_after_failure(
    monkeypatch: pytest.MonkeyPatch, fresh_cache: None
) -> None:
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "msgpack", None)
        with pytest.raises(MissingDependencyError):
            packb(1)
    # Failures are not cached: once msgpack is importable again the codec works.
    assert unpackb(packb([1])) == [1]


def test_module_imports_without_msgpack_or_numpy() -> None:
    script = (
        "import sys\n"
        "sys.modules['msgpack'] = None\n"
        "sys.modules['numpy'] = None\n"
        "sys.modules['torch'] = None\n"
        "from rlinf_http.codecs import msgpack as c\n"
        "from rlinf_http._errors import MissingDependencyError\n"
        "assert c.CONTENT_TYPE == 'application/msgpack'\n"
        "assert c.to_wire({1: (2,)}) == {'1': [2]}\n"
        "try:\n"
        "    c.packb(1)\n"
        "except MissingDependencyError as e:\n"
        "    print('ok', e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
    assert "rlinf-http[msgpack]" in result.stdout
