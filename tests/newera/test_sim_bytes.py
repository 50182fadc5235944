"""The simulator at byte level: exactly the bytes the facts file says a New Era pump sends."""

from __future__ import annotations

import asyncio
import binascii

from simulators.newera import SimPumpConfig
from simulators.newera import unit as newera_unit
from simulators.newera.wire import RequestFramer, read_number, show_number, split_command

from .conftest import raw_line, vrun


def safe(payload: bytes) -> bytes:
    crc = binascii.crc_hqx(payload, 0)
    return bytes([2, len(payload) + 4]) + payload + crc.to_bytes(2, "big") + b"\x03"


def basic(text: str) -> bytes:
    return b"\x02" + text.encode() + b"\x03"


def test_power_up_alarm_is_first_reply_then_acknowledged() -> None:
    async def main() -> None:
        async with raw_line(ack_power_up=False) as (_, c):
            assert await c.ask(b"VER\r") == basic("00A?R")  # answered instead of executed
            assert await c.ask(b"VER\r") == basic("00SNE1000V3.928")
            assert await c.ask(b"\r") == basic("00S")  # no address = address 0
    vrun(main())


def test_replies_and_number_format() -> None:
    async def main() -> None:
        async with raw_line() as (_, c):
            assert await c.ask(b"0DIA\r") == basic("00S26.59")
            assert await c.ask(b"0RAT52.5MH\r") == basic("00S")
            assert await c.ask(b"0RAT\r") == basic("00S52.50MH")
            assert await c.ask(b"0RAT1500UH\r") == basic("00S")
            assert await c.ask(b"0RAT\r") == basic("00S1500.UH")  # always a decimal point
            assert await c.ask(b"0VOL\r") == basic("00S0.000ML")  # > 14 mm: mL
            assert await c.ask(b"0VOL35\r") == basic("00S")
            assert await c.ask(b"0VOL\r") == basic("00S35.00ML")
            assert await c.ask(b"0DIR\r") == basic("00SINF")
            assert await c.ask(b"0DIS\r") == basic("00SI0.000W0.000ML")
            assert await c.ask(b"0SAF\r") == basic("00S0")
    vrun(main())


def test_pump_ignores_spaces_control_chars_and_case() -> None:
    async def main() -> None:
        async with raw_line() as (_, c):
            assert await c.ask(b" 0 r\x01at 10 mh\r") == basic("00S")
            assert await c.ask(b"0rat\r") == basic("00S10.00MH")
    vrun(main())


def test_error_replies() -> None:
    async def main() -> None:
        async with raw_line() as (_, c):
            assert await c.ask(b"0XYZ\r") == basic("00S?")
            assert await c.ask(b"0RAT12345MH\r") == basic("00S?OOR")  # 5 digits
            assert await c.ask(b"0RAT5000MH\r") == basic("00S?OOR")  # above 26.59 mm limit
            assert await c.ask(b"0RAT0.001UH\r") == basic("00S?OOR")  # below it
            assert await c.ask(b"0DIA90\r") == basic("00S?OOR")
            assert await c.ask(b"0DIRUP\r") == basic("00S?OOR")
            assert await c.ask(b"0RAT52.5MH\r") == basic("00S")
            assert await c.ask(b"0RUN\r") == basic("00I")
            assert await c.ask(b"0DIA10\r") == basic("00I?NA")  # not while pumping
            assert await c.ask(b"0RAT10UM\r") == basic("00I?NA")  # units fixed while pumping
            assert await c.ask(b"0RAT60MH\r") == basic("00I")  # value may change at once
            assert await c.ask(b"0STP\r") == basic("00P")  # first STP pauses
            assert await c.ask(b"0STP\r") == basic("00S")  # second stops
    vrun(main())


