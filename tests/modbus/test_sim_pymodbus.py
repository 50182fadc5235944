"""pymodbus's own client (the pinned 3.16.1, not the project's driver) against the simulator on
a real TCP socket: an ISCO D delivery as the map says it is done, Modbus TCP framing and the
exception replies as a standard client sees them; and RTU frames over TCP (a serial device
server) for the Vindum map."""

from __future__ import annotations

import asyncio

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.framer import FramerType

from pumpctl.clock import LoopClock
from pumpctl.drivers.modbus.pumpmap import load_map
from simulators.modbus import ModbusSimulator
from simulators.serve import TcpServer

F32 = AsyncModbusTcpClient.DATATYPE.FLOAT32

pytestmark = pytest.mark.realtime


async def test_pymodbus_drives_the_isco_pump_over_modbus_tcp() -> None:
    sim = ModbusSimulator(LoopClock(), load_map("isco-d"))
    async with sim, TcpServer(sim) as server:
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)
        assert await client.connect()
        try:
            for coil in (89, 13):  # flow unit mL/h, constant flow A
                assert not (await client.write_coil(coil, True, device_id=1)).isError()
            words = client.convert_to_registers(30.0, F32, word_order="big")
            assert not (await client.write_registers(12, words, device_id=1)).isError()
            assert not (await client.write_coil(0, True, device_id=1)).isError()
            coils = await client.read_coils(0, count=1, device_id=1)
            assert coils.bits[0] is True
            flow = await client.read_holding_registers(74, count=2, device_id=1)
            assert client.convert_from_registers(flow.registers, F32) == 30.0
            block = await client.read_holding_registers(0, count=100, device_id=1)
            assert len(block.registers) == 100
            assert block.registers[12:14] == words  # the set point, as written
            await asyncio.sleep(0.2)  # real time: the pump moves a little
            dispensed = await client.read_holding_registers(148, count=2, device_id=1)
            assert 0 < client.convert_from_registers(dispensed.registers, F32) < 0.01
            alarms = await client.read_coils(109, count=6, device_id=1)
            assert alarms.bits[:6] == [False] * 6
            assert not (await client.write_coil(0, False, device_id=1)).isError()
            assert sim.pump(1).moving is False
            # Exceptions as a standard client reads them.
            outside = await client.read_holding_registers(162, count=1, device_id=1)
            assert outside.isError() and outside.exception_code == 2
            read_only = await client.write_registers(72, [0, 0], device_id=1)
            assert read_only.isError() and read_only.exception_code == 2
            too_fast = client.convert_to_registers(1e6, F32, word_order="big")
            refused = await client.write_registers(12, too_fast, device_id=1)
            assert refused.isError() and refused.exception_code == 3
        finally:
            client.close()


async def test_pymodbus_with_rtu_frames_over_tcp_reads_the_vindum_pump() -> None:
    sim = ModbusSimulator(LoopClock(), load_map("vindum-vp"), framer="rtu")
    async with sim, TcpServer(sim) as server:
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, framer=FramerType.RTU,
                                      timeout=2, retries=0)
        assert await client.connect()
        try:
            inputs = await client.read_input_registers(0, count=43, device_id=1)
            assert len(inputs.registers) == 43 and inputs.registers[22] == 0
            words = client.convert_to_registers(12.5, F32, word_order="big")
            assert not (await client.write_registers(5, words, device_id=1)).isError()
            rate = await client.read_holding_registers(5, count=2, device_id=1)
            assert client.convert_from_registers(rate.registers, F32) == 12.5
            two = await client.write_registers(5, words + words, device_id=1)
            assert two.isError() and two.exception_code == 3  # one float per FC 16
        finally:
            client.close()
