"""New Era RS-232 codec: pure functions from values to bytes and back, no I/O.

The host side of the protocol in `docs/newera.md` / `shared/protocols/newera.md`:
requests are framed either as basic text (`<addr><cmd><data>` CR) or as safe-mode packets
(STX, length, payload, CRC-16/XModem high byte first, ETX); replies arrive as STX
`<2-digit addr><status>[data]` ETX, or safe-framed. Numbers must fit the pump's display
(at most 4 digits, at most 3 after the point), so anything that cannot be written exactly is
refused instead of being truncated on the way to the pump (`numbers`, re-exported here).
"""

from __future__ import annotations

import binascii
import functools
import re
from dataclasses import dataclass

from pumpctl.drivers.base import (
    Alarm,
    AlarmKind,
    PumpChecksumError,
    PumpError,
    PumpNotApplicable,
    PumpOutOfRange,
    PumpProtocolError,
    PumpState,
)
from pumpctl.drivers.newera.numbers import (
    _MEMO_MAX,
    MAX_DECIMALS,
    MAX_DIGITS,
    RATE_UNIT_PREFERENCE,
    RateUnit,
    VolumeUnit,
    encode_rate,
    encode_volume,
    format_number,
    is_expressible,
    parse_dispensed,
    parse_number,
    parse_rate,
    parse_volume,
)

__all__ = ["MAX_DECIMALS", "MAX_DIGITS", "RATE_UNIT_PREFERENCE", "RateUnit", "VolumeUnit",
           "encode_rate", "encode_volume", "format_number", "is_expressible",
           "parse_dispensed", "parse_number", "parse_rate", "parse_volume"]

STX = 0x02
ETX = 0x03
CR = 0x0D

MAX_ADDRESS = 99
# A safe-mode length byte counts itself, the payload, two CRC bytes and ETX.
SAFE_OVERHEAD = 4
# Replies are short ("00SI35.00W0.000ML", 17 bytes, is the longest we know); anything longer
# is noise. Kept below 44 so that a safe-mode length byte (payload + 4) is never an ASCII
# digit, which is what tells a safe frame from a basic one.
MAX_REPLY_PAYLOAD = 40


class CommandIgnored(PumpNotApplicable):
    """`?IGN`: the pump ignored the command because a new phase started at that moment."""


class ValueRefused(PumpOutOfRange):
    """`?OOR`: the pump itself refused the value (outside what it allows right now)."""


class CommandNotRecognised(PumpProtocolError):
    """`?`: the pump did not recognise the command."""


STATUS_STATES: dict[str, PumpState] = {
    "I": PumpState.INFUSING,
    "W": PumpState.WITHDRAWING,
    "S": PumpState.STOPPED,
    "P": PumpState.PAUSED,
    "T": PumpState.TIMED_PAUSE,
    "U": PumpState.WAITING_TRIGGER,
    "X": PumpState.PURGING,
}
ALARM_STATUS = "A"

ALARM_KINDS: dict[str, tuple[AlarmKind, str]] = {
    "R": (AlarmKind.POWER_RESET, "power was interrupted"),
    "S": (AlarmKind.STALL, "motor stalled"),
    "T": (AlarmKind.WATCHDOG, "safe-mode communication timeout"),
    "E": (AlarmKind.PROGRAM_ERROR, "pumping program error"),
    "O": (AlarmKind.PHASE_OUT_OF_RANGE, "pumping program phase out of range"),
}

ERROR_CODES = ("", "NA", "OOR", "COM", "IGN")


def alarm_from_letter(letter: str) -> Alarm:
    kind, message = ALARM_KINDS.get(letter, (AlarmKind.UNKNOWN, f"unknown alarm {letter!r}"))
    return Alarm(kind=kind, code=letter, message=message)


# ---------------------------------------------------------------------------------------------
# Framing


def crc16(payload: bytes) -> int:
    """CRC-16/CCITT with initial value 0 (the XModem variant New Era uses)."""
    return binascii.crc_hqx(payload, 0)


def frame_basic(payload: bytes) -> bytes:
    return payload + bytes([CR])


def frame_safe(payload: bytes) -> bytes:
    if len(payload) + SAFE_OVERHEAD > 0xFF:
        raise PumpOutOfRange(
            f"safe-mode payload of {len(payload)} bytes exceeds the 251-byte limit")
    return (
        bytes([STX, len(payload) + SAFE_OVERHEAD])
        + payload
        + crc16(payload).to_bytes(2, "big")
        + bytes([ETX])
    )


