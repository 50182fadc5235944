"""A fleet: N controllers in one process, each on its own simulated pump, polling at 1 Hz in
real time, over ptys or TCP links to simulators in other processes (up to one per core).

For each fleet: the controllers' CPU per pump (this process only, over a steady window that
starts once every controller has polled twice), and how late polls start against their
schedule, p50 and p99, over the polls of that window. Opening the N pumps is concurrent, as a
real fleet's would be, and not part of the figures. One fleet of 500 also streams telemetry
(one MQTT connection and one on-disk spool per pump, a local Mosquitto), the issue's target
case: p99 <= 50 ms. Cost linear in N: CPU per pump at the largest N over CPU per pump at 100
(<= 1.5: no per-pump cost that grows with the fleet).

Sizes and the window are set by BENCH_FLEET (e.g. "pty:10,pty:100,tcp:500,pty+mqtt:500") and
BENCH_FLEET_SECONDS; --quick uses 3 s windows.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.table import Bench, Figure, at_most, row
from pumpctl.clock import LoopClock
from pumpctl.drivers.base import PumpDriver
from pumpctl.plan.compile import compile_plan_file
from pumpctl.run.controller import InfusionController, RunResult, RunSettings
from pumpctl.run.fleet import request_stop_all, run_channels

DEFAULT_FLEETS = "pty:10,pty:100,pty:500,pty:1000,pty+mqtt:500,tcp:100,tcp:500,tcp:1000"
WARM_POLLS = 2  # polls per controller before the window opens (start-up burst excluded)
START_RATE = 50.0  # pumps started per second
PUMPS_PER_SIM = 250  # simulated pumps per simulator process (at most one process per core)


# -- the simulators' process ------------------------------------------------------------------

async def serve(first: int, n: int, directory: Path, link: str) -> None:
    """N simulated pumps (numbered from `first`), each on its own pty link in `directory` or
    its own TCP port; prints one JSON line (the TCP ports) once all are reachable, serves
    until SIGTERM."""
    from pumpctl.drivers.serial_port import raise_open_file_limit
    from simulators.newera import NewEraSimulator, SimPumpConfig
    from simulators.serve import PtyServer, TcpServer

    raise_open_file_limit()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    clock = LoopClock()
    ports = []
    async with contextlib.AsyncExitStack() as stack:
        for i in range(first, first + n):
            sim = await stack.enter_async_context(NewEraSimulator(clock, [SimPumpConfig()]))
            if link == "pty":
                await stack.enter_async_context(PtyServer(sim, directory / f"ne{i}"))
            else:
                server = await stack.enter_async_context(TcpServer(sim, "127.0.0.1", 0))
                ports.append(server.port)
        print(json.dumps({"ports": ports}), flush=True)
        await stop.wait()


# -- the controllers' process (this one) ------------------------------------------------------

def _urls(link: str, directory: Path, ports: list[int], n: int) -> list[str]:
    if link == "pty":
        return [f"newera://{directory}/ne{i}" for i in range(n)]
    return [f"newera+tcp://127.0.0.1:{port}" for port in ports]


async def _fleet(urls: list[str], workdir: Path, seconds: float,
                 mqtt_url: str | None) -> tuple[list[RunResult], list[list[float]], float, float]:
    from pumpctl.drivers.open import open_driver
    from pumpctl.telemetry.runtime import telemetry_for_run

    program = compile_plan_file(Path(__file__).resolve().parent.parent / "configs" / "plans"
                                / "ketamine-0.5mgkg-40min.yaml", weight_kg=70)
    clock = LoopClock()
    gate = asyncio.Semaphore(64)  # opens in flight at once (a pump's open is a few requests)
    async with contextlib.AsyncExitStack() as stack:
        async def open_one(url: str) -> PumpDriver:
            async with gate:
                return await stack.enter_async_context(open_driver(url, clock=clock))

        drivers = await asyncio.gather(*(open_one(u) for u in urls))
        ctls = []
        for i, driver in enumerate(drivers):
            settings = RunSettings(journal_dir=workdir / "runs", channel=f"pump{i:04d}",
                                   poll_s=1.0)
            ctl = InfusionController(driver, program, settings, clock=clock)
            if mqtt_url is not None:
                ctl.add_sink(await stack.enter_async_context(telemetry_for_run(
                    mqtt_url, site="bench", pump_id=ctl.channel,
                    spool_dir=workdir / "spools" / ctl.channel, controller_hooks=ctl,
                    journal_note=ctl.journal_note)))
            ctls.append(ctl)
        # Started over N / START_RATE seconds, as run_channels allows: 500 starts at once
        # are 4,000 setup requests in one burst, and they delayed the early starters' first
        # polls past the no-status limit on this 2-core VM.
        spread = len(ctls) / START_RATE
        runs = asyncio.create_task(run_channels(ctls, start_spread_s=spread))
        # The window opens once every controller has polled WARM_POLLS times (the bench reads
        # the controller's private lateness list: there is no public poll hook), or when that
        # is overdue: a run that faulted meanwhile polls no more, and is counted below.
        overdue = time.perf_counter() + spread + 10 * WARM_POLLS
        while (min(len(c._lateness) for c in ctls) < WARM_POLLS
               and time.perf_counter() < overdue and not runs.done()):
            await asyncio.sleep(0.1)
        marks = [len(c._lateness) for c in ctls]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        windows = [list(c._lateness[m:]) for c, m in zip(ctls, marks, strict=True)]
        request_stop_all(ctls, "benchmark over", "bench")
        results = await runs
    return results, windows, cpu, wall


def run_fleet(link: str, n: int, seconds: float, workdir: Path,
              mqtt_url: str | None = None) -> dict[str, Any]:
    from pumpctl.drivers.serial_port import raise_open_file_limit

    raise_open_file_limit()
    directory = workdir / f"{link}-{n}"
    directory.mkdir(parents=True, exist_ok=True)
    # One simulator process per PUMPS_PER_SIM pumps, up to one per core: a single Python
    # process serving 1,000 simulated pumps was the fleet's bottleneck, not the controllers.
    procs = max(1, min(os.cpu_count() or 1, n // PUMPS_PER_SIM))
    bounds = [n * k // procs for k in range(procs + 1)]
    children = [subprocess.Popen([sys.executable, "-m", "bench.rows_fleet", "--serve",
                                  str(lo), str(hi - lo), str(directory), link],
                                 stdout=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).resolve().parent.parent)
                for lo, hi in itertools.pairwise(bounds)]
    try:
        ports = []
        for child in children:
            assert child.stdout is not None
            ports += json.loads(child.stdout.readline())["ports"]
        t0 = time.perf_counter()
        results, windows, cpu, wall = asyncio.run(
            _fleet(_urls(link, directory, ports, n), directory, seconds, mqtt_url))
        total = time.perf_counter() - t0
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    late = sorted(x for w in windows for x in w)
    clean = sum(r.outcome == "aborted" and r.stop_confirmed for r in results)
    faulted = sum(r.outcome == "faulted" for r in results)
    reasons = collections.Counter(r.reason for r in results if r.outcome == "faulted")
    return {"n": n, "cpu_per_pump_pct": 100 * cpu / wall / n, "polls": len(late),
            "p50_ms": 1e3 * statistics.median(late) if late else float("nan"),
            "p99_ms": 1e3 * late[int(0.99 * (len(late) - 1))] if late else float("nan"),
            "max_ms": 1e3 * late[-1] if late else float("nan"), "clean": clean, "faulted": faulted,
            "why": "; ".join(f"{k} x{v}" for k, v in reasons.most_common(3)),
            "total_s": total}


@row("fleet", about="N pumps at 1 Hz in one process over ptys/TCP: CPU per pump, poll lateness")
def fleet(bench: Bench) -> list[Figure]:
    from tests.telemetry.broker import Mosquitto

    seconds = float(os.environ.get("BENCH_FLEET_SECONDS") or (3 if bench.quick else 10))
    spec = os.environ.get("BENCH_FLEET") or DEFAULT_FLEETS
    fleets = [(kind, int(n)) for kind, n in (item.split(":") for item in spec.split(","))]
    broker = None
    figures: list[Figure] = []
    cpu_by: dict[tuple[str, int], float] = {}
    try:
        for kind, n in fleets:
            link, _, extra = kind.partition("+")
            mqtt_url = None
            if extra == "mqtt":
                if broker is None:
                    broker = Mosquitto(bench.scratch("fleet-broker")).start()
                mqtt_url = broker.url
            m = run_fleet(link, n, seconds, bench.scratch(f"fleet-{kind}-{n}"), mqtt_url)
            cpu_by[(kind, n)] = m["cpu_per_pump_pct"]
            label = f"{n} pumps, {link}" + (", MQTT telemetry" if mqtt_url else "")
            context = (f"{m['polls']:.0f} polls in {seconds:g} s; max {m['max_ms']:.0f} ms; "
                       f"{m['clean']:.0f}/{n} stopped and confirmed; "
                       f"{m['total_s']:.0f} s with opening")
            figures.append(Figure(f"{label}: CPU per pump", m["cpu_per_pump_pct"], "% of a core",
                                  note=context))
            figures.append(Figure(f"{label}: poll lateness p50", m["p50_ms"], "ms"))
            target = at_most(50.0) if (n == 500 and mqtt_url) else None
            figures.append(Figure(f"{label}: poll lateness p99", m["p99_ms"], "ms", target))
            figures.append(Figure(f"{label}: runs that faulted", m["faulted"], "runs",
                                  at_most(0), note=str(m["why"])))
    finally:
        if broker is not None:
            broker.stop()
    for link in ("pty", "tcp"):
        # Below 100 pumps the loop's fixed costs dominate; from there on, cost per pump
        # should not grow with the fleet.
        sizes = sorted(n for k, n in cpu_by if k == link and n >= 100)
        if len(sizes) >= 2:
            small, big = sizes[0], sizes[-1]
            figures.append(Figure(f"CPU per pump, {big} vs {small} pumps, {link}",
                                  cpu_by[(link, big)] / cpu_by[(link, small)], "x",
                                  at_most(1.5), note="cost linear in N: the same CPU per pump "
                                  "at any size"))
    return figures


if __name__ == "__main__":  # the simulators' side of a fleet (run by `run_fleet`)
    parser = argparse.ArgumentParser(description="serve N simulated pumps for the fleet row")
    parser.add_argument("--serve", nargs=4, metavar=("FIRST", "N", "DIR", "LINK"),
                        required=True)
    args = parser.parse_args()
    asyncio.run(serve(int(args.serve[0]), int(args.serve[1]), Path(args.serve[2]),
                      args.serve[3]))
