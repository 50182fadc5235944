"""`pumpctl sim newera`: serve simulated New Era pumps on a pty link and/or a TCP port.

Prints exactly one line on stdout once the pumps can be reached ("ready ..."), so scripts and
tests wait for it instead of sleeping, then serves until SIGINT or SIGTERM and removes the link.
A link or port another live process holds is refused (exit 2, naming that process).
`--speed N` runs the simulator's clock N times faster than real time (the loop of
`pumpctl.timescale`, as `pumpctl run --speed N` does), so a client at the same N shares its
time scale: a 40-minute plan over a real pty in seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pumpctl.errors import UsageError

if TYPE_CHECKING:  # the simulator and its event loop load when it serves, not for `--help`
    from simulators.faults import Fault
    from simulators.line import SimLine
    from simulators.newera import SimPumpConfig

sim_app = typer.Typer(help="Software pumps that speak the real bytes (for benches and CI).",
                      no_args_is_help=True)


# While no client holds the pty open the server looks for one this often, in real seconds
# (scaled to the simulator's clock, so a fast clock does not make it spin).
PTY_POLL_REAL_S = 0.05


def _parse_speed(text: str) -> float:
    """A factor N > 0 (N x real time). `max` (virtual time) is refused: it only works when
    client and simulator share one process, and this one serves others."""
    from pumpctl.timescale import parse_speed

    try:
        value = parse_speed(text)
    except UsageError:
        raise UsageError(f"--speed {text!r}: expected a factor N > 0 and <= 100000 "
                         "(N x real time), e.g. --speed 60") from None
    if value is None:
        raise UsageError("--speed max: virtual time only works inside one process; the "
                         "simulator serves other processes, so give a factor N (the same N "
                         "as the client's --speed), e.g. --speed 60")
    return value


def _parse_tcp(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--tcp {text!r} must be HOST:PORT, e.g. 127.0.0.1:4001 (port 0-65535)")
    return host, int(port)


@sim_app.command("newera")
def newera(
    link: Annotated[Path | None, typer.Option(
        "--link", help="Create a pty and a symlink PATH to it (e.g. /tmp/ne).")] = None,
    tcp: Annotated[str | None, typer.Option(
        "--tcp", metavar="HOST:PORT", help="Also (or instead) serve on TCP; port 0 = any.")] = None,
    pumps: Annotated[int, typer.Option(
        "--pumps", min=1, max=100, help="Pumps on the line, at addresses 0..N-1.")] = 1,
    baud: Annotated[int, typer.Option(
        "--baud", help="Line rate replies are paced at (300-19200); 0 = no pacing.")] = 19200,
    diameter: Annotated[float, typer.Option(
        "--diameter", help="Syringe inner diameter in mm loaded in every pump.")] = 26.59,
    syringe_ml: Annotated[float, typer.Option(
        "--syringe-ml", help="Volume in each syringe at start (mL).")] = 60.0,
    fault: Annotated[list[str] | None, typer.Option(
        "--fault", metavar="KIND@TIME",
        help="Schedule a fault, e.g. occlusion@10m, power-reset@90s, "
             "delay-replies@30s:delay=2,count=3 (repeatable; pump=N picks a pump).")] = None,
    speed: Annotated[str, typer.Option(
        "--speed", metavar="N",
        help="Run the simulator's clock N times faster than real time (default 1), for a "
             "client at the same N, e.g. pumpctl run --speed N. Fault times, the watchdog and "
             "baud pacing are in simulated time.")] = "1",
) -> None:
    """Serve simulated New Era pumps until Ctrl-C, SIGTERM, SIGHUP or SIGQUIT."""
    from pumpctl.drivers.newera.scheme import BAUD_RATES
    from pumpctl.timescale import run_at_speed
    from simulators.faults import parse_faults
    from simulators.newera import SimPumpConfig

    factor = _parse_speed(speed)
    if link is None and tcp is None:
        raise UsageError("give --link PATH and/or --tcp HOST:PORT")
    if baud and baud not in BAUD_RATES:
        raise UsageError(f"--baud {baud} is not one of {', '.join(map(str, BAUD_RATES))} (or 0)")
    if not 0.1 <= diameter <= 80.0:
        raise UsageError(f"--diameter {diameter} mm is outside 0.1-80 mm")
    if not 0 <= syringe_ml <= 1000:
        raise UsageError(f"--syringe-ml {syringe_ml} is outside 0-1000 mL")
    faults = parse_faults(fault or [], pumps=pumps)
    endpoint = _parse_tcp(tcp) if tcp else None
    configs = [SimPumpConfig(address=i, diameter_mm=diameter, syringe_volume_ml=syringe_ml,
                             capacity_ml=max(60.0, syringe_ml)) for i in range(pumps)]
    run_at_speed(_serve(configs, link, endpoint, baud or None, faults, factor), factor)


async def serve_until_stopped(sim: SimLine, faults: Sequence[object], link: Path | None,
                              endpoint: tuple[str, int] | None, speed: float,
                              ready: Callable[[str], str]) -> None:
    """Serve a started-here simulator on a pty `link` and/or TCP `endpoint`: inject `faults`,
    print one ready line (`ready(where)`, `where` the link/pty/tcp words), serve until one of
    `STOP_SIGNALS` arrives, then print `stopped` on stderr once the servers are closed and
    the link removed."""
    import asyncio
    import contextlib

    from pumpctl.commands import STOP_SIGNALS
    from simulators.serve import PtyServer, TcpServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    async with sim, contextlib.AsyncExitStack() as stack:
        for item in faults:
            sim.inject(item)  # type: ignore[arg-type]  # each engine takes its own faults
        where = []
        if link is not None:
            pty = await stack.enter_async_context(
                PtyServer(sim, link, poll_s=PTY_POLL_REAL_S * speed))
            where += [f"link={link}", f"pty={pty.pty_name}"]
        if endpoint is not None:
            server = await stack.enter_async_context(TcpServer(sim, *endpoint))
            where.append(f"tcp={endpoint[0]}:{server.port}")
        print(ready(" ".join(where)), flush=True)
        await stop.wait()
    print("stopped", file=sys.stderr, flush=True)


async def _serve(configs: list[SimPumpConfig], link: Path | None,
                 endpoint: tuple[str, int] | None, baud: int | None,
                 faults: list[Fault], speed: float = 1.0) -> None:
    from pumpctl.clock import LoopClock
    from simulators.newera import NewEraSimulator

    sim = NewEraSimulator(LoopClock(), configs, baud=baud)
    addresses = ",".join(str(u.address) for u in sim.units)
    await serve_until_stopped(
        sim, faults, link, endpoint, speed,
        lambda where: f"ready newera {where} addresses={addresses} "
                      f"baud={baud or 'unpaced'} faults={len(faults)} speed={speed:g}")


def register(app: typer.Typer) -> None:
    """Add `pumpctl sim ...` to the root app."""
    app.add_typer(sim_app, name="sim")
