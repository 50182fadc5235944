"""The pump's side of the New Era wire: splitting received bytes into packets, framing replies.

Written separately from the host-side codec in `pumpctl.drivers.newera.codec` on purpose:
the simulator is the reference the driver is tested against, so sharing the framing code
would let one bug hide itself on both ends. Both are checked against the byte vectors of the
facts file and against an unmodified third-party client.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

STX, ETX, CR = 0x02, 0x03, 0x0D
PACKET_GAP_S = 0.5  # a pause this long inside a safe-mode packet discards it
MAX_BASIC_LINE = 128  # a runaway line without CR is dropped rather than buffered forever


@dataclass(frozen=True)
class Packet:
    """One command as the pump received it. `valid` is False for a safe packet whose CRC,
    length or ETX is wrong (the pump answers those with `?COM`)."""

    text: str
    safe: bool
    valid: bool = True


class RequestFramer:
    """Incremental receiver for one serial line.

    Basic mode: everything up to CR, with spaces and control characters dropped and letters
    upper-cased, as the pump does. An STX begins a safe-mode packet: length byte, payload,
    two CRC bytes, ETX; its binary bytes may be anything (CR included), so they are counted,
    not scanned.
    """

    def __init__(self) -> None:
        self._text = bytearray()
        self._safe: bytearray | None = None  # bytes after STX while a safe packet is open
        self._last_byte_at = 0.0

    def feed(self, data: bytes, now: float) -> list[Packet]:
        out: list[Packet] = []
        if self._safe is not None and now - self._last_byte_at >= PACKET_GAP_S:
            self._safe = None  # the rest of that packet never came
        self._last_byte_at = now
        for byte in data:
            if self._safe is not None:
                self._safe.append(byte)
                packet = self._safe_done()
                if packet is not None:
                    out.append(packet)
                continue
            if byte == STX:
                self._text.clear()
                self._safe = bytearray()
            elif byte == CR:
                out.append(Packet(clean_text(bytes(self._text)), safe=False))
                self._text.clear()
            elif 0x20 < byte < 0x7F:
                if len(self._text) < MAX_BASIC_LINE:
                    self._text.append(byte)
                else:
                    self._text.clear()
        return out

    def _safe_done(self) -> Packet | None:
        buf = self._safe
        assert buf is not None
        length = buf[0]
        if length < 5:  # no room for even a one-byte payload: not a packet
            self._safe = None
            return Packet("", safe=True, valid=False)
        if len(buf) < length:
            return None
        self._safe = None
        payload, crc, end = bytes(buf[1:-3]), bytes(buf[-3:-1]), buf[-1]
        valid = end == ETX and int.from_bytes(crc, "big") == binascii.crc_hqx(payload, 0)
        return Packet(clean_text(payload), safe=True, valid=valid)


def clean_text(raw: bytes) -> str:
    return "".join(chr(b) for b in raw if 0x20 < b < 0x7F).upper()


@dataclass(frozen=True)
class Command:
    address: int | None  # None: no address given (means 0); system commands ignore it
    name: str  # "" (status query), "VER", "RAT", ..., or "*ADR"
    data: str


_COMMAND = re.compile(r"(\d*)(\*[A-Z]+|[A-Z]{3}|)(.*)")


def split_command(text: str) -> Command | None:
    """`01RAT52.5MH` -> Command(1, "RAT", "52.5MH"); None when it has no command shape."""
    match = _COMMAND.fullmatch(text)
    if match is None:
        return None
    digits, name, data = match.groups()
    if not name and data:
        return Command(int(digits) if digits else None, "?", data)
    return Command(int(digits) if digits else None, name, data)


def frame_reply(text: str, *, safe: bool) -> bytes:
    payload = text.encode("ascii")
    if not safe:
        return bytes([STX]) + payload + bytes([ETX])
    crc = binascii.crc_hqx(payload, 0)
    return bytes([STX, len(payload) + 4]) + payload + crc.to_bytes(2, "big") + bytes([ETX])


_INPUT_NUMBER = re.compile(r"(\d*)(?:\.(\d*))?")


def read_number(text: str) -> float | None:
    """A number as the pump accepts it (≤ 4 digits, ≤ 3 decimals), or None."""
    match = _INPUT_NUMBER.fullmatch(text)
    if match is None:
        return None
    whole, frac = match[1], match[2] or ""
    if not whole and not frac:
        return None
    if len(whole) + len(frac) > 4 or len(frac) > 3:
        return None
    return float(f"{whole or '0'}.{frac or '0'}")


def show_number(value: float) -> str:
    """A number as the pump displays it: 4 digits, always with a decimal point."""
    value = max(0.0, value)
    for decimals in (3, 2, 1):
        text = f"{value:.{decimals}f}"
        if len(text) - 1 <= 4:
            return text
    whole = f"{min(value, 9999.0):.0f}"
    return whole + "."
