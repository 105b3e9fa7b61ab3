"""``WorkerList`` is a sequence of its workers (issue 9, item 11), and still a model."""

from __future__ import annotations

import pickle

import pytest

from rlinf_http import Worker, WorkerList

LISTING = {
    "workers": [
        {"id": "a", "url": "http://127.0.0.1:1", "worker_type": "regular", "is_healthy": True},
        {"id": "b", "url": "http://127.0.0.1:2", "worker_type": "decode", "is_healthy": False},
    ],
    "total": 2,
    "stats": {"prefill_count": 0},
}


def test_len_iteration_and_indexing() -> None:
    listing = WorkerList.model_validate(LISTING)
    assert len(listing) == 2
    assert [w.id for w in listing] == ["a", "b"]
    assert all(isinstance(w, Worker) for w in listing)
    assert listing[0].url == "http://127.0.0.1:1"
    assert listing[-1].id == "b"
    assert [w.id for w in listing[:1]] == ["a"]
    assert listing[1] in listing
    with pytest.raises(IndexError):
        listing[2]


def test_model_behaviour_is_kept() -> None:
    listing = WorkerList.model_validate(LISTING)
    assert listing.workers[1].worker_type == "decode"
    assert listing["total"] == 2 and listing.get("stats") == {"prefill_count": 0}
    assert "total" in listing and "nope" not in listing
    with pytest.raises(KeyError):
        listing["nope"]
    assert listing.model_dump()["total"] == 2
    assert listing.to_dict() == LISTING
    assert pickle.loads(pickle.dumps(listing)) == listing


def test_empty_listing() -> None:
    listing = WorkerList.model_validate({"workers": [], "total": 0})
    assert len(listing) == 0 and list(listing) == [] and not listing
