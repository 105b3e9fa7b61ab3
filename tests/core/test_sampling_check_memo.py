"""The sampling_params check remembers the last valid all-scalar dict (gathers pass the
same one per prompt): a dict that only looks the same must still be checked."""

from __future__ import annotations

from typing import Any

import pytest

from rlinf_http import InvalidRequestError
from rlinf_http._core.requests import build_generate

GOOD: dict[str, Any] = {"top_k": 1, "skip_special_tokens": True}


def _build(sampling: dict[str, Any]) -> None:
    build_generate("x", None, sampling, False, {})


@pytest.mark.parametrize(
    "bad",
    [
        {
            "skip_special_tokens": 1,
            "top_k": True,
        },  # same types in order, equal values, keys swapped
        {"top_k": True, "skip_special_tokens": True},  # 1 == True, but a bool is not an int
        {"top_k": 1, "skip_special_tokens": 1},
        {"top_k": "1", "skip_special_tokens": True},
    ],
)
def test_a_lookalike_of_the_last_valid_dict_is_still_checked(bad: dict[str, Any]) -> None:
    _build(GOOD)
    _build(dict(GOOD))  # remembered
    with pytest.raises(InvalidRequestError):
        _build(bad)
    _build(GOOD)


def test_a_mutated_list_is_checked_again() -> None:
    stop: list[Any] = ["a"]
    sampling = {"stop": stop}
    _build(sampling)
    stop.append(3)  # not a str
    with pytest.raises(InvalidRequestError):
        _build(sampling)
