"""`pumpctl sim modbus`: simulated Modbus pumps serving a register map, on TCP or a pty.

    pumpctl sim modbus --map isco-d --tcp 127.0.0.1:5020
    pumpctl sim modbus --map vindum-vp --link /tmp/vindum          (RTU on a pty)
    pumpctl sim modbus --map vindum-vp --tcp 127.0.0.1:4001 --framer rtu   (a device server)

Like `pumpctl sim newera` it prints exactly one "ready ..." line once the pumps can be
reached, serves until a signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT), removes its link, and
refuses a link or port another live process holds (exit 2, naming it). A pty carries RTU
frames; TCP carries the map's framing unless `--framer` says otherwise (MBAP, or RTU frames
as a serial device server passes them). Addresses are whatever the user gives: the examples
and the tests use loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pumpctl.commands.sim import _parse_speed, _parse_tcp, serve_until_stopped, sim_app
from pumpctl.errors import UsageError

if TYPE_CHECKING:  # the simulator and its event loop load when it serves, not for `--help`
    from pumpctl.drivers.modbus.pumpmap import PumpMap
    from simulators.modbus.faults import AnyFault
    from simulators.modbus.simulator import Framer, UnitConfig

FRAMERS = ("socket", "rtu")
WORD_ORDERS = ("big", "little")
MAX_UNIT = 247
BAUD_RANGE = (300, 1_000_000)


def register(app: typer.Typer) -> None:
    """The command lives on `sim_app` (added to the root app by `pumpctl.commands.sim`)."""
    sim_app.command("modbus")(modbus)


def modbus(
    map_name: Annotated[str, typer.Option(
        "--map", metavar="NAME|PATH",
        help="Register map: a name in configs/modbus (generic, isco-d, vindum-vp) or a "
             "YAML file.")],
    tcp: Annotated[str | None, typer.Option(
        "--tcp", metavar="HOST:PORT", help="Serve on TCP; port 0 = any free one.")] = None,
    link: Annotated[Path | None, typer.Option(
        "--link", help="Serve RTU on a pty with a symlink PATH to it (e.g. /tmp/vindum).")] = None,
    framer: Annotated[str | None, typer.Option(
        "--framer", metavar="socket|rtu",
        help="Framing on TCP: socket (MBAP, Modbus TCP) or rtu (RTU frames, as through a "
             "serial device server). Default: the map's line.")] = None,
    unit: Annotated[int | None, typer.Option(
        "--unit", metavar="N", help="Unit id of the first pump (default: the map's).")] = None,
    pumps: Annotated[int, typer.Option(
        "--pumps", metavar="N", help="Pumps on the line, at unit ids N, N+1, ...")] = 1,
    word_order: Annotated[str | None, typer.Option(
        "--word-order", metavar="big|little",
        help="Word order of 32-bit values (default: the map's).")] = None,
    baud: Annotated[int | None, typer.Option(
        "--baud", metavar="N",
        help="RTU line rate replies are paced at (default: the map's); 0 = no pacing. "
             "MBAP is never paced.")] = None,
    diameter: Annotated[float, typer.Option(
        "--diameter", help="Syringe (cylinder) inner diameter in mm.")] = 26.59,
    syringe_ml: Annotated[float, typer.Option(
        "--syringe-ml", help="Volume in each syringe at start (mL).")] = 60.0,
    fault: Annotated[list[str] | None, typer.Option(
        "--fault", metavar="KIND@TIME",
        help="Schedule a fault: those of `sim newera` (occlusion@10m, power-reset@90s, ...) "
             "and Modbus ones (exception@1m:code=4, busy@1m:for=30s, silence@1m, "
             "split-replies@0s:count=-1, glue-replies@0s); pump=N names a unit id.")] = None,
    speed: Annotated[str, typer.Option(
        "--speed", metavar="N", help="Run the clock N times faster than real time.")] = "1",
) -> None:
    """Serve simulated Modbus pumps until Ctrl-C, SIGTERM, SIGHUP or SIGQUIT."""
    from pumpctl.drivers.modbus.pumpmap import WordOrder, load_map
    from pumpctl.timescale import run_at_speed
    from simulators.modbus.faults import parse_modbus_faults
    from simulators.modbus.simulator import UnitConfig
    from simulators.pump import PumpSetup

    factor = _parse_speed(speed)
    if link is None and tcp is None:
        raise UsageError("give --tcp HOST:PORT or --link PATH (or both)")
    if framer is not None and framer not in FRAMERS:
        raise UsageError(f"--framer {framer!r} is not one of: {', '.join(FRAMERS)}")
    if word_order is not None and word_order not in WORD_ORDERS:
        raise UsageError(f"--word-order {word_order!r} is not one of: {', '.join(WORD_ORDERS)}")
    if link is not None and framer == "socket":
        raise UsageError("--framer socket with --link: a pty carries RTU frames; serve MBAP "
                         "with --tcp alone")
    pump_map = load_map(map_name, word_order=WordOrder(word_order) if word_order else None)
    first = pump_map.line.unit if unit is None else unit
    if not 1 <= first <= MAX_UNIT:
        raise UsageError(f"--unit {first} is outside 1-{MAX_UNIT}")
    if not 1 <= pumps <= MAX_UNIT - first + 1:
        raise UsageError(f"--pumps {pumps}: unit ids from {first} must stay within "
                         f"1-{MAX_UNIT} (at most {MAX_UNIT - first + 1} pumps)")
    chosen: Framer = "rtu" if link is not None else (
        "rtu" if framer == "rtu" else "socket" if framer == "socket" else pump_map.line.framer)
    line_baud = pump_map.line.baud if baud is None else baud
    if line_baud and not BAUD_RANGE[0] <= line_baud <= BAUD_RANGE[1]:
        raise UsageError(f"--baud {line_baud} is outside {BAUD_RANGE[0]}-{BAUD_RANGE[1]} "
                         "(or 0: no pacing)")
    if not 0.1 <= diameter <= 80.0:
        raise UsageError(f"--diameter {diameter} mm is outside 0.1-80 mm")
    if not 0 <= syringe_ml <= 1000:
        raise UsageError(f"--syringe-ml {syringe_ml} is outside 0-1000 mL")
    ids = list(range(first, first + pumps))
    faults = parse_modbus_faults(fault or [], units=ids)
    endpoint = _parse_tcp(tcp) if tcp else None
    configs = [UnitConfig(i, PumpSetup(diameter_mm=diameter, syringe_volume_ml=syringe_ml,
                                       capacity_ml=max(60.0, syringe_ml))) for i in ids]
    paced = line_baud if chosen == "rtu" and line_baud else None
    run_at_speed(_serve(pump_map, configs, chosen, link, endpoint, paced, faults, factor), factor)


async def _serve(pump_map: PumpMap, configs: list[UnitConfig], framer: Framer,
                 link: Path | None, endpoint: tuple[str, int] | None, baud: int | None,
                 faults: list[AnyFault], speed: float) -> None:
    from pumpctl.clock import LoopClock
    from simulators.modbus.simulator import ModbusSimulator

    sim = ModbusSimulator(LoopClock(), pump_map, configs, framer=framer, baud=baud)
    units = ",".join(str(u) for u in sim.units)
    await serve_until_stopped(
        sim, faults, link, endpoint, speed,
        lambda where: f"ready modbus map={pump_map.name} framer={framer} {where} "
                      f"units={units} word_order={sim.map.word_order.value} "
                      f"baud={baud or 'unpaced'} faults={len(faults)} speed={speed:g}")
