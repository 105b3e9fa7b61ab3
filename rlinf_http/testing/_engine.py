"""The fake server's engine: running generations, their timing, aborts and statistics.

Every handler mixin derives from :class:`_Engine`, which owns the shared state.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ._asgi import Handler, _dumps, _err, _openai_err, _Req
from ._config import FakeConfig
from ._faults import FaultRegistry
from ._lateness import LatenessRecorder
from ._tokens import _LPS, _out_ids, _out_text


class _Item:
    """One generation (one prompt x one sample)."""

    __slots__ = (
        "abort_at",
        "abort_queued",
        "aborted",
        "finish",
        "index",
        "logprob_start_len",
        "n_out",
        "out_offset",
        "prompt_ids",
        "prompt_len",
        "prompt_words",
        "return_logprob",
        "return_text",
        "rid",
        "rl",
        "sample",
        "sent",
        "stream_interval",
        "top_logprobs_num",
        "wv_events",
    )

    def __init__(self) -> None:
        self.aborted = False
        self.abort_queued = False  # aborted while in the waiting queue (retracted)
        self.abort_at = 0.0
        self.sent = 0
        self.prompt_ids: list[int] | None = None
        self.prompt_words: list[str] | None = None
        self.prompt_len = 1
        self.return_logprob = False
        self.return_text = False
        self.logprob_start_len = -1
        self.top_logprobs_num = 0
        self.stream_interval = 1
        self.index = 0
        self.sample = 0
        self.rid = ""
        self.n_out = 0
        #: output tokens this prompt already ends with (a resumed generation continues)
        self.out_offset = 0
        self.finish: dict[str, Any] = {}
        #: weight-version changes while running: (old version, output tokens so far)
        self.wv_events: list[tuple[str, int]] = []
        #: the RL options of the request (see ``_rl_generate``), or None
        self.rl: dict[str, Any] | None = None


class _Job:
    __slots__ = ("abort_pending", "batch", "event", "items", "retracted", "start", "step")

    def __init__(self, items: list[_Item], batch: bool) -> None:
        self.items = items
        self.batch = batch
        self.start = time.monotonic()
        self.event: anyio.Event | None = None
        self.abort_pending = False
        #: True while held by a ``retract`` pause (its requests count as waiting)
        self.retracted = False
        #: lock-step position of a streamed job (-1: not streamed, time decides)
        self.step = -1

    def abort(self, item: _Item, queued: bool = False) -> None:
        if not item.aborted:
            item.aborted = True
            item.abort_queued = queued or self.retracted
            item.abort_at = time.monotonic()
            self.abort_pending = True
            if self.event is not None:
                self.event.set()


_ABORT_FINISH = {
    "type": "abort",
    "message": "Abort request",
    "status_code": None,
    "err_type": None,
}
#: sglang's finish reason for a request aborted in the waiting queue (two keys only)
_ABORT_QUEUED_FINISH = {"type": "abort", "message": "Abort in waiting queue"}


def _abort_finish(item: _Item) -> dict[str, Any]:
    return _ABORT_QUEUED_FINISH if item.abort_queued else _ABORT_FINISH


_PAUSE_MODES = ("abort", "retract", "in_place")
_LOG_FIELDS = (
    "seq",
    "path",
    "method",
    "worker",
    "routing_key",
    "request_id",
    "rid",
    "priority",
    "lora_path",
    "stream",
)

Emit = Callable[[_Item, int, int, "dict[str, Any] | None"], Awaitable[bool]]


class _Engine:
    """State shared by all endpoints (see :class:`FakeSGLangApp` for the attributes)."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config if config is not None else FakeConfig()
        self.faults = FaultRegistry()
        self._stats_lock = threading.Lock()
        self._stats: dict[str, Any] = {}
        self._lateness = LatenessRecorder()
        self.reset_stats()
        self._running: dict[str, tuple[_Job, _Item]] = {}
        self._req_counter = itertools.count(1)
        self._created = int(time.time())
        self._routes: dict[str, dict[str, Handler]] = {}
        # Waiting goes through events registered here; _notify() wakes them all so
        # they re-check their condition (pause, continue, drain, update end).
        self._waiters: set[anyio.Event] = set()
        #: pause mode while paused (``abort``/``retract``/``in_place``), else None
        self._paused: str | None = None
        self._pause_t0 = 0.0
        self._writers = 0  # weight updates holding the writer side of the model lock
        self._gate_held = 0  # new requests waiting at the pause / update gate
        c = self.config
        self._weight_version = c.weight_version
        self._model_path = c.model_path
        self._served_model_name = c.served_model_name
        self._load_format = c.load_format
        self._loras: dict[str, str] = {}  # loaded LoRA adapters: name -> path
        self._request_log: deque[tuple[Any, ...]] = deque(maxlen=max(c.request_log_size, 1))
        self._request_seq = itertools.count(1)

    # ------------------------------------------------------------------ public helpers

    @staticmethod
    def output_text(num_tokens: int, start: int = 0) -> str:
        """Text of output tokens ``start..num_tokens-1`` (e.g. ``" tok0 tok1"``)."""
        return _out_text(start, num_tokens)

    @staticmethod
    def output_ids(num_tokens: int, start: int = 0) -> list[int]:
        """Ids of output tokens ``start..num_tokens-1`` (``1000 + i``)."""
        return list(_out_ids(start, num_tokens))

    @staticmethod
    def output_logprob(i: int) -> float:
        """Log-probability reported for output token ``i``."""
        return _LPS[i % 16]

    @property
    def stats(self) -> dict[str, Any]:
        """A consistent snapshot of the request statistics."""
        with self._stats_lock:
            s = self._stats
            return {
                "requests": dict(s["requests"]),
                "last_bodies": dict(s["last_bodies"]),
                "last_headers": dict(s["last_headers"]),
                "in_flight": s["in_flight"],
                "max_in_flight": s["max_in_flight"],
                "disconnects": s["disconnects"],
                "aborted": s["aborted"],
                "faults_injected": s["faults_injected"],
                # how late streamed tokens left against the latency model (ms)
                "lateness": self._lateness.snapshot(),
            }

    def reset_stats(self) -> None:
        """Zero all statistics (``in_flight`` is kept)."""
        self._lateness.reset()
        with self._stats_lock:
            in_flight = self._stats.get("in_flight", 0)
            self._stats = {
                "requests": {},
                "last_bodies": {},
                "last_headers": {},
                "in_flight": in_flight,
                "max_in_flight": in_flight,
                "disconnects": 0,
                "aborted": 0,
                "faults_injected": 0,
            }

    @property
    def running_requests(self) -> int:
        """Number of generations currently running (including those held by a pause)."""
        return len(self._running)

    @property
    def request_log(self) -> list[dict[str, Any]]:
        """The data-plane requests received, oldest first (also ``GET /_fake/requests``).

        Each record: ``seq``, ``path``, ``method``, ``worker`` (``config.worker_id``
        or the server's URL), ``routing_key`` (the ``X-SMG-Routing-Key`` header),
        ``request_id`` (``X-Request-Id``), and from the body ``rid``, ``priority``,
        ``lora_path``, ``stream``.
        """
        while True:
            try:  # appends are atomic and lock-free; a concurrent one makes us retry
                records = list(self._request_log)
                break
            except RuntimeError:
                continue
        return [dict(zip(_LOG_FIELDS, r, strict=True)) for r in records]

    def clear_request_log(self) -> None:
        """Forget the logged requests."""
        self._request_log.clear()

    @property
    def paused(self) -> str | None:
        """The pause mode (``"abort"``, ``"retract"``, ``"in_place"``) or None."""
        return self._paused

    @property
    def weight_version(self) -> str:
        """The live weight version (as ``/model_info`` reports it)."""
        return self._weight_version

    @property
    def model_path(self) -> str:
        """The live model path (changed by ``/update_weights_from_disk``)."""
        return self._model_path

    @property
    def served_model_name(self) -> str:
        """The live served model name (a disk update renames it to the new path)."""
        return self._served_model_name

    # ------------------------------------------------------------------ waiting and admission

    def _notify(self) -> None:
        for ev in list(self._waiters):
            ev.set()

    async def _wait_for(self, pred: Callable[[], bool], job: _Job | None = None) -> None:
        """Wait until ``pred()`` holds (re-checked on every :meth:`_notify`).

        With ``job``, an abort of one of its items also wakes the wait.
        """
        while not pred():
            ev = anyio.Event()
            if job is not None:
                job.event = ev
            self._waiters.add(ev)
            try:
                await ev.wait()
            finally:
                self._waiters.discard(ev)

    def _gate_open(self) -> bool:
        return self._paused is None and self._writers == 0

    async def _admit(self, job: _Job) -> None:
        """Wait while paused or while a weight update runs, then register ``job``.

        New requests wait (they are not rejected), as sglang's tokenizer manager
        makes them wait before tokenization.
        """
        if not self._gate_open():
            n = len(job.items)
            self._gate_held += n
            try:
                await self._wait_for(self._gate_open)
            finally:
                self._gate_held -= n
            job.start = time.monotonic()
        self._register(job)

    def _abort_all(self) -> int:
        """Abort every running generation; returns how many were aborted."""
        n = 0
        for job, item in list(self._running.values()):
            if not item.aborted:
                job.abort(item, queued=self._paused == "retract")
                n += 1
        if n:
            with self._stats_lock:
                self._stats["aborted"] += n
        return n

    def _held(self) -> bool:
        return self._paused == "retract" or self._paused == "in_place"

    def _may_go_on(self, job: _Job) -> bool:
        """Whether a held job may go on: continued, or aborted while back in the waiting
        queue (``retract``). sglang 0.5.23 aborts a request ``in_place`` keeps in its
        running batch only at its next forward pass, i.e. after continue."""
        return not self._held() or (job.abort_pending and self._paused == "retract")

    async def _hold(self, job: _Job) -> None:
        """Hold a running job while a ``retract``/``in_place`` pause lasts.

        The job's clock stops: after continue it resumes where it was (an abort
        ends it at once while retracted, after continue while held in place).
        """
        if self._may_go_on(job):
            return
        t0 = max(self._pause_t0, job.start)
        job.retracted = self._paused == "retract"
        try:
            await self._wait_for(lambda: self._may_go_on(job), job)
        finally:
            job.retracted = False
        shift = time.monotonic() - t0
        job.start += shift
        for it in job.items:
            if it.aborted and it.abort_at >= t0:
                it.abort_at = t0 + shift

    def _check_priority_lora(self, body: dict[str, Any], batch: int, openai: bool) -> None:
        """``priority`` must be an int; ``lora_path`` must name loaded adapters."""
        make = _openai_err if openai else _err
        prio = body.get("priority")
        if prio is not None and (not isinstance(prio, int) or isinstance(prio, bool)):
            raise make("priority must be an integer")
        lora = body.get("lora_path")
        if lora is None:
            return
        names = lora if isinstance(lora, list) else [lora]
        if isinstance(lora, list) and len(lora) != batch:
            raise make("lora_path list length must match the batch size")
        if not all(n is None or isinstance(n, str) for n in names):
            raise make("lora_path must be a string, null or a list of them")
        if any(n is not None for n in names) and not self.config.enable_lora:
            raise make(
                "LoRA is not enabled. Please set `--enable-lora` to True when launching the server."
            )
        for n in names:
            if n is not None and n not in self._loras:
                raise make(
                    f"The following requested LoRA adapters are not loaded: {n}. "
                    "The LoRA adapter has never been loaded; load it with /load_lora_adapter."
                )

    def _set_weight_version(self, new: str) -> None:
        """Change the weight version; running requests record where it changed."""
        old = self._weight_version
        if new == old:
            return
        now = time.monotonic()
        if self._held():
            now = min(now, max(self._pause_t0, 0.0))
        for job, item in self._running.values():
            if job.step >= 0:
                done = min(job.step, item.n_out)
            else:
                done = self._tokens_at(now - job.start, item.n_out)
            if done > 0:
                item.wv_events.append((old, done))
        self._weight_version = new

    def _weight_version_spans(self, item: _Item, n: int) -> list[dict[str, Any]]:
        """``meta_info.weight_versions``: which version produced which output tokens.

        Spans ``{"version", "start", "end"}`` (``end`` exclusive) over the first
        ``n`` output tokens; the last one is the current version.
        """
        if not item.wv_events:
            return [{"version": self._weight_version, "start": 0, "end": n}]
        spans: list[dict[str, Any]] = []
        for version, upto in [*item.wv_events, (self._weight_version, n)]:
            end = min(upto, n)
            prev_end = spans[-1]["end"] if spans else 0
            if spans and end <= prev_end:
                continue
            if spans and spans[-1]["version"] == version:
                spans[-1]["end"] = end
            else:
                spans.append({"version": version, "start": prev_end, "end": end})
        return spans

    def _can_flush(self) -> bool:
        """sglang flushes only when idle; waiting requests are ignored while paused."""
        return self._paused == "retract" or not self._running

    def _load_counts(self) -> tuple[int, int, int]:
        """(running, retracted, held at the gate) request counts."""
        retracted = 0
        if self._paused == "retract":
            retracted = len(self._running)
        else:
            for job, _item in self._running.values():
                if job.retracted:
                    retracted += 1
        return len(self._running) - retracted, retracted, self._gate_held

    # ------------------------------------------------------------------ responses

    async def _respond(
        self,
        req: _Req,
        status: int,
        body: bytes,
        content_type: bytes | None = b"application/json",
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [(b"content-length", b"%d" % len(body)), (b"x-request-id", req.rid_b)]
        if content_type is not None:
            headers.append((b"content-type", content_type))
        if extra:
            headers.extend(extra)
        if req.resp_headers:
            headers.extend(req.resp_headers)
        await req.send({"type": "http.response.start", "status": status, "headers": headers})
        await req.send({"type": "http.response.body", "body": body})

    async def _respond_json(self, req: _Req, status: int, obj: Any) -> None:
        await self._respond(req, status, _dumps(obj))

    # ------------------------------------------------------------------ generation core

    def _plan(self, item: _Item, max_new: int, ignore_eos: bool) -> None:
        eos_after = self.config.eos_after
        if eos_after is not None and not ignore_eos and eos_after < max_new:
            item.n_out = eos_after
            item.finish = {"type": "stop", "matched": self.config.eos_token_id}
        else:
            item.n_out = max_new
            item.finish = {"type": "length", "length": max_new}

    def _tokens_at(self, elapsed: float, n_out: int) -> int:
        c = self.config
        if elapsed < c.ttft_s:
            return 0
        if c.itl_s <= 0:
            return n_out
        return min(n_out, 1 + int((elapsed - c.ttft_s) / c.itl_s))

    def _register(self, job: _Job) -> None:
        running = self._running
        for item in job.items:
            if item.rid in running:
                raise _err(f"Duplicate request ID detected: {item.rid}")
        for item in job.items:
            running[item.rid] = (job, item)

    def _unregister(self, job: _Job) -> None:
        running = self._running
        for item in job.items:
            entry = running.get(item.rid)
            if entry is not None and entry[0] is job:
                del running[item.rid]
        if self._waiters:
            self._notify()

    async def _run_nonstream(self, job: _Job) -> None:
        """Wait as long as the slowest item needs; aborted items stop early."""
        c = self.config
        if c.ttft_s <= 0 and c.itl_s <= 0:
            return
        while True:
            if self._paused is not None:
                await self._hold(job)
            target = -1.0
            for it in job.items:
                if not it.aborted:
                    d = c.ttft_s + c.itl_s * max(it.n_out - 1, 0)
                    target = max(target, d)
            if target < 0:
                break
            remaining = target - (time.monotonic() - job.start)
            if remaining <= 0:
                break
            job.event = anyio.Event()
            with anyio.move_on_after(remaining):
                await job.event.wait()
        for it in job.items:
            if it.aborted:
                it.n_out = self._tokens_at(it.abort_at - job.start, it.n_out)
                it.finish = _abort_finish(it)

    async def _run_stream(self, job: _Job, emit: Emit) -> None:
        """Drive all items in lock-step; calls ``emit(item, k0, k1, finish)``."""
        c = self.config
        items = job.items
        live = list(items)
        step = 0
        while live:
            if self._paused is not None:
                await self._hold(job)
            if job.abort_pending:
                job.abort_pending = False
                for it in list(live):
                    if it.aborted:
                        live.remove(it)
                        k = min(step, it.n_out)
                        it.finish = _abort_finish(it)
                        if not await emit(it, it.sent, k, it.finish):
                            return
                        it.sent = k
                continue
            t_next = c.ttft_s + c.itl_s * step
            delay = job.start + t_next - time.monotonic()
            if delay > 0:
                job.event = anyio.Event()
                with anyio.move_on_after(delay):
                    await job.event.wait()
                if job.abort_pending or self._held():
                    continue
            step += 1
            job.step = step
            wrote = False
            for it in list(live):
                k = min(step, it.n_out)
                finished = step >= it.n_out
                if finished or k - it.sent >= it.stream_interval:
                    if finished:
                        live.remove(it)
                    if not await emit(it, it.sent, k, it.finish if finished else None):
                        return
                    it.sent = k
                    wrote = True
            if wrote:  # how late this step's writes left (job.start moves past pauses)
                self._lateness.record(step == 1, time.monotonic() - job.start - t_next)
