"""The pump-side request framer works through runs of bytes, not byte by byte: however the
host's bytes are split into reads, the packets that come out must be the same."""

from __future__ import annotations

import binascii

from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.newera.wire import MAX_BASIC_LINE, RequestFramer, show_number


def safe(payload: bytes) -> bytes:
    crc = binascii.crc_hqx(payload, 0)
    return bytes([2, len(payload) + 4]) + payload + crc.to_bytes(2, "big") + b"\x03"


def packets(framer: RequestFramer, chunks: list[bytes]) -> list[tuple[str, bool, bool]]:
    out = []
    for chunk in chunks:
        out += [(p.text, p.safe, p.valid) for p in framer.feed(chunk, now=0.0)]
    return out


_pieces = st.one_of(
    st.binary(max_size=12),
    st.text("0123456789RATDISVOLrunstp .\t", max_size=160).map(lambda t: t.encode() + b"\r"),
    st.text("0123456789RATDIS.", min_size=1, max_size=20).map(lambda t: safe(t.encode())),
    st.sampled_from([b"\x02", b"\x03", b"\r", b"\x02\x04", b"\x02\x00"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=10), st.lists(st.integers(1, 40), min_size=1, max_size=50))
def test_packets_do_not_depend_on_how_the_bytes_are_split(pieces: list[bytes],
                                                           sizes: list[int]) -> None:
    data = b"".join(pieces)
    one_by_one = packets(RequestFramer(), [data[i:i + 1] for i in range(len(data))])
    chunks, i, k = [], 0, 0
    while i < len(data):
        chunks.append(data[i:i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    assert packets(RequestFramer(), chunks) == one_by_one
    assert packets(RequestFramer(), [data]) == one_by_one
    assert packets(RequestFramer(), pieces) == one_by_one  # a read per command, as hosts send


def test_text_is_cleaned_and_an_overlong_line_is_dropped() -> None:
    framer = RequestFramer()
    assert packets(framer, [b"0 r\tat\x7f 5\xff2.5mh\r"]) == [("0RAT52.5MH", False, True)]
    # A line that outgrows the limit is dropped with the byte that overflowed it; what
    # follows starts a fresh line.
    long = b"9" * MAX_BASIC_LINE
    assert packets(framer, [long + b"X0DIS\r"]) == [("0DIS", False, True)]
    assert packets(framer, [long[:50], long[50:], b"Y", b"0RAT\r"]) == [("0RAT", False, True)]
    assert packets(framer, [long + b"\r"]) == [("9" * MAX_BASIC_LINE, False, True)]


def test_a_safe_packet_is_counted_not_scanned() -> None:
    framer = RequestFramer()
    payload = b"0RAT1" + bytes([0x0D])  # a CR inside the payload is data, not a line end
    frame = safe(payload)
    got = packets(framer, [frame[:3], frame[3:]])
    assert got == [("0RAT1", True, True)]
    assert packets(framer, [b"\x02\x03"]) == [("", True, False)]  # too short to be a packet


def test_a_known_chunk_after_a_partial_line_joins_that_line() -> None:
    """Whole one-command chunks are remembered; one arriving after part of a line (no CR yet)
    must still be appended to it, not answered from memory."""
    framer = RequestFramer()
    assert packets(framer, [b"0DIS\r", b"0dis\r"]) == [("0DIS", False, True)] * 2
    assert packets(framer, [b"0RAT5", b"0DIS\r"]) == [("0RAT50DIS", False, True)]
    assert packets(framer, [b"\x02\x08", b"0DIS\r"]) == []  # inside a safe packet: its bytes
    assert packets(RequestFramer(), [b"0DIS\r"]) == [("0DIS", False, True)]


def _shown_by_rule(value: float) -> str:
    """The display rule spelled out: the most decimals (3, 2, 1) that leave 4 digits."""
    value = max(0.0, value)
    for decimals in (3, 2, 1):
        text = f"{value:.{decimals}f}"
        if len(text) - 1 <= 4:
            return text
    return f"{min(value, 9999.0):.0f}."


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=False, width=64),
                 st.floats(0.0, 10_000.0), st.sampled_from([9.9995, 9.99949, 99.995, 999.95])))
def test_show_number_follows_the_display_rule(value: float) -> None:
    assert show_number(value) == _shown_by_rule(value)
