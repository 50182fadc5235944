"""The Modbus simulator and driver: TCP round trip and rate, RTU over a pty against the wire
time, and the standard plan in virtual time on each shipped map (`make bench ROWS=modbus`).

Method. The simulator runs as its own process (`pumpctl sim modbus`), as a pump is its own
device, and this process talks to it with the project's Modbus link (pymodbus framers and
PDUs on asyncio), one request at a time, each answered before the next is sent:
1. Modbus TCP (MBAP) on loopback, the generic map: a read of its 12 input registers (state,
   alarm, rates, counters, model): the median round trip, and the requests per second that
   one client keeps up in sequence. Nothing paces TCP, so both are the software's own cost
   on both ends (the event loops, framing, the map).
2. RTU on a pty at 19200 and 38400 baud (the generic map's and Vindum's line rates): the
   simulator handles a request when its last byte would have arrived at the baud and releases
   its reply when the reply's last byte would have left (10 bits a byte, 8N1), so the ideal
   round trip is the wire time, (8 request + 29 reply bytes) x 10 / baud; the ratio says what
   the software adds on top. Target <= 1.2x at 19200, as for New Era. The software's share is
   a fixed ~2.5 ms (two event loops and the pty), which is more than a fifth of the 9.6 ms
   wire time at 38400: there the ratio is context and the added milliseconds are judged
   (<= 3 ms at either baud).
3. The standard plan (ketamine 0.5 mg/kg over 40 min, 70 kg, poll 1 s, a sensor fitted)
   through the Modbus driver against the in-process simulator of each map, in virtual time:
   simulated seconds per wall second, the fastest of a few runs (the median in the note).
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from pathlib import Path

from bench.served import start_simulator, stop_simulator
from bench.table import STANDARD_PLAN, Bench, Figure, at_least, at_most, row
from pumpctl.clock import LoopClock
from pumpctl.clock import run as run_clock
from pumpctl.drivers.modbus.line import ModbusLine
from pumpctl.drivers.modbus.pumpmap import RegisterKind
from pumpctl.drivers.open import open_line
from pumpctl.drivers.sensors import ModelBalance
from pumpctl.plan.compile import compile_plan_file
from pumpctl.run.controller import InfusionController, RunSettings

REQUEST_BYTES = 8  # unit, FC 4, address, count, CRC
REPLY_BYTES = 5 + 2 * 12  # unit, FC, byte count, 12 registers, CRC
ROUNDS = {"tcp": 2000, 19200: 200, 38400: 300}
MAPS = ("generic", "isco-d", "vindum-vp")


async def measure(url: str, rounds: int) -> list[float]:
    async with open_line(url) as line:
        assert isinstance(line, ModbusLine)
        link = line.link
        for _ in range(20):  # warm up
            await link.read(1, RegisterKind.INPUT, 0, 12)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            await link.read(1, RegisterKind.INPUT, 0, 12)
            times.append(time.perf_counter() - start)
    return times


def tcp_times(rounds: int) -> list[float]:
    proc, ready = start_simulator("modbus", "--map", "generic", "--tcp", "127.0.0.1:0")
    try:
        port = re.search(r"tcp=127\.0\.0\.1:(\d+)", ready)
        assert port is not None, ready
        return asyncio.run(measure(f"modbus+tcp://127.0.0.1:{port[1]}?map=generic", rounds))
    finally:
        stop_simulator(proc)


def rtu_times(workdir: Path, baud: int, rounds: int) -> list[float]:
    link = workdir / f"modbus-{baud}"
    proc, _ = start_simulator("modbus", "--map", "generic", "--link", str(link),
                              "--baud", str(baud))
    try:
        return asyncio.run(measure(f"modbus+rtu://{link}?map=generic&baud={baud}", rounds))
    finally:
        stop_simulator(proc)


async def embedded_run(map_name: str, journal: Path) -> float:
    """Simulated seconds of the standard plan on `map_name`'s simulator, in virtual time."""
    from simulators.modbus.embedded import embedded_modbus

    program = compile_plan_file(STANDARD_PLAN, weight_kg=70)
    clock = LoopClock()
    async with embedded_modbus(clock, map_name) as (sim, driver):
        ctl = InfusionController(driver, program, RunSettings(journal_dir=journal, poll_s=1.0),
                                 clock=clock,
                                 volume_sensor=ModelBalance(sim.pump(sim.first_unit).model))
        result = await ctl.run()
    assert result.outcome == "completed", result.reason
    return result.duration_s


@row("modbus", about="Modbus: TCP round trip and rate, RTU over a pty vs wire time, the "
                     "standard plan in virtual time per map")
def modbus(bench: Bench) -> list[Figure]:
    scale = 5 if bench.quick else 1
    figures = []
    times = tcp_times(ROUNDS["tcp"] // scale)
    median = statistics.median(times)
    figures.append(Figure("Modbus TCP request round trip (loopback, generic map)",
                          median * 1e3, "ms", at_most(2.0),
                          note=f"p95 {sorted(times)[int(0.95 * len(times))] * 1e3:.2f} ms, "
                               f"{len(times)} reads of 12 input registers"))
    figures.append(Figure("Modbus TCP requests/s, one client in sequence",
                          len(times) / sum(times), "requests/s", at_least(500)))
    for baud in (19200, 38400):
        times = rtu_times(bench.scratch("modbus-rtu"), baud, ROUNDS[baud] // scale)
        wire = (REQUEST_BYTES + REPLY_BYTES) * 10 / baud
        median = statistics.median(times)
        p95 = sorted(times)[int(0.95 * len(times))]
        figures.append(Figure(f"Modbus RTU pty round trip / wire time, {baud} baud",
                              median / wire, "x", at_most(1.2) if baud <= 19200 else None,
                              note=f"median {median * 1e3:.2f} ms vs wire {wire * 1e3:.2f} ms, "
                                   f"p95 {p95 / wire:.3f}x, {len(times)} requests"))
        figures.append(Figure(f"Modbus RTU pty round trip minus wire time, {baud} baud",
                              (median - wire) * 1e3, "ms", at_most(3.0),
                              note="what both ends' software adds, whatever the baud"))
    for name in MAPS:
        work = bench.scratch(f"modbus-speed-{name}")
        run_clock(embedded_run(name, work / "warm-up"), virtual=True)
        ratios = []
        for i in range(2 if bench.quick else 5):
            t0 = time.perf_counter()
            simulated = run_clock(embedded_run(name, work / str(i)), virtual=True)
            ratios.append(simulated / (time.perf_counter() - t0))
        figures.append(Figure(f"standard plan in virtual time on Modbus ({name})", max(ratios),
                              "x real time", at_least(1_000),
                              note=f"fastest of {len(ratios)}; median "
                                   f"{statistics.median(ratios):,.0f}x"))
    return figures