def test_direction_reverse_and_counter_clearing() -> None:
    async def main() -> None:
        # half full: withdrawing into a full syringe would stall (tested with the physics)
        async with raw_line([SimPumpConfig(syringe_volume_ml=30)]) as (_, c):
            assert await c.ask(b"0DIRREV\r") == basic("00S")
            assert await c.ask(b"0DIR\r") == basic("00SWDR")
            await c.ask(b"0RAT60MH\r")
            assert await c.ask(b"0RUN\r") == basic("00W")
            await asyncio.sleep(60)
            assert await c.ask(b"0CLDWDR\r") == basic("00W?NA")  # not while pumping
            await c.ask(b"0STP\r")
            await c.ask(b"0STP\r")
            assert await c.ask(b"0DIS\r") == basic("00SI0.000W1.000ML")
            assert await c.ask(b"0CLDINF\r") == basic("00S")
            assert await c.ask(b"0DIS\r") == basic("00SI0.000W1.000ML")
            assert await c.ask(b"0CLDWDR\r") == basic("00S")
            assert await c.ask(b"0DIS\r") == basic("00SI0.000W0.000ML")
            assert await c.ask(b"0CLD\r") == basic("00S?OOR")
    vrun(main())


def test_rate_changed_while_running_is_not_stored() -> None:
    async def main() -> None:
        async with raw_line() as (sim, c):
            await c.ask(b"0RAT10MH\r")
            await c.ask(b"0RUN\r")
            await c.ask(b"0RAT20MH\r")
            assert await c.ask(b"0RAT\r") == basic("00I20.00MH")
            sim.pump(0).power_cut()
            assert await c.ask(b"0\r") == basic("00A?R")
            assert await c.ask(b"0RAT\r") == basic("00S10.00MH")
    vrun(main())


def test_volume_target_stops_the_pump_by_itself() -> None:
    async def main() -> None:
        async with raw_line() as (_, c):
            await c.ask(b"0RAT60MH\r")
            await c.ask(b"0VOL1\r")
            assert await c.ask(b"0RUN\r") == basic("00I")
            await asyncio.sleep(59)
            assert await c.ask(b"0\r") == basic("00I")
            await asyncio.sleep(2)
            assert await c.ask(b"0DIS\r") == basic("00SI1.000W0.000ML")
    vrun(main())


def test_address_filtering_and_two_pumps() -> None:
    async def main() -> None:
        async with raw_line(2) as (_, c):
            assert await c.ask(b"1VER\r") == basic("01SNE1000V3.928")
            assert await c.ask(b"7VER\r", timeout=0.5) is None  # nobody there: silence
            assert await c.ask(b"1RAT5MH\r") == basic("01S")
            assert await c.ask(b"0RAT\r") == basic("00S0.000MH")
    vrun(main())


def test_set_address_system_command() -> None:
    async def main() -> None:
        async with raw_line() as (sim, c):
            assert await c.ask(b"*ADR12\r") == basic("12S")
            assert sim.unit(12).address == 12
            assert await c.ask(b"0\r", timeout=0.5) is None
    vrun(main())


def test_safe_mode_framing_rules() -> None:
    async def main() -> None:
        async with raw_line() as (_, c):
            # a pump in basic mode takes a safe packet; SAF0 is answered in basic framing
            assert await c.ask(safe(b"0SAF0")) == basic("00S")
            # SAF n > 0: answered safe-framed, and from then on plain commands are ignored
            assert await c.ask(safe(b"0SAF5")) == safe(b"00S")
            assert await c.ask(b"0VER\r", timeout=0.5) is None
            assert await c.ask(safe(b"0DIA")) == safe(b"00S26.59")
            # bad CRC: ?COM, safe-framed
            bad = bytearray(safe(b"0DIA"))
            bad[-2] ^= 0xFF
            assert await c.ask(bytes(bad)) == safe(b"00S?COM")
            assert await c.ask(safe(b"0SAF0")) == basic("00S")
    vrun(main())


def test_safe_packet_split_by_half_second_gap_is_discarded() -> None:
    async def main() -> None:
        async with raw_line() as (_, c):
            packet = safe(b"0VER")
            await c.send(packet[:3])
            await asyncio.sleep(0.6)
            assert await c.ask(packet[3:], timeout=0.5) is None
            await c.send(packet[:3])
            await asyncio.sleep(0.3)  # shorter gaps are fine
            assert await c.ask(packet[3:]) == basic("00SNE1000V3.928")
    vrun(main())


