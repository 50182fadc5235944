"""The pump's side of the New Era wire: splitting received bytes into packets, framing replies.

Written separately from the host-side codec in `pumpctl.drivers.newera.codec` on purpose:
the simulator is the reference the driver is tested against, so sharing the framing code
would let one bug hide itself on both ends. Both are checked against the byte vectors of the
facts file and against an unmodified third-party client.
"""

from __future__ import annotations

import binascii
import functools
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
        if self._safe is not None and now - self._last_byte_at >= PACKET_GAP_S:
            self._safe = None  # the rest of that packet never came
        self._last_byte_at = now
        if self._safe is None and not self._text:
            packet = _whole_basic_command(bytes(data))
            if packet is not None:
                return [packet]
        out: list[Packet] = []
        # Worked through in runs rather than byte by byte: text up to the next STX or CR,
        # or as many bytes as the open safe packet still needs.
        i, n = 0, len(data)
        while i < n:
            safe = self._safe
            if safe is not None:
                if not safe:
                    safe.append(data[i])
                    i += 1
                else:
                    take = min(safe[0] - len(safe), n - i)
                    safe += data[i:i + take]
                    i += take
                packet = self._safe_done()
                if packet is not None:
                    out.append(packet)
                continue
            stx, cr = data.find(STX, i), data.find(CR, i)
            end = min(stx, cr) if stx >= 0 and cr >= 0 else max(stx, cr)
            self._add_text(data[i:] if end < 0 else data[i:end])
            if end < 0:
                break
            if end == stx:
                self._text.clear()
                self._safe = bytearray()
            else:
                out.append(Packet(self._text.decode("ascii").upper(), safe=False))
                self._text.clear()
            i = end + 1
        return out

    def _add_text(self, chunk: bytes) -> None:
        """Keep the printable, non-space bytes of `chunk`; a line that outgrows
        MAX_BASIC_LINE is dropped, and the byte that overflowed it with it."""
        kept = chunk.translate(None, _NOT_TEXT)
        if len(self._text) + len(kept) <= MAX_BASIC_LINE:
            self._text += kept
            return
        for byte in kept:
            if len(self._text) < MAX_BASIC_LINE:
                self._text.append(byte)
            else:
                self._text.clear()

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


# A host polls with a handful of distinct texts; the caches of their parses below are bounded
# so that noise cannot grow them.
_CACHE_MAX = 256


@functools.lru_cache(maxsize=_CACHE_MAX)
def _whole_basic_command(chunk: bytes) -> Packet | None:
    """The packet when `chunk` is exactly one whole basic command ("0DIS\\r", the usual read
    while nothing is pending), else None (the framer then works through it byte run by run)."""
    if not chunk or chunk.find(CR) != len(chunk) - 1 or chunk.find(STX) >= 0:
        return None
    text = chunk[:-1].translate(None, _NOT_TEXT)
    if len(text) > MAX_BASIC_LINE:
        return None
    return Packet(text.decode("ascii").upper(), safe=False)

# Bytes a pump drops from command text: controls, space and DEL and above.
_NOT_TEXT = bytes(b for b in range(256) if not 0x20 < b < 0x7F)


def clean_text(raw: bytes) -> str:
    return raw.translate(None, _NOT_TEXT).decode("ascii").upper()


@dataclass(frozen=True)
class Command:
    address: int | None  # None: no address given (means 0); system commands ignore it
    name: str  # "" (status query), "VER", "RAT", ..., or "*ADR"
    data: str


_COMMAND = re.compile(r"(\d*)(\*[A-Z]+|[A-Z]{3}|)(.*)")




@functools.lru_cache(maxsize=_CACHE_MAX)
def split_command(text: str) -> Command | None:
    """`01RAT52.5MH` -> Command(1, "RAT", "52.5MH"); None when it has no command shape."""
    match = _COMMAND.fullmatch(text)
    if match is None:
        return None
    digits, name, data = match.groups()
    address = int(digits) if digits else None
    return Command(address, "?", data) if not name and data else Command(address, name, data)


@functools.lru_cache(maxsize=_CACHE_MAX)
def frame_reply(text: str, *, safe: bool) -> bytes:
    """Reply bytes for `text`; the few replies a polling host gets again and again (the rate,
    a plain status) are framed once (bounded cache)."""
    payload = text.encode("ascii")
    if not safe:
        return b"\x02" + payload + b"\x03"
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
    if not value > 0.0:
        value = 0.0  # negatives and NaN show as zero
    text = f"{value:.3f}"
    if len(text) <= 5:  # below 10, the usual case for a counter: three decimals
        return text
    for form in ("%.2f", "%.1f"):  # the most decimals that leave 4 digits
        text = form % value
        if len(text) - 1 <= 4:
            return text
    return f"{min(value, 9999.0):.0f}."
