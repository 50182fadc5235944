"""Codec: the bytes of the facts file, number rules, reply parsing, and a fuzzed stream parser."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumpctl.drivers.base import (
    AlarmKind,
    PumpChecksumError,
    PumpError,
    PumpNotApplicable,
    PumpOutOfRange,
    PumpProtocolError,
    PumpState,
)
from pumpctl.drivers.newera import codec
from pumpctl.drivers.newera.codec import RateUnit, ReplyParser, VolumeUnit

# ---- framing: the facts file's own bytes ---------------------------------------------------


def test_saf0_check_vector() -> None:
    assert codec.crc16(b"SAF0") == 0x5543
    assert codec.frame_safe(b"SAF0") == bytes.fromhex("02 08 53 41 46 30 55 43 03")


def test_basic_request_bytes() -> None:
    assert codec.encode_request(0, "RAT", "52.5MH") == b"0RAT52.5MH\r"
    assert codec.encode_request(12, "") == b"12\r"
    # system commands are answered at any address: no prefix
    assert codec.encode_request(3, "*ADR", "7") == b"*ADR7\r"


def test_safe_request_length_counts_itself_crc_and_etx() -> None:
    frame = codec.encode_request(1, "DIS", safe=True)
    assert frame[0] == codec.STX and frame[-1] == codec.ETX
    assert frame[1] == len(b"1DIS") + 4 == len(frame) - 1
    assert frame[2:-3] == b"1DIS"
    assert int.from_bytes(frame[-3:-1], "big") == codec.crc16(b"1DIS")


def test_address_outside_0_99_refused() -> None:
    with pytest.raises(PumpOutOfRange, match="address 100"):
        codec.encode_request(100, "")


# ---- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (52.5, "52.5"), (0.125, "0.125"), (1500, "1500"), (9999, "9999"), (0, "0"),
    (26.59, "26.59"), (0.001, "0.001"), (0.1 + 0.2, "0.3"), (123.4, "123.4"),
])
def test_format_number_exact(value: float, text: str) -> None:
    assert codec.format_number(value) == text


@pytest.mark.parametrize("value", [10000, 1234.5, 0.0001, 12.345, 0.1255, -1, float("nan"),
                                   float("inf")])
def test_format_number_refuses_what_it_cannot_write(value: float) -> None:
    with pytest.raises(PumpOutOfRange):
        codec.format_number(value, field="rate")


def test_refusal_names_field_value_and_limit() -> None:
    with pytest.raises(PumpOutOfRange) as info:
        codec.format_number(1234.5, field="diameter")
    message = str(info.value)
    assert "diameter" in message and "1234.5" in message and "4 digits" in message
    assert "\n" not in message


@pytest.mark.parametrize(("ml_h", "text", "unit"), [
    (52.5, "52.5", RateUnit.ML_H),
    (0.1255, "125.5", RateUnit.UL_H),  # 5 digits in mL/h, exact in µL/h
    (1234.5, None, None),  # no unit writes it exactly
    (6000, "6000", RateUnit.ML_H),
    (12000, "200", RateUnit.ML_MIN),
])
def test_rate_unit_choice(ml_h: float, text: str | None, unit: RateUnit | None) -> None:
    if text is None:
        with pytest.raises(PumpOutOfRange, match="cannot be written"):
            codec.encode_rate(ml_h)
        return
    assert codec.encode_rate(ml_h) == (text, unit)


def test_rate_units_forced_while_pumping() -> None:
    assert codec.encode_rate(52.5, units=RateUnit.UL_MIN) == ("875", RateUnit.UL_MIN)
    with pytest.raises(PumpOutOfRange, match="units cannot change while pumping"):
        codec.encode_rate(0.1255, units=RateUnit.ML_H)


def test_rate_prefers_units_already_set() -> None:
    assert codec.encode_rate(60, prefer=RateUnit.ML_MIN) == ("1", RateUnit.ML_MIN)


def test_volume_unit_choice() -> None:
    assert codec.encode_volume(35) == ("35", VolumeUnit.ML)
    assert codec.encode_volume(0.0005) == ("0.5", VolumeUnit.UL)
    assert codec.encode_volume(0.5, prefer=VolumeUnit.UL) == ("500", VolumeUnit.UL)
    with pytest.raises(PumpOutOfRange):
        codec.encode_volume(12345)


@given(st.integers(min_value=1, max_value=9999), st.integers(min_value=0, max_value=3))
def test_expressible_numbers_round_trip(digits: int, decimals: int) -> None:
    value = digits / 10**decimals
    if len(str(digits // 10**decimals)) + decimals > 4:
        return
    text = codec.format_number(value)
    assert codec.parse_number(text) == pytest.approx(value, rel=1e-12)
    whole, _, frac = text.partition(".")
    assert len(whole) + len(frac) <= 4 and len(frac) <= 3


@given(st.floats(min_value=1e-4, max_value=1e5, allow_nan=False))
def test_rate_encoding_is_exact_or_refused(ml_h: float) -> None:
    try:
        text, unit = codec.encode_rate(ml_h)
    except PumpOutOfRange:
        return
    assert float(text) * unit.ml_h == pytest.approx(ml_h, rel=1e-9)


# ---- replies ---------------------------------------------------------------------------------


def test_parse_reply_kinds() -> None:
    r = codec.parse_reply(b"00S")
    assert (r.address, r.state, r.data, r.alarm) == (0, PumpState.STOPPED, "", None)
    r = codec.parse_reply(b"01I52.50MH")
    assert (r.address, r.state, r.data) == (1, PumpState.INFUSING, "52.50MH")
    r = codec.parse_reply(b"00A?S")
    assert r.alarm is not None and r.alarm.kind is AlarmKind.STALL and r.state is PumpState.ALARM
    for letter, kind in [("R", AlarmKind.POWER_RESET), ("T", AlarmKind.WATCHDOG),
                         ("E", AlarmKind.PROGRAM_ERROR), ("O", AlarmKind.PHASE_OUT_OF_RANGE)]:
        alarm = codec.parse_reply(f"07A?{letter}".encode()).alarm
        assert alarm is not None and alarm.kind is kind and alarm.code == letter


@pytest.mark.parametrize(("payload", "error"), [
    (b"00S?", codec.CommandNotRecognised), (b"00I?NA", PumpNotApplicable),
    (b"00S?OOR", PumpOutOfRange), (b"00S?COM", PumpChecksumError),
    (b"00I?IGN", codec.CommandIgnored),
])
def test_error_replies_map_to_errors(payload: bytes, error: type[PumpError]) -> None:
    reply = codec.parse_reply(payload)
    exc = codec.error_for(reply, "RAT5MH")
    assert isinstance(exc, error)
    assert "RAT5MH" in str(exc)


@pytest.mark.parametrize("payload", [b"", b"0S", b"xxS", b"00Q", b"00A?", b"00A?SS", b"00S?XYZ",
                                     b"00S\x01", "00Sµ".encode()])
def test_malformed_replies_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(PumpProtocolError):
        codec.parse_reply(payload)


def test_parse_data_fields() -> None:
    assert codec.parse_rate("52.50MH") == (52.5, RateUnit.ML_H)
    assert codec.parse_rate("875.0UM")[0] == pytest.approx(52.5)
    assert codec.parse_volume("35.00ML") == (35.0, VolumeUnit.ML)
    assert codec.parse_dispensed("I35.00W0.000ML") == (35.0, 0.0)
    assert codec.parse_dispensed("I500.0W1.250UL") == pytest.approx((0.5, 0.00125))
    assert codec.parse_number("1500.") == 1500.0
    for bad in ("52.5", "MH", "1.2.3MH"):
        with pytest.raises(PumpProtocolError):
            codec.parse_rate(bad)


# ---- stream parser ---------------------------------------------------------------------------


def _safe_reply(text: bytes) -> bytes:
    return bytes([2, len(text) + 4]) + text + codec.crc16(text).to_bytes(2, "big") + b"\x03"


def test_parser_handles_split_frames_noise_and_both_framings() -> None:
    parser = ReplyParser()
    stream = b"\xff\x00junk" + b"\x0200S\x03" + _safe_reply(b"00A?T") + b"\x0201I52.50MH\x03"
    frames = []
    for i in range(len(stream)):  # one byte at a time
        frames += parser.feed(stream[i:i + 1])
    assert [(f.payload, f.safe) for f in frames if isinstance(f, codec.Frame)] == [
        (b"00S", False), (b"00A?T", True), (b"01I52.50MH", False)]
    assert parser.noise_bytes == 6


def test_parser_safe_frame_may_contain_cr_and_xon() -> None:
    # find a payload whose CRC contains 0x0D, 0x11 or 0x13: the parser must count, not scan
    payload = next(p for p in (f"00S{i}".encode() for i in range(5000))
                   if set(codec.crc16(p).to_bytes(2, "big")) & {0x0D, 0x11, 0x13})
    (frame,) = ReplyParser().feed(_safe_reply(payload))
    assert isinstance(frame, codec.Frame) and frame.payload == payload


def test_parser_reports_bad_crc_and_recovers() -> None:
    bad = bytearray(_safe_reply(b"00S"))
    bad[3] ^= 0x01
    items = ReplyParser().feed(bytes(bad) + b"\x0200S\x03")
    assert isinstance(items[0], PumpChecksumError)
    assert isinstance(items[1], codec.Frame) and items[1].payload == b"00S"


def test_parser_cut_frame_and_runaway() -> None:
    items = ReplyParser().feed(b"\x0200I5\x0200S\x03")
    assert isinstance(items[0], PumpProtocolError) and isinstance(items[1], codec.Frame)
    parser = ReplyParser()
    items = parser.feed(b"\x0200" + b"1" * 200)
    assert items and all(isinstance(i, PumpProtocolError) for i in items)
    assert parser.pending < 70  # bounded: never buffers without limit


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=30))
def test_fuzz_parser_only_raises_protocol_errors_and_terminates(chunks: list[bytes]) -> None:
    parser = ReplyParser()
    for chunk in chunks:
        for item in parser.feed(chunk):
            if isinstance(item, codec.Frame):
                with contextlib.suppress(PumpError):
                    codec.parse_reply(item.payload, safe=item.safe)
            else:
                assert isinstance(item, PumpError)
        assert parser.pending <= 2 + 64 + 4


@given(st.integers(0, 99), st.sampled_from("IWSPTUX"),
       st.text(alphabet="0123456789.IWMLUH", max_size=16), st.booleans())
def test_reply_round_trip_through_parser(address: int, status: str, data: str, safe: bool) -> None:
    payload = f"{address:02d}{status}{data}".encode()
    wire = _safe_reply(payload) if safe else b"\x02" + payload + b"\x03"
    (frame,) = ReplyParser().feed(b"\x11\x13" + wire)
    assert isinstance(frame, codec.Frame) and frame.safe == safe
    reply = codec.parse_reply(frame.payload, safe=frame.safe)
    assert (reply.address, reply.status, reply.data) == (address, status, data)


def test_repeated_replies_parse_the_same_and_bad_ones_fail_every_time() -> None:
    """Parsed replies are remembered (a poll reads the same rate reply every second): the
    second parse must give the same result, a bad reply must be refused every time, and the
    memo must stay bounded however many different replies come."""
    first = codec.parse_reply(b"00I13.13MH")
    assert codec.parse_reply(b"00I13.13MH") == first
    assert codec.parse_reply(b"00I13.13MH", safe=True).safe  # framing is part of the key
    assert codec.parse_rate("13.13MH") == codec.parse_rate("13.13MH") == (13.13, RateUnit.ML_H)
    for _ in range(2):
        with pytest.raises(PumpProtocolError):
            codec.parse_reply(b"00Q13.13MH")
        with pytest.raises(PumpProtocolError):
            codec.parse_rate("13.1.3MH")
    for i in range(1000):
        assert codec.parse_reply(f"00II{i}.000W0.000ML".encode()).data == f"I{i}.000W0.000ML"
    info = codec.parse_reply.cache_info()
    assert info.maxsize is not None and info.currsize <= info.maxsize


def _parsed(parser: ReplyParser, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out += [(type(i).__name__, str(i)) if isinstance(i, PumpError) else i
                for i in parser.feed(chunk)]
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from([b"\x02", b"\x03", b"\x0200S\x03", b"\x0201I52.50MH\x03", b"\x020\x01\x03",
                     b"\x02\x0900A?T\xe8\x5b\x03", b"\x0200SI1.000W0.000ML\x03"]),
    st.binary(max_size=6)), max_size=8))
def test_whole_reads_and_byte_reads_give_the_same_frames(pieces: list[bytes]) -> None:
    """A read holding exactly one basic reply takes a shortcut; whatever the bytes, the
    result must be what the byte-by-byte path gives, noise count included."""
    data = b"".join(pieces)
    whole, bytewise = ReplyParser(), ReplyParser()
    for piece in pieces:  # a read per piece: whole replies arrive as one read
        assert _parsed(whole, [piece]) == _parsed(bytewise, [piece[i:i + 1]
                                                            for i in range(len(piece))])
    assert (whole.noise_bytes, whole.pending) == (bytewise.noise_bytes, bytewise.pending)
    assert len(data) >= whole.noise_bytes


def _clean_read(data: bytes) -> codec.Reply | None:
    """What the general path makes of one read: the reply if it is exactly one good basic
    frame, with no byte left over or dropped as noise."""
    parser = ReplyParser()
    items = parser.feed(data)
    if len(items) != 1 or isinstance(items[0], PumpError) or items[0].safe \
            or parser.noise_bytes or parser.pending:
        return None
    with contextlib.suppress(PumpError):
        return codec.parse_reply(items[0].payload)
    return None


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.sampled_from([b"\x0200S\x03", b"\x0201I52.50MH\x03", b"\x020\x01\x03", b"\x0200Q1MH\x03",
                     b"\x0200SI1.000W0.000ML\x03", b"\x0200S\x03\x03", b"\x0200A?T\x03",
                     b"\x02\x0900A?T\xe8\x5b\x03", b" \x0200S\x03", b"\x0200S\x0200S\x03"]),
    st.binary(max_size=8).map(lambda b: b"\x02" + b + b"\x03"),
    st.text("0123456789IWSAMHUL?.", max_size=16).map(lambda t: b"\x02" + t.encode() + b"\x03")))
def test_one_frame_shortcut_agrees_with_the_parser(data: bytes) -> None:
    """`parse_basic_frame` answers exactly for a read that is one good basic frame, with the
    reply the parser would give; anything else (None) is left to the parser."""
    expected = _clean_read(data)
    for _ in range(2):  # the second time from its memo
        assert codec.parse_basic_frame(data) == expected