def request_payload(address: int, command: str, data: str = "") -> bytes:
    """The text of a request. System commands (`*ADR`) go without an address prefix."""
    if not 0 <= address <= MAX_ADDRESS:
        raise PumpOutOfRange(f"address {address} is outside 0-{MAX_ADDRESS}")
    prefix = "" if command.startswith("*") else str(address)
    return f"{prefix}{command}{data}".encode("ascii")


def encode_request(address: int, command: str, data: str = "", *, safe: bool = False) -> bytes:
    payload = request_payload(address, command, data)
    return frame_safe(payload) if safe else frame_basic(payload)


# ---------------------------------------------------------------------------------------------
# Replies


@dataclass(frozen=True)
class Frame:
    """One framed reply as it came off the wire."""

    payload: bytes
    safe: bool


@dataclass(frozen=True)
class Reply:
    address: int
    status: str  # one of STATUS_STATES or "A"
    data: str = ""
    alarm: Alarm | None = None
    error: str | None = None  # "", "NA", "OOR", "COM", "IGN" after a "?"
    safe: bool = False

    @property
    def state(self) -> PumpState:
        return PumpState.ALARM if self.alarm else STATUS_STATES[self.status]


@functools.lru_cache(maxsize=_MEMO_MAX)
def parse_reply(payload: bytes, *, safe: bool = False) -> Reply:
    """Decode the text between the framing bytes, e.g. `00A?S` or `01I52.50MH`."""
    return _parse_reply(payload, safe)


def _parse_reply(payload: bytes, safe: bool) -> Reply:
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError as exc:
        raise PumpProtocolError(
            f"reply {payload!r} contains a non-ASCII byte at {exc.start}") from None
    if len(text) < 3 or not text[:2].isdigit() or not text[:2].isascii():
        raise PumpProtocolError(f"reply {text!r} does not start with a 2-digit address")
    address, status, rest = int(text[:2]), text[2], text[3:]
    if status == ALARM_STATUS:
        if len(rest) != 2 or rest[0] != "?" or not rest[1].isalpha():
            raise PumpProtocolError(f"alarm reply {text!r} is not A?<letter>")
        return Reply(address, status, alarm=alarm_from_letter(rest[1]), safe=safe)
    if status not in STATUS_STATES:
        raise PumpProtocolError(f"reply {text!r} has unknown status character {status!r}")
    if rest.startswith("?"):
        code = rest[1:]
        if code not in ERROR_CODES:
            raise PumpProtocolError(f"reply {text!r} has unknown error code {code!r}")
        return Reply(address, status, error=code, safe=safe)
    if not rest.isprintable():
        raise PumpProtocolError(f"reply {text!r} contains control characters")
    return Reply(address, status, data=rest, safe=safe)


# What the data of each command's answer looks like (a write, RUN, STP, CLD and `*ADR` answer
# with none). Replies carry no sequence number and do not repeat their command, so this is
# how the bus tells a request's own answer from a late answer to an earlier one.
_QUERY_ANSWERS = {
    "": "",
    "VER": r"NE.*",
    "DIA": r"[\d.]+",
    "RAT": r"[\d.]+(UM|MM|UH|MH)",
    "VOL": r"[\d.]+(UL|ML)",
    "DIR": r"INF|WDR",
    "DIS": r"I[\d.]+W[\d.]+(UL|ML)",
    "SAF": r"\d+",
}


@functools.lru_cache(maxsize=64)
def answer_shape(command: str, with_data: bool) -> re.Pattern[str] | None:
    """The pattern the data of an answer to `command` (sent with or without data) matches
    in full; None for a command this codec does not know (anything is taken)."""
    if with_data or command in ("RUN", "STP", "CLD", "*ADR"):
        return re.compile("")
    shape = _QUERY_ANSWERS.get(command)
    return None if shape is None else re.compile(shape)


def error_for(reply: Reply, request: str) -> PumpError | None:
    """The exception a `?...` reply stands for, naming the request it answered."""
    if reply.error is None:
        return None
    where = f"pump {reply.address} refused {request!r}"
    if reply.error == "OOR":
        return ValueRefused(f"{where}: data out of range (?OOR)")
    if reply.error == "NA":
        return PumpNotApplicable(f"{where}: not applicable in state {reply.state.value} (?NA)")
    if reply.error == "COM":
        return PumpChecksumError(f"{where}: the pump received a corrupted packet (?COM)")
    if reply.error == "IGN":
        return CommandIgnored(f"{where}: ignored as a new phase started (?IGN)")
    return CommandNotRecognised(f"{where}: command not recognised (?)")


