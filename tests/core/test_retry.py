"""RetryPolicy decisions and Retry-After parsing (pure, with hypothesis properties)."""

from __future__ import annotations

import email.utils
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlinf_http import InvalidRequestError, RetryPolicy
from rlinf_http._core.retry import DEFAULT_RETRY_STATUSES, parse_retry_after

# -- which failures are retried ------------------------------------------------------


def test_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_retries == 2
    assert set(policy.retry_statuses) == {408, 429, 500, 502, 503, 504}
    assert DEFAULT_RETRY_STATUSES == policy.retry_statuses


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    policy = RetryPolicy(jitter=0.0)
    assert policy.delay_after_status(0, status, {}) == pytest.approx(0.5)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 415, 422, 501, 505, 200, 302])
def test_non_retryable_statuses(status: int) -> None:
    assert RetryPolicy().delay_after_status(0, status, {}) is None


def test_custom_statuses() -> None:
    policy = RetryPolicy(retry_statuses=frozenset({503}), jitter=0)
    assert policy.delay_after_status(0, 503, {}) is not None
    assert policy.delay_after_status(0, 500, {}) is None


def test_max_retries_exhausted() -> None:
    policy = RetryPolicy(max_retries=3, jitter=0)
    assert [policy.delay_after_status(n, 503, {}) is not None for n in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert [policy.delay_after_connection_error(n) is not None for n in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_zero_retries_never_retries() -> None:
    policy = RetryPolicy(max_retries=0)
    assert policy.delay_after_status(0, 503, {"retry-after": "0"}) is None
    assert policy.delay_after_connection_error(0) is None


def test_connection_errors_can_be_disabled() -> None:
    policy = RetryPolicy(retry_connection_errors=False)
    assert policy.delay_after_connection_error(0) is None
    assert policy.delay_after_status(0, 503, {}) is not None


def test_with_max_retries() -> None:
    policy = RetryPolicy(initial_delay=0.1)
    assert policy.with_max_retries(None) is policy
    assert policy.with_max_retries(2) is policy
    other = policy.with_max_retries(7)
    assert other.max_retries == 7
    assert other.initial_delay == 0.1
    assert policy.max_retries == 2  # immutable
    with pytest.raises(InvalidRequestError):
        policy.with_max_retries(-1)


# -- backoff arithmetic ---------------------------------------------------------------


def test_exponential_backoff_without_jitter() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=8.0, jitter=0.0, max_retries=10)
    assert [policy.backoff_delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_linear_backoff_is_seed_post_semantics() -> None:
    policy = RetryPolicy(backoff="linear", initial_delay=1.0, max_delay=100, jitter=0.0)
    # retry_backoff_s * (attempt + 1)
    assert [policy.backoff_delay(n) for n in range(5)] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_linear_backoff_capped() -> None:
    policy = RetryPolicy(backoff="linear", initial_delay=1.0, max_delay=2.5, jitter=0.0)
    assert policy.backoff_delay(10) == 2.5


def test_jitter_uses_rand() -> None:
    policy = RetryPolicy(initial_delay=1.0, jitter=0.25)
    assert policy.backoff_delay(0, rand=lambda: 0.0) == 1.0
    assert policy.backoff_delay(0, rand=lambda: 0.5) == pytest.approx(0.875)
    assert policy.backoff_delay(1, rand=lambda: 0.999999) == pytest.approx(1.5, rel=1e-5)
    assert policy.delay_after_status(0, 503, {}, rand=lambda: 0.5) == pytest.approx(0.875)
    assert policy.delay_after_connection_error(0, rand=lambda: 0.5) == pytest.approx(0.875)


def test_zero_initial_delay_gives_zero() -> None:
    policy = RetryPolicy(initial_delay=0.0)
    assert policy.backoff_delay(5) == 0.0


@given(
    retries_taken=st.integers(min_value=0, max_value=10_000),
    initial=st.floats(min_value=0, max_value=100, allow_nan=False),
    cap=st.floats(min_value=0, max_value=1000, allow_nan=False),
    jitter=st.floats(min_value=0, max_value=1),
    rand=st.floats(min_value=0, max_value=1, exclude_max=True),
    backoff=st.sampled_from(["exponential", "linear"]),
)
def test_backoff_always_within_bounds(
    retries_taken: int, initial: float, cap: float, jitter: float, rand: float, backoff: Any
) -> None:
    policy = RetryPolicy(
        max_retries=retries_taken + 1,
        initial_delay=initial,
        max_delay=cap,
        jitter=jitter,
        backoff=backoff,
    )
    delay = policy.backoff_delay(retries_taken, rand=lambda: rand)
    assert 0.0 <= delay <= cap
    # Jitter only ever shortens the delay, by at most the jitter fraction.
    no_jitter = RetryPolicy(
        max_retries=retries_taken + 1,
        initial_delay=initial,
        max_delay=cap,
        jitter=0.0,
        backoff=backoff,
    ).backoff_delay(retries_taken)
    assert no_jitter * (1 - jitter) - 1e-9 <= delay <= no_jitter + 1e-9


def test_many_retries_do_not_overflow() -> None:
    # A large max_retries ("retry for a long time") must keep yielding max_delay.
    policy = RetryPolicy(max_retries=5000, initial_delay=0.5, max_delay=8.0, jitter=0.0)
    assert policy.backoff_delay(1100) == 8.0
    assert policy.delay_after_connection_error(2000) == 8.0


# -- Retry-After ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": " 7 "}, 7.0),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "-5", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "nan"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    future = email.utils.formatdate(now + 30, usegmt=True)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": future}, now=now) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0


def test_parse_retry_after_works_with_httpx_headers() -> None:
    import httpx

    assert parse_retry_after(httpx.Headers({"Retry-After": "4"})) == 4.0
    assert parse_retry_after(httpx.Headers({"Retry-After-Ms": "100"})) == 0.1


def test_retry_after_honoured_and_capped() -> None:
    policy = RetryPolicy(max_retry_after=10.0, jitter=0.0)
    assert policy.delay_after_status(0, 503, {"retry-after": "3"}) == 3.0
    assert policy.delay_after_status(0, 429, {"retry-after": "3600"}) == 10.0
    assert policy.delay_after_status(0, 503, {"retry-after-ms": "20"}) == pytest.approx(0.02)
    # An unparsable Retry-After falls back to the computed backoff.
    assert policy.delay_after_status(1, 503, {"retry-after": "later"}) == 1.0
    # Retry-After never makes a non-retryable status retryable, nor extends max_retries.
    assert policy.delay_after_status(0, 400, {"retry-after": "1"}) is None
    assert policy.delay_after_status(2, 503, {"retry-after": "1"}) is None


@given(st.text(max_size=60))
def test_parse_retry_after_never_raises(value: str) -> None:
    for name in ("retry-after", "retry-after-ms"):
        result = parse_retry_after({name: value}, now=0.0)
        assert result is None or (math.isfinite(result) and result >= 0)


@given(
    day=st.integers(min_value=0, max_value=40),
    month=st.sampled_from(["Jan", "Feb", "Dec", "Foo"]),
    year=st.integers(min_value=0, max_value=10**6),
    hms=st.tuples(*[st.integers(min_value=0, max_value=99)] * 3),
    zone=st.sampled_from(["GMT", "UTC", "+0000", "-9999", "+9999", "EST"]),
)
def test_parse_retry_after_date_like_never_raises(
    day: int, month: str, year: int, hms: tuple[int, int, int], zone: str
) -> None:
    value = f"Mon, {day:02d} {month} {year} {hms[0]:02d}:{hms[1]:02d}:{hms[2]:02d} {zone}"
    result = parse_retry_after({"retry-after": value}, now=0.0)
    assert result is None or (math.isfinite(result) and result >= 0)


@pytest.mark.parametrize(
    "value",
    [
        "Mon, 01 Jan 99999 00:00:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 +9999",
        "1 Jan 0 0:0:0 GMT",
        "Tue, 00 Xyz 2024 99:99:99 GMT",
        "1e400",
        "\x00",
    ],
)
def test_parse_retry_after_odd_dates_never_raise(value: str) -> None:
    result = parse_retry_after({"retry-after": value}, now=0.0)
    assert result is None or (math.isfinite(result) and result >= 0)


@given(
    st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms", "x-other"]), st.text(max_size=40)
    ),
    st.integers(min_value=0, max_value=5),
    st.sampled_from(sorted(DEFAULT_RETRY_STATUSES)),
)
def test_delay_after_status_within_cap(headers: dict[str, str], n: int, status: int) -> None:
    policy = RetryPolicy(max_retries=10, max_delay=8.0, max_retry_after=60.0)
    delay = policy.delay_after_status(n, status, headers)
    assert delay is not None
    assert 0.0 <= delay <= 60.0


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"max_retries": True},
        {"max_retries": "3"},
        {"initial_delay": -0.1},
        {"initial_delay": math.inf},
        {"max_delay": math.nan},
        {"max_retry_after": -1},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"jitter": math.nan},
        {"backoff": "fibonacci"},
    ],
)
def test_policy_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        RetryPolicy(**kwargs)


def test_policy_is_frozen() -> None:
    import dataclasses

    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_retries = 5  # type: ignore[misc]
