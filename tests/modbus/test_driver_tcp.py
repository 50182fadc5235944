"""The Modbus driver over TCP against pymodbus's own server (tests/modbus/pymodbus_pump.py):
writes read back, exceptions become the project's errors, silence a timeout, scan, and the
word order of floats on the wire."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from pumpctl.clock import run
from pumpctl.drivers.base import (
    Direction,
    PumpAlarmError,
    PumpNotApplicable,
    PumpOutOfRange,
    PumpProtocolError,
    PumpState,
    PumpTimeout,
    ReadbackMismatch,
    RunOutline,
)
from pumpctl.drivers.modbus.driver import ModbusPumpDriver
from pumpctl.drivers.modbus.line import ModbusLine
from pumpctl.drivers.modbus.pumpmap import maps_dir
from pumpctl.drivers.open import open_driver, open_line
from tests.modbus.pymodbus_pump import serve_generic, value_of

pytestmark = pytest.mark.realtime  # real sockets on the wall clock (each test well under 1 s)


@contextlib.asynccontextmanager
async def generic_driver(order: str = "big", query: str = "") -> AsyncIterator[
        tuple[ModbusPumpDriver, object]]:
    async with serve_generic(order) as served, open_driver(served.url(query)) as driver:
        assert isinstance(driver, ModbusPumpDriver)
        yield driver, served.pump


async def test_settings_are_written_and_read_back() -> None:
    async with generic_driver() as (driver, pump):
        assert driver.identity is not None
        assert driver.identity.model == "PC (pumpctl generic)"
        assert driver.identity.firmware == "1.02"
        assert await driver.set_diameter(26.7) == pytest.approx(26.7, rel=1e-6)
        assert await driver.set_rate(52.5) == 52.5
        assert await driver.set_volume_limit(4.2) == pytest.approx(4.2, rel=1e-6)
        assert await driver.set_direction(Direction.INFUSE) is Direction.INFUSE
        assert (pump.rate, pump.volume, pump.direction) == (52.5, pytest.approx(4.2), 0)
        await driver.run()
        status = await driver.status()
        assert status.state is PumpState.INFUSING and status.rate_ml_h == 52.5
        assert status.direction is Direction.INFUSE
        await driver.stop()
        assert pump.state == 0 and (await driver.status()).state is PumpState.STOPPED


async def test_rtu_frames_through_a_device_server() -> None:
    async with serve_generic(rtu=True, units=(1, 2)) as served:
        async with open_driver(served.url("unit=2")) as driver:
            assert await driver.set_rate(12.5) == 12.5
            await driver.run()
            assert (await driver.status()).state is PumpState.INFUSING
            await driver.stop()
        async with open_line(served.url()) as line:
            assert await line.scan(range(1, 4), timeout_s=0.1) == [1, 2]


async def test_a_pump_that_rounds_the_rate_is_a_readback_mismatch() -> None:
    async with generic_driver() as (driver, pump):
        pump.rate_quantum = 0.1
        with pytest.raises(ReadbackMismatch, match=r"read-back mismatch on rate: sent 1.23"):
            await driver.set_rate(1.23)


async def test_exception_3_is_out_of_range_naming_function_address_code() -> None:
    async with generic_driver() as (driver, pump):
        with pytest.raises(PumpOutOfRange) as err:
            await driver.set_rate(5000)
        text = str(err.value)
        assert "write multiple registers (FC 16) at address 2" in text
        assert "exception 3 (illegal data value)" in text and "\n" not in text
        assert pump.rate == 0.0  # refused: nothing changed


async def test_values_outside_the_map_are_refused_before_sending() -> None:
    async with generic_driver() as (driver, pump):
        sent = len(pump.writes)
        with pytest.raises(PumpOutOfRange, match=r"syringe_diameter 90 mm is above its "
                                                 r"maximum 80"):
            await driver.set_diameter(90)
        with pytest.raises(PumpOutOfRange, match=r"watchdog 70000 s is outside"):
            await driver.set_watchdog(70000)
        assert len(pump.writes) == sent


async def test_an_address_the_pump_does_not_have_is_a_protocol_error(tmp_path: Path) -> None:
    data = yaml.safe_load((maps_dir() / "generic.yaml").read_text())
    data["name"] = "generic-extra"
    data["registers"]["flow_sensor"] = {"kind": "input", "address": 20, "type": "f32",
                                        "unit": "mL/h"}
    data["operations"]["rate_actual"] = "flow_sensor"
    lab_map = tmp_path / "generic-extra.yaml"
    lab_map.write_text(yaml.safe_dump(data))
    async with serve_generic() as served:
        url = served.url().replace("map=generic", f"map={lab_map}")
        async with open_driver(url) as driver:
            assert isinstance(driver, ModbusPumpDriver)
            with pytest.raises(PumpProtocolError) as err:
                await driver.rate_actual()
    assert not isinstance(err.value, PumpOutOfRange)
    assert "read input registers (FC 4) at address 20" in str(err.value)
    assert "exception 2 (illegal data address)" in str(err.value)


async def test_alarm_is_sticky_until_acknowledged() -> None:
    async with generic_driver() as (driver, pump):
        pump.alarm, pump.state = 2, 4  # a stall, as the pump reports it
        status = await driver.status()
        assert status.state is PumpState.ALARM and status.alarm is not None
        assert status.alarm.kind.value == "stall" and status.alarm.code == "2"
        with pytest.raises(PumpAlarmError, match="acknowledge it before run"):
            await driver.run()
        await driver.acknowledge_alarm()
        assert pump.alarm == 0 and (await driver.status()).alarm is None
        await driver.run()
        assert pump.state == 1


async def test_power_reset_at_open_is_taken_over_and_acknowledged() -> None:
    async with serve_generic() as served:
        served.pump.alarm = 1
        async with open_driver(served.url()) as driver:
            assert driver.alarm_at_open is not None
            assert driver.alarm_at_open.kind.value == "power_reset"
            assert served.pump.alarm == 0 and (await driver.status()).alarm is None


async def test_capabilities_of_the_generic_map() -> None:
    async with generic_driver() as (driver, _):
        caps = driver.capabilities
        assert caps.volume_cap is not None and caps.watchdog is not None
        assert (caps.watchdog.min_s, caps.watchdog.max_s) == (1, 65535)
        assert caps.rates.digits is None and caps.rates.units[0][0] == "mL/h"
        assert caps.counters.withdrawn and not caps.pause
        with pytest.raises(PumpNotApplicable, match="has no pause"):
            await driver.pause()
        assert await driver.prepare(RunOutline((52.5, 10.0), 5.0)) == {
            "rate_unit": "mL/h", "map": "generic", "word_order": "big"}


def test_watchdog_is_armed_from_the_url_and_fed() -> None:
    # pymodbus's server and the driver share one virtual-time loop: 100 s pass at once, with
    # each request still crossing a real socket
    async def scenario() -> None:
        async with serve_generic() as served, \
                open_driver(served.url("watchdog=30")) as driver:
            assert isinstance(driver, ModbusPumpDriver)
            assert served.pump.watchdog == 30 and driver.watchdog_s == 30
            await asyncio.sleep(100)  # quiet: the heartbeat reads every 10 s
            assert driver.heartbeats >= 9 and driver.heartbeat_error is None
            await driver.set_watchdog(0)
            assert served.pump.watchdog == 0

    run(scenario(), virtual=True)


# ---- silence, scan, word order ------------------------------------------------------------------


async def test_silence_is_a_timeout_after_the_urls_timeout() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # takes the request, never answers
        await writer.wait_closed()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"modbus+tcp://127.0.0.1:{port}?map=generic&timeout=0.05&retries=0"
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PumpTimeout, match=r"no pump answers at unit 1 \(generic map, "
                                              r"0.05 s per request\)"):
            async with open_driver(url):
                pass
        assert loop.time() - started < 2  # our timeout, not pymodbus's ~12 s default
    finally:
        server.close()


async def test_scan_lists_the_unit_ids_that_answer() -> None:
    async with serve_generic(units=(1, 3)) as served, open_line(served.url()) as line:
        assert isinstance(line, ModbusLine)
        assert await line.scan(range(1, 6), timeout_s=0.1) == [1, 3]
        # several unit ids on one connection, each its own driver
        one, three = line.pump(1), line.pump(3)
        await one.open()
        await three.open()
        assert one is line.pump(1) and one is not three


@pytest.mark.parametrize("order", ["big", "little"])
async def test_word_order_of_the_url_matches_the_pump(order: str) -> None:
    async with generic_driver(order, f"word_order={order}") as (driver, pump):
        pump.infused = 1.5
        assert await driver.set_rate(52.5) == 52.5
        assert pump.rate == 52.5
        assert (await driver.status()).infused_ml == 1.5


async def test_the_wrong_word_order_sends_a_different_number() -> None:
    # the read-back cannot see it (the same words come back), which is why the map says
    # when its word order is uncertain; the pump's own counters show it
    async with generic_driver("little", "word_order=big") as (driver, pump):
        pump.infused = 1.5
        await driver.set_rate(52.5)
        assert pump.rate != 52.5
        assert value_of(pump.writes[-1][1], "big") == 52.5
        assert (await driver.status()).infused_ml != 1.5