_PRINTABLE = bytes(range(0x20, 0x7F))


def _is_one_basic_frame(data: bytes) -> bool:
    """STX, an address digit, no other STX, and the first ETX as the last byte."""
    return (len(data) >= 3 and data[0] == STX and 0x30 <= data[1] <= 0x39
            and data.find(ETX) == len(data) - 1 and data.find(STX, 1) < 0)


@functools.lru_cache(maxsize=_MEMO_MAX)
def parse_basic_frame(data: bytes) -> Reply | None:
    """The reply when `data` is exactly one valid basic frame (what a read from the line
    usually holds), else None: the caller then hands `data` to a `ReplyParser`, which splits
    it and says what is wrong with it. Rate and status replies repeat poll after poll, so
    each distinct read is decoded once (bounded cache)."""
    if not _is_one_basic_frame(data):
        return None
    payload = data[1:-1]
    if payload.translate(None, _PRINTABLE):
        return None
    try:
        return parse_reply(payload)
    except PumpError:
        return None


class ReplyParser:
    """Incremental splitter of a host-side byte stream into reply frames.

    Basic and safe framing are told apart by the byte after STX: a basic reply starts with
    an address digit (0x30-0x39), a safe one with its length byte, 7 to 44 for the replies
    accepted here, so never a digit.
    Bytes outside frames are counted as noise and dropped. Broken frames come back as
    error values, not raised, so one bad frame does not lose the good ones after it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.noise_bytes = 0

    def reset(self) -> None:
        self.noise_bytes += len(self._buf)
        self._buf.clear()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | PumpError]:
        if not self._buf and _is_one_basic_frame(data):
            # The usual read: exactly one whole basic reply (what the loop below would find).
            payload = data[1:-1]
            if payload.translate(None, _PRINTABLE):
                return [PumpProtocolError(f"reply {payload!r} contains non-printable bytes")]
            return [Frame(payload, safe=False)]
        self._buf += data
        out: list[Frame | PumpError] = []
        while True:
            item = self._next()
            if item is None:
                return out
            out.append(item)

    def _drop(self, n: int) -> None:
        self.noise_bytes += n
        del self._buf[:n]

    def _next(self) -> Frame | PumpError | None:
        buf = self._buf
        start = buf.find(STX)
        if start < 0:
            self._drop(len(buf))
            return None
        if start:
            self._drop(start)
        if len(buf) < 2:
            return None
        if 0x30 <= buf[1] <= 0x39:
            return self._next_basic()
        return self._next_safe()

    def _next_basic(self) -> Frame | PumpError | None:
        buf = self._buf
        end = buf.find(ETX, 1)
        restart = buf.find(STX, 1)
        if restart >= 0 and (end < 0 or restart < end):
            bad = bytes(buf[:restart])
            self._drop(restart)
            return PumpProtocolError(f"incomplete reply {bad!r} cut off by a new STX")
        if end < 0:
            if len(buf) > MAX_REPLY_PAYLOAD + 2:
                bad = bytes(buf[:16])
                self._drop(1)
                return PumpProtocolError(f"reply starting {bad!r} has no ETX within "
                                         f"{MAX_REPLY_PAYLOAD} bytes")
            return None
        payload = bytes(buf[1:end])
        del buf[: end + 1]
        if payload.translate(None, _PRINTABLE):  # anything left is not printable ASCII
            return PumpProtocolError(f"reply {payload!r} contains non-printable bytes")
        return Frame(payload, safe=False)

    def _next_safe(self) -> Frame | PumpError | None:
        buf = self._buf
        length = buf[1]
        if not SAFE_OVERHEAD + 3 <= length <= SAFE_OVERHEAD + MAX_REPLY_PAYLOAD:
            self._drop(1)
            top = SAFE_OVERHEAD + MAX_REPLY_PAYLOAD
            return PumpProtocolError(
                f"safe-mode length byte 0x{length:02X} outside 0x07-0x{top:02X}")
        if len(buf) < 1 + length:
            return None
        frame = bytes(buf[: 1 + length])
        if frame[-1] != ETX:
            self._drop(1)
            return PumpProtocolError(
                f"safe-mode frame of length {length} ends with 0x{frame[-1]:02X}, not ETX")
        del buf[: 1 + length]
        payload = frame[2:-3]
        sent = int.from_bytes(frame[-3:-1], "big")
        if sent != crc16(payload):
            return PumpChecksumError(
                f"safe-mode reply {payload!r}: CRC 0x{sent:04X}, computed 0x{crc16(payload):04X}")
        return Frame(payload, safe=True)
