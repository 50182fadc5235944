"""The server's side of the Modbus wire: requests out of received bytes, replies into frames.

Two framings, as a pump is reached over Modbus TCP or a serial line:
- **MBAP** (Modbus TCP): a 7-byte header (transaction id, protocol id 0, length, unit id)
  before each PDU. Every TCP connection is its own conversation, so there is one
  `MbapFramer` per connection and a reply goes back to the connection that asked.
- **RTU**: unit id, PDU, CRC-16; frames are delimited by 3.5 characters of silence, and
  everyone on the line hears every frame, so there is one `RtuFramer` per line.

What comes from pymodbus (3.16.1, the version the driver uses): the PDU classes (request
decoding with their own range checks, reply encoding), the MBAP header codec
(`FramerSocket`) and the CRC and RTU framing of replies (`FramerRTU`). What does not, and why:
pymodbus's server-side RTU decoder consumes everything buffered once it has found one good
frame (a second request glued to the first is lost) and throws the whole buffer away on a
bad CRC; it also hunts for a frame byte by byte rather than waiting for silence. A line where
requests may arrive glued, split or damaged needs a splitter that honours silence and takes
exactly one frame's length at a time, so `RtuFramer` is written here; the length of a frame
still comes from pymodbus's own PDU tables (`calculateRtuFrameSize`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ModbusPDU

MAX_RTU_FRAME = 256  # unit id + PDU (at most 253 bytes) + CRC
MAX_MBAP_LENGTH = 254  # the MBAP length field: unit id + PDU
MIN_SILENCE_S = 0.00175  # above 19200 baud the standard fixes t3.5 at 1.75 ms
SILENCE_CHARS = 3.5
BITS_PER_CHAR = 11  # start, 8 data, parity or second stop, stop: what t3.5 is counted in

_DECODER = DecodePDU(is_server=True)
_SOCKET = FramerSocket(_DECODER)
_RTU = FramerRTU(_DECODER)


def silence_s(baud: int | None) -> float:
    """t3.5, the silence that ends an RTU frame, at `baud` (None: the 1.75 ms floor)."""
    if not baud:
        return MIN_SILENCE_S
    return max(MIN_SILENCE_S, SILENCE_CHARS * BITS_PER_CHAR / baud)


@dataclass(frozen=True)
class Request:
    """One request as it arrived: the unit it is for, the MBAP transaction id (None on RTU)
    and the PDU (function code + data)."""

    unit: int
    pdu: bytes
    tid: int | None = None

    @property
    def function_code(self) -> int:
        return self.pdu[0]


def decode_request(pdu: bytes) -> ModbusPDU | int:
    """The request `pdu` as a pymodbus request object, or the exception code to answer:
    1 (illegal function) for a function code pymodbus does not know as a request, 3
    (illegal data value) for one whose data does not decode (a count of 0 or past the
    standard's maximum, a short PDU)."""
    if not pdu:
        return 1
    classes = _DECODER.pdu_table.get(pdu[0])
    if pdu[0] & 0x80 or classes is None or classes[0] is None:
        return 1
    try:
        decoded = _DECODER.decode(pdu)
    except ModbusException:
        decoded = None
    return 3 if decoded is None else decoded


def frame_reply(request: Request, reply: ModbusPDU) -> bytes:
    """`reply` framed for the wire `request` came on, addressed as the request was."""
    reply.dev_id = request.unit
    if request.tid is None:
        return _RTU.buildFrame(reply)
    reply.transaction_id = request.tid
    return _SOCKET.buildFrame(reply)


def reframe(frame: bytes, *, unit: int, rtu: bool) -> bytes:
    """`frame` (a reply) as the same PDU from another unit id: what a glued frame carries."""
    if rtu:
        body = bytes([unit]) + frame[1:-2]
        return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
    return frame[:6] + bytes([unit]) + frame[7:]


class MbapFramer:
    """Requests out of one TCP connection's bytes, in any chunking.

    A header that cannot be Modbus (protocol id not 0, a length outside 2-254) leaves no way
    to find the next frame in the stream: everything buffered is dropped, as a server that
    resets such a connection would lose it.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.dropped = 0  # bytes thrown away as not Modbus

    def feed(self, data: bytes) -> list[Request]:
        self._buffer += data
        out: list[Request] = []
        while len(self._buffer) >= 8:
            header = self._buffer
            protocol = int.from_bytes(header[2:4], "big")
            length = int.from_bytes(header[4:6], "big")
            if protocol != 0 or not 2 <= length <= MAX_MBAP_LENGTH:
                self.dropped += len(self._buffer)
                self._buffer.clear()
                break
            if len(self._buffer) < 6 + length:
                break
            used, unit, tid, pdu = _SOCKET.decode(bytes(self._buffer[:6 + length]))
            del self._buffer[:used]
            out.append(Request(unit, pdu, tid))
        return out


def _rtu_request_size(frame: bytes | bytearray) -> int | None:
    """The length of the RTU request starting `frame` (at least 2 bytes), 0 if more bytes
    are needed to tell, None if its function code has no length pymodbus knows (such a
    frame ends only at silence)."""
    data = bytes(frame)
    if data[1] & 0x80:
        return None
    try:
        cls = _DECODER.lookupPduClass(data)
        if cls is None:
            return None
        return cls.calculateRtuFrameSize(data)
    except (ModbusException, IndexError):
        return None


class RtuFramer:
    """Requests out of the bytes of one RTU line, whoever sent them.

    A frame is taken when its length (from its function code) is in and its CRC matches. A
    frame with a bad CRC, and whatever follows it until the line has been silent for t3.5,
    is ignored (a slave answers no damaged frame). A partial frame followed by silence is
    dropped. Several frames in one chunk (glued) and one frame over several chunks (split)
    are both taken as they come.
    """

    def __init__(self, silence: float) -> None:
        self.silence = silence
        self._buffer = bytearray()
        self._last_byte_at: float | None = None
        self._discarding = False
        self.bad_frames = 0  # frames ignored for their CRC (or their size)

    def feed(self, data: bytes, first_byte_at: float, last_byte_at: float) -> list[Request]:
        """`data` whose first byte arrived at `first_byte_at` and last at `last_byte_at`."""
        if self._last_byte_at is None or first_byte_at - self._last_byte_at >= self.silence:
            self._buffer.clear()
            self._discarding = False
        self._last_byte_at = last_byte_at
        if self._discarding:
            return []
        self._buffer += data
        out: list[Request] = []
        buffer = self._buffer
        while len(buffer) >= 4:
            size = _rtu_request_size(buffer)
            if size is None:
                # No length to go by: the frame is everything up to the next silence, so
                # take it once its CRC matches (that is the end of the frame).
                if len(buffer) > MAX_RTU_FRAME:
                    self._discard()
                elif _crc_ok(buffer):
                    out.append(Request(buffer[0], bytes(buffer[1:-2])))
                    buffer.clear()
                break
            if size == 0 or len(buffer) < size:
                break
            if size > MAX_RTU_FRAME or not _crc_ok(buffer[:size]):
                self._discard()
                break
            out.append(Request(buffer[0], bytes(buffer[1:size - 2])))
            del buffer[:size]
        return out

    def _discard(self) -> None:
        self.bad_frames += 1
        self._buffer.clear()
        self._discarding = True


def _crc_ok(frame: bytes | bytearray) -> bool:
    body, crc = bytes(frame[:-2]), int.from_bytes(frame[-2:], "big")
    return FramerRTU.check_CRC(body, crc)
