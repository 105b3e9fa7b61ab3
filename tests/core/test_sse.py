"""SSEDecoder: WHATWG event-stream framing, fed in arbitrary pieces (no sockets)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlinf_http._core.sse import ServerSentEvent, SSEDecoder


@dataclass(frozen=True)
class Spec:
    """One event to serialise: its data lines, an optional event name, comments."""

    data: tuple[str, ...]
    event: str | None
    comment: str | None


# Field values: any text without CR/LF (other Unicode line separators such as
# U+2028 or U+0085 are not SSE line ends and must survive). NUL is allowed in data.
value_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
    max_size=12,
)
event_name = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=8,
)
specs = st.lists(
    st.builds(
        Spec,
        data=st.lists(value_text, min_size=1, max_size=4).map(tuple),
        event=st.none() | event_name,
        comment=st.none() | value_text,
    ),
    max_size=6,
)
terminators = st.sampled_from(["\n", "\r", "\r\n"])


def serialise(events: list[Spec], ends: list[str]) -> tuple[bytes, list[ServerSentEvent]]:
    """Encode ``events`` with per-line terminators cycling through ``ends``.

    A ``\\r`` line end directly followed by an empty line ended by ``\\n`` would
    read as one ``\\r\\n``; such a blank line is ended by ``\\r`` instead.
    """
    out: list[str] = []
    expected: list[ServerSentEvent] = []
    prev_end = ""
    n = 0

    def line(text: str) -> None:
        nonlocal prev_end, n
        end = ends[n % len(ends)]
        n += 1
        if text == "" and prev_end == "\r" and end == "\n":
            end = "\r"
        out.append(text + end)
        prev_end = end

    for spec in events:
        if spec.comment is not None:
            line(":" + spec.comment)
        if spec.event is not None:
            line("event: " + spec.event)
        for value in spec.data:
            line("data: " + value)
        line("")
        expected.append(ServerSentEvent("\n".join(spec.data), spec.event))
    return "".join(out).encode("utf-8"), expected


def feed_in_pieces(payload: bytes, cuts: list[int]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    last = 0
    for cut in sorted(set(cuts)):
        events += decoder.feed(payload[last:cut])
        last = cut
    events += decoder.feed(payload[last:])
    events += decoder.flush()
    return events


@settings(max_examples=300, deadline=None)
@given(
    events=specs,
    ends=st.lists(terminators, min_size=1, max_size=5),
    cut_fractions=st.lists(st.floats(0, 1), max_size=12),
)
def test_any_split_yields_the_same_events(
    events: list[Spec], ends: list[str], cut_fractions: list[float]
) -> None:
    payload, expected = serialise(events, ends)
    cuts = [int(f * len(payload)) for f in cut_fractions]
    assert feed_in_pieces(payload, cuts) == expected
    assert feed_in_pieces(payload, []) == expected


@settings(max_examples=100, deadline=None)
@given(events=specs, end=terminators)
def test_byte_by_byte(events: list[Spec], end: str) -> None:
    payload, expected = serialise(events, [end])
    assert feed_in_pieces(payload, list(range(len(payload)))) == expected


@pytest.mark.parametrize("end", ["\n", "\r", "\r\n"])
def test_line_endings(end: str) -> None:
    payload = f"data: a{end}data: b{end}{end}data: c{end}{end}".encode()
    assert SSEDecoder().feed(payload) == [ServerSentEvent("a\nb"), ServerSentEvent("c")]


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    # the \n completes the \r of the previous chunk: only the \r\n after it is blank
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r\n") == [ServerSentEvent("x")]


def test_lone_cr_then_cr_is_a_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\r") == [ServerSentEvent("x")]


def test_comments_are_ignored() -> None:
    payload = b": keep-alive\n\n:\ndata: 1\n: in the middle\ndata: 2\n\n"
    assert SSEDecoder().feed(payload) == [ServerSentEvent("1\n2")]


def test_multiline_data_and_space_handling() -> None:
    payload = b"data:no-space\ndata:  two spaces\ndata\ndata: a: b\n\n"
    (event,) = SSEDecoder().feed(payload)
    # only one leading space is removed; a bare "data" line adds an empty line
    assert event.data == "no-space\n two spaces\n\na: b"


def test_empty_data_line_dispatches_an_empty_event() -> None:
    # WHATWG: the data buffer is "\n" (not empty) so an event with data "" fires
    assert SSEDecoder().feed(b"data:\n\n") == [ServerSentEvent("")]


def test_event_without_data_is_not_dispatched_and_type_resets() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: ping\n\n") == []
    assert decoder.feed(b"data: x\n\n") == [ServerSentEvent("x", None)]
    assert decoder.feed(b"event: e\ndata: y\n\ndata: z\n\n") == [
        ServerSentEvent("y", "e"),
        ServerSentEvent("z", None),
    ]


def test_id_persists_and_retry_is_parsed() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(
        b"id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nid: bad\0id\nretry: x\ndata: c\n\n"
    )
    assert [(e.data, e.id, e.retry) for e in events] == [
        ("a", "7", 1500),
        ("b", "7", 1500),  # the last event id is kept (WHATWG)
        ("c", "7", 1500),  # an id with NUL and a non-numeric retry are ignored
    ]


def test_unknown_fields_are_ignored() -> None:
    assert SSEDecoder().feed(b"foo: bar\ndata: x\nbaz\n\n") == [ServerSentEvent("x")]


def test_utf8_split_inside_a_character() -> None:
    payload = "data: héllo — 世界\n\n".encode()
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for i in range(len(payload)):
        events += decoder.feed(payload[i : i + 1])
    assert events == [ServerSentEvent("héllo — 世界")]


@pytest.mark.parametrize(
    ("payload", "data"),
    [
        (b"data: x", "x"),  # unterminated last line
        (b"data: x\n", "x"),  # terminated line, no blank line
        (b"data: x\r", "x"),
        (b"data: x\ndata: y", "x\ny"),
    ],
)
def test_flush_dispatches_the_open_event(payload: bytes, data: str) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(payload) == []
    assert decoder.flush() == [ServerSentEvent(data)]
    assert decoder.flush() == []


def test_flush_with_nothing_pending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n\n") == [ServerSentEvent("x")]
    assert decoder.flush() == []
    assert decoder.feed(b": only a comment") == []
    assert decoder.flush() == []


def test_empty_chunks_are_harmless() -> None:
    decoder = SSEDecoder()
    out: list[ServerSentEvent] = []
    for piece in [b"", b"data: a\r", b"", b"\n", b"", b"\r\n", b""]:
        out += decoder.feed(piece)
    assert out == [ServerSentEvent("a")]


def test_leading_byte_order_mark_is_ignored() -> None:
    # WHATWG: one leading U+FEFF is stripped before parsing the stream
    payload = "\ufeffdata: x\n\n".encode()
    assert SSEDecoder().feed(payload) == [ServerSentEvent("x")]


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_leading_bom_split_across_feeds(cut: int) -> None:
    payload = "\ufeffdata: x\n\n".encode()
    decoder = SSEDecoder()
    assert decoder.feed(payload[:cut]) + decoder.feed(payload[cut:]) == [ServerSentEvent("x")]


def test_only_one_leading_bom_is_stripped() -> None:
    # the second U+FEFF is part of the field name, which is then unknown
    assert SSEDecoder().feed("\ufeff\ufeffdata: x\n\n".encode()) == []
    # a BOM later in the stream is data, not framing
    assert SSEDecoder().feed("data: x\n\n\ufeffdata: y\n\n".encode()) == [ServerSentEvent("x")]
