"""`pumpctl sim balance`: a simulated MT-SICS balance on a pty link and/or a TCP port.

Standalone, it weighs a beaker filled by a simulated syringe pump running at `--flow` (none
by default: a still beaker). Like `pumpctl sim newera` it prints exactly one "ready ..." line
once it can be reached, serves until SIGINT or SIGTERM, and removes its link.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from pumpctl.commands.sim import _parse_speed, _parse_tcp, sim_app
from pumpctl.errors import UsageError
from pumpctl.units import Kind, parse_quantity

if TYPE_CHECKING:  # the simulator and its event loop load when it serves, not for `--help`
    from simulators.balance import SimBalanceConfig


def register(app: typer.Typer) -> None:
    """The command lives on `sim_app` (added to the root app by `pumpctl.commands.sim`)."""
    sim_app.command("balance")(balance)


def _grams(text: str, option: str, *, low: float, high: float) -> float:
    grams = parse_quantity(text, Kind.DOSE, option).f / 1000.0  # mass; mg is its canonical unit
    if not low <= grams <= high:
        raise UsageError(f"{option} {text!r}: must be {low:g}-{high:g} g")
    return grams


def balance(
    link: Annotated[Path | None, typer.Option(
        "--link", help="Create a pty and a symlink PATH to it (e.g. /tmp/balance).")] = None,
    tcp: Annotated[str | None, typer.Option(
        "--tcp", metavar="HOST:PORT", help="Also (or instead) serve on TCP; port 0 = any.")] = None,
    flow: Annotated[str, typer.Option(
        "--flow", help="A simulated pump fills the beaker at this rate, e.g. 5 mL/h.")] = "0 mL/h",
    density: Annotated[str, typer.Option("--density", help="Liquid density.")] = "0.998 g/mL",
    resolution: Annotated[str, typer.Option(
        "--resolution", help="Readability, e.g. '0.1 mg'.")] = "0.1 mg",
    noise: Annotated[str, typer.Option(
        "--noise", help="Standard deviation of a reading.")] = "0 mg",
    evaporation: Annotated[str, typer.Option(
        "--evaporation", help="Loss from the beaker, e.g. '0.05 mg/min'.")] = "0 mg/min",
    container: Annotated[str, typer.Option(
        "--container", help="Beaker on the pan at power-on, e.g. '50 g'.")] = "0 g",
    speed: Annotated[str, typer.Option(
        "--speed", metavar="N", help="Clock N times faster than real time.")] = "1",
) -> None:
    """Serve a simulated MT-SICS balance until Ctrl-C, SIGTERM, SIGHUP or SIGQUIT."""
    from pumpctl.timescale import run_at_speed
    from simulators.balance import SimBalanceConfig

    factor = _parse_speed(speed)
    if link is None and tcp is None:
        raise UsageError("give --link PATH and/or --tcp HOST:PORT")
    rate = parse_quantity(flow, Kind.RATE, "--flow").f
    if not 0 <= rate <= 10000:
        raise UsageError(f"--flow {flow!r}: must be 0-10000 mL/h")
    density_g_ml = parse_quantity(density, Kind.DENSITY, "--density").f
    if not 0.5 <= density_g_ml <= 3.0:
        raise UsageError(f"--density {density!r}: must be 0.5-3 g/mL")
    evaporation_g_min = parse_quantity(evaporation, Kind.MASS_RATE, "--evaporation").f / 1000
    if not 0 <= evaporation_g_min <= 1:
        raise UsageError(f"--evaporation {evaporation!r}: must be 0-1000 mg/min")
    config = SimBalanceConfig(
        density_g_ml=density_g_ml,
        resolution_g=_grams(resolution, "--resolution", low=1e-7, high=1.0),
        noise_g=_grams(noise, "--noise", low=0.0, high=1.0),
        evaporation_g_min=evaporation_g_min,
        container_g=_grams(container, "--container", low=0.0, high=220.0))
    endpoint = _parse_tcp(tcp) if tcp else None
    run_at_speed(_serve(config, rate, link, endpoint, factor, flow), factor)


async def _serve(config: SimBalanceConfig, rate_ml_h: float, link: Path | None,
                 endpoint: tuple[str, int] | None, speed: float, flow_text: str) -> None:
    from pumpctl.clock import LoopClock
    from pumpctl.commands.sim import serve_until_stopped
    from simulators.balance import BalanceSimulator
    from simulators.physics import SyringePumpModel

    clock = LoopClock()
    pump = SyringePumpModel(clock)
    if rate_ml_h > 0:
        pump.set_rate(rate_ml_h)
        pump.start()
    sim = BalanceSimulator(clock, lambda: pump.delivered_ml, config)
    engine = cast(Any, sim)  # the servers are typed for the pump simulator; same interface
    await serve_until_stopped(
        engine, [], link, endpoint, speed,
        lambda where: f"ready balance {where} flow={flow_text!r} speed={speed:g}")