def test_watchdog_fires_and_auto_alarm_is_sent_in_safe_mode() -> None:
    async def main() -> None:
        async with raw_line() as (sim, c):
            await c.ask(safe(b"0RAT52.5MH"))
            assert await c.ask(safe(b"0SAF2")) == safe(b"00S")
            assert await c.ask(safe(b"0RUN")) == safe(b"00I")
            await asyncio.sleep(1.5)
            assert await c.ask(safe(b"0")) == safe(b"00I")  # fed in time: still running
            # silence for 2 s: the pump stops itself and says so unasked
            assert await c.frame(timeout=5) == safe(b"00A?T")
            assert not sim.pump(0).model.running
            # the auto packet does not acknowledge: the next command is answered with it
            assert await c.ask(safe(b"0RUN")) == safe(b"00A?T")
            assert await c.ask(safe(b"0")) == safe(b"00S")
    vrun(main())


def test_watchdog_timer_starts_at_first_packet_after_power_up() -> None:
    async def main() -> None:
        async with raw_line([SimPumpConfig(safe_s=1)], ack_power_up=False) as (sim, c):
            await asyncio.sleep(10)  # nobody talks: no watchdog yet
            assert [a for _, a in sim.pump(0).alarm_log] == ["power_reset"]
            assert await c.ask(safe(b"0")) == safe(b"00A?R")
            assert await c.frame(timeout=3) == safe(b"00A?T")
    vrun(main())


def test_stall_auto_alarm_in_safe_mode() -> None:
    async def main() -> None:
        async with raw_line() as (sim, c):
            await c.ask(safe(b"0SAF60"))
            await c.ask(safe(b"0RAT500MH"))
            await c.ask(safe(b"0RUN"))
            sim.pump(0).model.empty_syringe()
            sim.pump(0).service(sim.clock.monotonic())
            assert await c.frame(timeout=2) == safe(b"00A?S")
    vrun(main())


def test_pump_side_framer_and_numbers() -> None:
    framer = RequestFramer()
    packets = framer.feed(b"0ra" + safe(b"1DIS") + b"t1\r", now=0.0)
    # an STX drops the unfinished basic line; the safe packet is taken whole
    assert [(p.text, p.safe, p.valid) for p in packets] == [
        ("1DIS", True, True), ("T1", False, True)]
    assert split_command("01RAT52.5MH") is not None
    cmd = split_command("01RAT52.5MH")
    assert cmd is not None and (cmd.address, cmd.name, cmd.data) == (1, "RAT", "52.5MH")
    assert read_number("0.125") == 0.125 and read_number("12345") is None
    assert read_number("1.2345") is None and read_number(".") is None
    assert [show_number(v) for v in (0, 0.125, 52.5, 900, 1500, 9999.6)] == [
        "0.000", "0.125", "52.50", "900.0", "1500.", "9999."]


def test_every_number_a_pump_accepts_is_shown_back_as_entered_in_every_unit() -> None:
    """The pump keeps rates in mL/h and volumes in mL (the protocol-free pump's units); the
    New Era face converts back for display. Every 4-digit number in every unit must come back
    exactly as it was entered, or a driver's read-back would see a mismatch."""
    texts = {f"{whole}.{frac:0{places}d}" if places else str(whole)
             for whole in range(10000) for places in range(4 - len(str(whole)) + 1)
             if places <= 3 for frac in range(10**places)}
    values = {read_number(text) for text in texts}
    factors = set(newera_unit.RATE_UNITS_ML_H.values()) | set(newera_unit.VOLUME_UNITS_ML.values())
    assert None not in values and len(values) > 20000 and factors == {0.06, 60.0, 0.001, 1.0}
    for value in values:
        assert value is not None
        shown = show_number(value)
        for factor in factors:
            assert show_number(value * factor / factor) == shown, (value, factor)
