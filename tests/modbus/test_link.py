"""The Modbus link on a scripted in-memory transport: what a broken line looks like to it.

Replies are built with pymodbus's own PDU classes and framers (what a pump would send), then
damaged on purpose: a bad CRC, bytes that are no frame, a reply from another unit or to an
earlier request, a frame split in pieces, silence. Virtual time: timeouts cost nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pymodbus.framer.rtu import FramerRTU
from pymodbus.framer.socket import FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    WriteSingleRegisterResponse,
)

from pumpctl.clock import run
from pumpctl.drivers.base import PumpChecksumError, PumpProtocolError, PumpTimeout
from pumpctl.drivers.modbus.link import ModbusExceptionReply, ModbusLink
from pumpctl.drivers.modbus.pumpmap import RegisterKind

Responder = Callable[[ModbusPDU], list[bytes]]  # the request -> chunks to deliver


class ScriptedTransport(asyncio.Transport):
    """Answers each request with what the responder says, one loop turn later."""

    def __init__(self, link: ModbusLink, framer: str, responder: Responder) -> None:
        super().__init__()
        self.link = link
        self.responder = responder
        self._framer = (FramerRTU if framer == "rtu" else FramerSocket)(DecodePDU(True))
        self.sent: list[bytes] = []
        self._closing = False
        self.outstanding = self.most_outstanding = 0  # requests written, not yet answered

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))
        _, request = self._framer.handleFrame(bytes(data), 0, 0)
        assert request is not None
        self.outstanding += 1
        self.most_outstanding = max(self.most_outstanding, self.outstanding)
        loop = asyncio.get_running_loop()
        chunks = self.responder(request)
        for i, chunk in enumerate(chunks):
            loop.call_later(0.001 * (i + 1), self._deliver, chunk, i == len(chunks) - 1)

    def _deliver(self, chunk: bytes, last: bool) -> None:
        if last:
            self.outstanding -= 1
        self.link.data_received(chunk)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True
        self.link.connection_lost(None)


def frame(framer: str, pdu: ModbusPDU, unit: int, tid: int = 0) -> bytes:
    pdu.dev_id, pdu.transaction_id = unit, tid
    return (FramerRTU if framer == "rtu" else FramerSocket)(DecodePDU(False)).buildFrame(pdu)


def holding(request: ModbusPDU, value: int = 7) -> ReadHoldingRegistersResponse:
    return ReadHoldingRegistersResponse(registers=[value] * request.count)


def with_link(framer: str, responder: Responder, body: Callable[[ModbusLink, ScriptedTransport],
                                                                   object], **kw: float) -> None:
    async def scenario() -> None:
        link = ModbusLink(framer, timeout_s=0.2, retries=int(kw.get("retries", 0)))
        transport = ScriptedTransport(link, framer, responder)
        link.attach(transport)
        await body(link, transport)  # type: ignore[misc]

    run(scenario(), virtual=True)


def test_rtu_read_whole_and_split_in_pieces() -> None:
    def split(req: ModbusPDU) -> list[bytes]:
        raw = frame("rtu", holding(req), req.dev_id)
        return [raw[:3], raw[3:5], raw[5:]]  # a pty delivers a frame in pieces

    async def body(link: ModbusLink, _: ScriptedTransport) -> None:
        assert await link.read(2, RegisterKind.HOLDING, 5, 3) == [7, 7, 7]

    with_link("rtu", split, body)


def test_rtu_bad_crc_is_a_checksum_error() -> None:
    def bad_crc(req: ModbusPDU) -> list[bytes]:
        raw = bytearray(frame("rtu", holding(req), req.dev_id))
        raw[-1] ^= 0xFF
        return [bytes(raw)]

    async def body(link: ModbusLink, _: ScriptedTransport) -> None:
        with pytest.raises(PumpChecksumError, match="bad CRC"):
            await link.read(1, RegisterKind.HOLDING, 0, 2)

    with_link("rtu", bad_crc, body)


def test_a_bad_crc_is_retried_on_reads() -> None:
    answers = iter([True, False])

    def once_bad(req: ModbusPDU) -> list[bytes]:
        raw = bytearray(frame("rtu", holding(req, 3), req.dev_id))
        if next(answers):
            raw[-2] ^= 0x01
        return [bytes(raw)]

    async def body(link: ModbusLink, _: ScriptedTransport) -> None:
        assert await link.read(1, RegisterKind.HOLDING, 0, 1) == [3]
        assert link.retried == 1

    with_link("rtu", once_bad, body, retries=1)


def test_bytes_that_make_no_frame_are_a_protocol_error() -> None:
    async def body(link: ModbusLink, _: ScriptedTransport) -> None:
        with pytest.raises(PumpProtocolError, match="no Modbus frame"):
            await link.read(1, RegisterKind.HOLDING, 0, 1)

    with_link("socket", lambda req: [b"\x00\x01\x12\x34\x00\x05\x01\x03\x02\x00\x07"], body)


def test_silence_is_a_timeout_naming_the_request() -> None:
    async def body(link: ModbusLink, _: ScriptedTransport) -> None:
        with pytest.raises(PumpTimeout, match=r"no reply to read holding registers at 4 from "
                                              r"unit 9 within 0.2 s"):
            await link.read(9, RegisterKind.HOLDING, 4, 1)

    with_link("rtu", lambda req: [], body)


def test_a_reply_from_another_unit_or_an_earlier_request_is_not_the_answer() -> None:
    def confused(req: ModbusPDU) -> list[bytes]:
        other_unit = frame("rtu", holding(req, 1), req.dev_id + 1)
        late = frame("rtu", ReadHoldingRegistersResponse(registers=[1]), req.dev_id)  # 1 reg
        right = frame("rtu", holding(req, 5), req.dev_id)
        return [other_unit, late, right]

    async def body(link: ModbusLink, _: ScriptedTransport) -> None:
        assert await link.read(1, RegisterKind.HOLDING, 0, 2) == [5, 5]
        assert link.stale == 2

    with_link("rtu", confused, body)


def test_tcp_transaction_ids_keep_a_late_reply_out() -> None:
    def late_first(req: ModbusPDU) -> list[bytes]:
        return [frame("socket", holding(req, 1), req.dev_id, req.transaction_id + 100),
                frame("socket", holding(req, 2), req.dev_id, req.transaction_id)]

    async def body(link: ModbusLink, _: ScriptedTransport) -> None:
        assert await link.read(1, RegisterKind.HOLDING, 0, 1) == [2]

    with_link("socket", late_first, body)


@pytest.mark.parametrize(("code", "name"), [(1, "illegal function"),
                                            (2, "illegal data address"),
                                            (3, "illegal data value"),
                                            (4, "server device failure")])
def test_exception_replies_name_function_address_and_code(code: int, name: str) -> None:
    def refuse(req: ModbusPDU) -> list[bytes]:
        return [frame("rtu", ExceptionResponse(req.function_code, code), req.dev_id)]

    async def body(link: ModbusLink, _: ScriptedTransport) -> None:
        with pytest.raises(ModbusExceptionReply) as err:
            await link.write(4, RegisterKind.HOLDING, 7, [12])
        assert (err.value.code, err.value.function, err.value.address) == (code, 6, 7)
        assert str(err.value) == (f"unit 4 answered write single register (FC 6) at address 7 "
                                  f"with exception {code} ({name})")

    with_link("rtu", refuse, body)


def test_a_write_echo_must_match() -> None:
    def wrong_echo(req: ModbusPDU) -> list[bytes]:
        return [frame("rtu", WriteSingleRegisterResponse(address=req.address, registers=[0]),
                      req.dev_id)]

    async def body(link: ModbusLink, _: ScriptedTransport) -> None:
        with pytest.raises(PumpProtocolError, match=r"an echo of \[0\] instead of \[12\]"):
            await link.write(1, RegisterKind.HOLDING, 8, [12])

    with_link("rtu", wrong_echo, body)


def test_requests_are_serialised_one_in_flight() -> None:
    def answer(req: ModbusPDU) -> list[bytes]:
        return [frame("rtu", holding(req, req.address), req.dev_id)]

    async def body(link: ModbusLink, transport: ScriptedTransport) -> None:
        results = await asyncio.gather(*(link.read(u, RegisterKind.HOLDING, u, 1)
                                         for u in (1, 2, 3)))
        assert results == [[1], [2], [3]]
        assert len(transport.sent) == 3 and transport.most_outstanding == 1

    with_link("rtu", answer, body)


def test_a_closed_connection_fails_the_request_in_flight() -> None:
    async def body(link: ModbusLink, transport: ScriptedTransport) -> None:
        asyncio.get_running_loop().call_later(0.05, transport.close)
        with pytest.raises(PumpProtocolError, match="connection closed by the other end"):
            await link.read(1, RegisterKind.HOLDING, 0, 1)
        with pytest.raises(PumpProtocolError, match="connection closed"):
            await link.read(1, RegisterKind.HOLDING, 0, 1)

    with_link("rtu", lambda req: [], body)


def test_scan_counts_what_answers_but_not_a_gateway_saying_nobody_is_there() -> None:
    from pymodbus.pdu.register_message import ReadInputRegistersResponse

    from pumpctl.drivers.modbus.line import ModbusLine
    from pumpctl.drivers.modbus.pumpmap import load_map

    def line_of_units(req: ModbusPDU) -> list[bytes]:
        if req.dev_id == 1:
            return [frame("rtu", ReadInputRegistersResponse(registers=[0]), 1)]
        if req.dev_id == 2:  # present, but refusing: still a pump
            return [frame("rtu", ExceptionResponse(req.function_code, 2), 2)]
        if req.dev_id == 3:  # a gateway: no device behind it
            return [frame("rtu", ExceptionResponse(req.function_code, 11), 3)]
        return []

    async def body(link: ModbusLink, _: ScriptedTransport) -> None:
        line = ModbusLine(link, load_map("generic"))
        assert await line.scan(range(1, 6), timeout_s=0.05) == [1, 2]

    with_link("rtu", line_of_units, body)


def test_a_silent_unit_holds_the_line_one_timeout_at_a_time() -> None:
    """Unit 9 is silent: between its attempts it waits for its owed reply off the line, so a
    request to unit 1 goes through after one timeout (0.2 s), not after both attempts."""
    def only_unit_1(req: ModbusPDU) -> list[bytes]:
        return [frame("rtu", holding(req, 1), 1)] if req.dev_id == 1 else []

    async def body(link: ModbusLink, _: ScriptedTransport) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        silent = asyncio.create_task(link.read(9, RegisterKind.HOLDING, 0, 1))
        await asyncio.sleep(0.01)
        assert await link.read(1, RegisterKind.HOLDING, 0, 1) == [1]
        healthy_done = loop.time() - start
        with pytest.raises(PumpTimeout):
            await silent
        assert healthy_done == pytest.approx(0.2, abs=0.01)  # one timeout of unit 9, not two
        assert loop.time() - start == pytest.approx(0.6, abs=0.01)  # 0.2 + owed wait + 0.2

    with_link("rtu", only_unit_1, body, retries=1)


def test_a_late_reply_ends_the_wait_for_it() -> None:
    answers: list[float] = [0.3, 0.001]  # the first reply comes after its 0.2 s timeout

    class Late(ScriptedTransport):
        def write(self, data: bytes | bytearray | memoryview) -> None:
            self.sent.append(bytes(data))
            _, req = self._framer.handleFrame(bytes(data), 0, 0)
            assert req is not None
            asyncio.get_running_loop().call_later(
                answers.pop(0), self.link.data_received, frame("rtu", holding(req, 4), 1))

    async def scenario() -> None:
        link = ModbusLink("rtu", timeout_s=0.2, retries=1)
        link.attach(Late(link, "rtu", lambda req: []))
        loop = asyncio.get_running_loop()
        assert await link.read(1, RegisterKind.HOLDING, 0, 1) == [4]
        # timeout at 0.2, the late reply at 0.3 ends the wait, the retry answered at once
        assert loop.time() == pytest.approx(0.301, abs=0.005)
        assert link.stale == 1 and link.retried == 1

    run(scenario(), virtual=True)
