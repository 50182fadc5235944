"""Round trip of one New Era request over a pty, against the time the bytes take on a real line.

Method. The simulator runs as its own process (`pumpctl sim newera --link ... --baud B`), as a
pump would be its own device, and this process talks to it through the pty with the project's
driver and serial transport. A pty moves bytes instantly, so on its own it would
say nothing about a serial line; the simulator therefore models the line rate: it handles a
request only when its last byte would have arrived at B baud, and releases each reply when its
last byte would have left. The ideal round trip is then exactly the wire time,
(request bytes + reply bytes) x 10 bits / B (8N1: start, 8 data, stop), and the printed ratio
measured / wire shows what the software adds on both ends (event loops, pty, parsing).
Target: <= 1.2x at 9600 and 19200 baud.

The request is a dispensed-volume read (`0DIS` CR, 5 bytes; reply STX `00SI0.000W0.000ML` ETX,
19 bytes): the query a controller sends most. A third run with pacing off (`--baud 0`) gives
the raw request rate the software sustains.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.served import start_simulator, stop_simulator
from bench.table import Bench, Figure, at_most, row
from pumpctl.drivers.open import open_driver

REQUEST_BYTES = len(b"0DIS\r")
REPLY_BYTES = len(b"\x0200SI0.000W0.000ML\x03")
ROUNDS = {9600: 150, 19200: 250, 0: 2000}


async def measure(link: Path, baud: int, rounds: int) -> list[float]:
    line_baud = baud or 19200  # the client's own setting does not matter on a pty
    async with open_driver(f"newera://{link}?baud={line_baud}") as driver:
        for _ in range(20):  # warm up
            await driver.dispensed()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            await driver.dispensed()
            times.append(time.perf_counter() - start)
    return times


def run_one(baud: int, rounds: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "ne"
        proc, _ = start_simulator("newera", "--link", str(link), "--baud", str(baud))
        try:
            return asyncio.run(measure(link, baud, rounds))
        finally:
            stop_simulator(proc)


@row("roundtrip", about="New Era request over a pty vs wire time, simulator in its own process")
def roundtrip(bench: Bench) -> list[Figure]:
    figures = []
    for baud in (9600, 19200):
        times = run_one(baud, ROUNDS[baud] // (5 if bench.quick else 1))
        wire = (REQUEST_BYTES + REPLY_BYTES) * 10 / baud
        median = statistics.median(times)
        p95 = sorted(times)[int(0.95 * len(times))]
        figures.append(Figure(f"pty round trip / wire time, {baud} baud", median / wire, "x",
                              at_most(1.2), note=f"median {median * 1e3:.2f} ms vs wire "
                              f"{wire * 1e3:.2f} ms, p95 {p95 / wire:.3f}x, {len(times)} requests"))
    times = run_one(0, ROUNDS[0] // (5 if bench.quick else 1))
    figures.append(Figure("pty round trip, no baud pacing", len(times) / sum(times),
                          "requests/s", note=f"median {statistics.median(times) * 1e6:.0f} us"))
    return figures
