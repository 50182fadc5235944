"""`pumpctl pump`: drive one pump from the bench, one command per invocation.

    pumpctl pump --port /tmp/ne rate 52.5 mL/h
    pumpctl pump --port /tmp/ne run
    pumpctl pump --port newera+tcp://127.0.0.1:4001 --address 1 --json status

Every setting is read back and printed as the pump reports it. `--json` prints one JSON
object instead. Errors are one line and a non-zero exit (see `pumpctl.errors`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pumpctl.errors import PumpctlError, UsageError
from pumpctl.units import Kind, parse_quantity

if TYPE_CHECKING:  # drivers, pydantic and rich are imported where used, not for `--help`
    from rich.console import Console
    from rich.table import Table

    from pumpctl.drivers.base import PumpOutOfRange, PumpStatus
    from pumpctl.drivers.newera.codec import ValueRefused
    from pumpctl.drivers.newera.driver import NewEraDriver
    from pumpctl.drivers.open import PumpUrl

pump_app = typer.Typer(help="Query and drive one pump (New Era protocol; real or simulated).",
                       no_args_is_help=True)


@cache
def _out() -> Console:
    from rich.console import Console

    return Console(highlight=False)


@dataclass
class _Options:
    target: PumpUrl
    url: str
    as_json: bool


@pump_app.callback()
def _options(
    ctx: typer.Context,
    port: Annotated[str, typer.Option(
        "--port", envvar="PUMPCTL_PORT",
        help="Pump URL (newera:///dev/ttyUSB0?baud=19200, newera+tcp://HOST:PORT) or a plain "
             "serial/pty path.")],
    address: Annotated[int | None, typer.Option(
        "--address", min=0, max=99, help="Pump address on the line (wins over the URL's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Options shared by every pump command."""
    from pumpctl.drivers.open import parse_pump_url

    target = parse_pump_url(port)
    if address is not None:
        target = dataclasses.replace(target, address=address)
    ctx.obj = _Options(target, port, as_json)


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _json_after_command(ctx: typer.Context, as_json: bool) -> None:
    """`pump --port P status --json` means the same as `pump --port P --json status`."""
    if as_json:
        _opts(ctx).as_json = True


def _opts(ctx: typer.Context) -> _Options:
    obj = ctx.obj
    assert isinstance(obj, _Options)
    return obj


def _with_pump(ctx: typer.Context,
               action: Callable[[NewEraDriver], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Open the pump, run `action`, close; prints the result and returns it."""
    import asyncio

    from pumpctl.drivers.open import open_driver

    opts = _opts(ctx)

    async def main() -> dict[str, Any]:
        async with open_driver(opts.target) as driver:
            result = await action(driver)
            if driver.alarm_at_open is not None:
                result.setdefault("alarm_at_open", driver.alarm_at_open.kind.value)
            return result

    result = asyncio.run(main())
    _print(opts, result)
    return result


def _print(opts: _Options, result: dict[str, Any]) -> None:
    if opts.as_json:
        typer.echo(json.dumps(result, sort_keys=True))
        return
    for key, value in result.items():
        _out().print(f"{key}: {value}")


async def _rate_limit_error(d: NewEraDriver, ml_h: float, exc: ValueRefused) -> PumpOutOfRange:
    """The pump's bare `?OOR`, completed with the range it allows for the loaded syringe
    (from the pump profile the simulator and the plan compiler share)."""
    from pumpctl.drivers.base import PumpOutOfRange
    from pumpctl.plan.library import DEFAULT_PUMP_PROFILE, load_pump_profile

    diameter = await d.diameter()
    try:
        low, high = load_pump_profile(DEFAULT_PUMP_PROFILE).rate_limits_ml_h(diameter)
    except PumpctlError:
        return exc
    return PumpOutOfRange(f"rate {ml_h:g} mL/h refused by pump {d.address} (?OOR): with a "
                          f"{diameter:g} mm syringe it allows {low:.4g}-{high:.4g} mL/h "
                          f"({DEFAULT_PUMP_PROFILE} profile)")


def _status_dict(status: PumpStatus) -> dict[str, Any]:
    return {
        "state": status.state.value,
        "rate_ml_h": status.rate_ml_h,
        "infused_ml": status.infused_ml,
        "withdrawn_ml": status.withdrawn_ml,
        "direction": status.direction.value if status.direction else None,
        "alarm": status.alarm.kind.value if status.alarm else None,
    }


@pump_app.command()
def info(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Model, firmware and every setting."""
    _json_after_command(ctx, as_json)
    async def action(d: NewEraDriver) -> dict[str, Any]:
        assert d.identity is not None
        rate, rate_units = await d.rate()
        volume, volume_units = await d.volume_limit()
        return {"model": d.identity.model, "firmware": d.identity.firmware,
                "address": d.address, "diameter_mm": await d.diameter(),
                "rate_ml_h": rate, "rate_units": rate_units.label,
                "volume_limit_ml": volume, "volume_units": volume_units.value,
                "direction": (await d.direction()).value, "safe_mode_s": d.safe_s}
    _with_pump(ctx, action)


@pump_app.command()
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """State, rate, dispensed volumes and alarm."""
    _json_after_command(ctx, as_json)
    async def action(d: NewEraDriver) -> dict[str, Any]:
        return _status_dict(await d.status())
    _with_pump(ctx, action)


@pump_app.command()
def diameter(ctx: typer.Context, mm: Annotated[str | None, typer.Argument(
        help="Inner diameter, e.g. 26.59 (mm) or '26.59 mm'; omit to query.")] = None,
        as_json: JsonFlag = False) -> None:
    """Syringe inner diameter."""
    _json_after_command(ctx, as_json)
    value = None if mm is None else _quantity(mm, Kind.LENGTH, "diameter", default_unit="mm")

    async def action(d: NewEraDriver) -> dict[str, Any]:
        read = await (d.set_diameter(value) if value is not None else d.diameter())
        return {"diameter_mm": read}
    _with_pump(ctx, action)


@pump_app.command()
def rate(ctx: typer.Context, value: Annotated[list[str] | None, typer.Argument(
        help="Rate with unit, e.g. 52.5 mL/h, 875 uL/min; omit to query.")] = None,
        as_json: JsonFlag = False) -> None:
    """Pumping rate (takes effect at once while running)."""
    _json_after_command(ctx, as_json)
    ml_h = None if not value else _quantity(" ".join(value), Kind.RATE, "rate")

    async def action(d: NewEraDriver) -> dict[str, Any]:
        from pumpctl.drivers.newera.codec import ValueRefused

        if ml_h is not None:
            try:
                await d.set_rate(ml_h)
            except ValueRefused as exc:
                raise await _rate_limit_error(d, ml_h, exc) from None
        read, units = await d.rate()
        return {"rate_ml_h": read, "units": units.label}
    _with_pump(ctx, action)


@pump_app.command()
def volume(ctx: typer.Context, value: Annotated[list[str] | None, typer.Argument(
        help="Volume to dispense, mL (or with unit, e.g. 500 uL); 0 = no limit; omit to "
             "query.")] = None,
        as_json: JsonFlag = False) -> None:
    """Volume to dispense before the pump stops by itself."""
    _json_after_command(ctx, as_json)
    ml = None if not value else _quantity(" ".join(value), Kind.VOLUME, "volume",
                                          default_unit="mL")

    async def action(d: NewEraDriver) -> dict[str, Any]:
        if ml is not None:
            await d.set_volume_limit(ml)
        amount, units = await d.volume_limit()
        return {"volume_limit_ml": amount, "units": units.value}
    _with_pump(ctx, action)


@pump_app.command()
def direction(ctx: typer.Context, value: Annotated[str | None, typer.Argument(
        help="infuse or withdraw; omit to query.")] = None,
        as_json: JsonFlag = False) -> None:
    """Pumping direction."""
    _json_after_command(ctx, as_json)
    from pumpctl.drivers.base import Direction

    wanted = None
    if value is not None:
        try:
            wanted = Direction(value.strip().lower())
        except ValueError:
            raise UsageError(f"direction {value!r} must be infuse or withdraw") from None

    async def action(d: NewEraDriver) -> dict[str, Any]:
        read = await (d.set_direction(wanted) if wanted is not None else d.direction())
        return {"direction": read.value}
    _with_pump(ctx, action)


@pump_app.command()
def run(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Start pumping (until the volume to dispense is reached or `stop`).

    With safe mode armed the pump stops itself when this command's process has gone for
    longer than the watchdog time: use `watch --run` to keep it running."""
    _json_after_command(ctx, as_json)
    async def action(d: NewEraDriver) -> dict[str, Any]:
        from pumpctl.drivers.base import PumpAlarmError

        if d.alarm is not None:
            raise PumpAlarmError(d.alarm, f"pump {d.address} is in alarm "
                                 f"({d.alarm.kind.value}: {d.alarm.message}); check it, then "
                                 "'pumpctl pump clear' acknowledges it")
        await d.run()
        return _status_dict(await d.status())
    _with_pump(ctx, action)


@pump_app.command()
def stop(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Stop completely (not a pause)."""
    _json_after_command(ctx, as_json)
    async def action(d: NewEraDriver) -> dict[str, Any]:
        await d.stop()
        return _status_dict(await d.status())
    _with_pump(ctx, action)


@pump_app.command()
def dispensed(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Volumes infused and withdrawn since the counters were last cleared."""
    _json_after_command(ctx, as_json)
    async def action(d: NewEraDriver) -> dict[str, Any]:
        infused, withdrawn = await d.dispensed()
        return {"infused_ml": infused, "withdrawn_ml": withdrawn}
    _with_pump(ctx, action)


@pump_app.command()
def clear(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Clear both dispensed-volume counters (and acknowledge an alarm)."""
    _json_after_command(ctx, as_json)
    async def action(d: NewEraDriver) -> dict[str, Any]:
        if d.alarm is not None:
            await d.acknowledge_alarm()
        await d.clear_counters()
        return {"infused_ml": 0.0, "withdrawn_ml": 0.0}
    _with_pump(ctx, action)


@pump_app.command("safe-mode")
def safe_mode(ctx: typer.Context, seconds: Annotated[int | None, typer.Argument(
        min=0, max=255, help="Watchdog seconds (0 = basic mode); omit to query.")] = None,
        as_json: JsonFlag = False) -> None:
    """Safe mode: the pump stops itself after SECONDS without a valid packet."""
    _json_after_command(ctx, as_json)
    async def action(d: NewEraDriver) -> dict[str, Any]:
        if seconds is not None:
            await d.set_watchdog(seconds)
        return {"safe_mode_s": d.safe_s if seconds is not None else await d.watchdog()}
    _with_pump(ctx, action)


@pump_app.command()
def watch(ctx: typer.Context,
          interval: Annotated[float, typer.Option("--interval", min=0.1, max=60,
                                                  help="Seconds between polls.")] = 1.0,
          start: Annotated[bool, typer.Option("--run", help="Start the pump first; Ctrl-C then "
                                              "stops it.")] = False,
          as_json: JsonFlag = False) -> None:
    """Live status until Ctrl-C. Stops the pump on exit if `--run` started it."""
    import asyncio

    from rich.live import Live

    from pumpctl.drivers.open import open_driver

    _json_after_command(ctx, as_json)
    opts = _opts(ctx)

    async def main() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        async with open_driver(opts.target) as d:
            started = False
            try:
                if start:
                    await d.run()
                    started = True
                with Live(_watch_table(None), console=_out(), auto_refresh=False,
                          transient=opts.as_json) as live:
                    while not done.is_set():
                        status = await d.status()
                        if opts.as_json:
                            typer.echo(json.dumps(_status_dict(status), sort_keys=True))
                        else:
                            live.update(_watch_table(status), refresh=True)
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(interval):
                                await done.wait()
            finally:
                if started:
                    await d.stop()
                    _out().print("pump stopped")

    asyncio.run(main())


def _watch_table(status: PumpStatus | None) -> Table:
    from rich.table import Table

    table = Table(title="pump", show_header=False)
    if status is None:
        table.add_row("state", "connecting")
        return table
    for key, value in _status_dict(status).items():
        table.add_row(key, "-" if value is None else str(value))
    return table


@pump_app.command()
def scan(ctx: typer.Context,
         first: Annotated[int, typer.Option("--first", min=0, max=99)] = 0,
         last: Annotated[int, typer.Option("--last", min=0, max=99)] = 99,
         timeout: Annotated[float, typer.Option("--timeout", min=0.02, max=5,
                                                help="Seconds to wait per address.")] = 0.1,
         as_json: JsonFlag = False,
         ) -> None:
    """Find the addresses that answer on this line."""
    import asyncio

    from pumpctl.drivers.open import open_bus

    _json_after_command(ctx, as_json)
    opts = _opts(ctx)
    if last < first:
        raise UsageError(f"--last {last} is below --first {first}")

    async def main() -> dict[str, Any]:
        async with open_bus(opts.target) as bus:
            found = await bus.scan(range(first, last + 1), timeout_s=timeout)
            pumps = []
            for address in found:
                driver = bus.pump(address)
                await driver.open()
                assert driver.identity is not None
                pumps.append({"address": address, "model": driver.identity.model,
                              "firmware": driver.identity.firmware, "safe_mode_s": driver.safe_s})
            return {"pumps": pumps}

    result = asyncio.run(main())
    if opts.as_json:
        typer.echo(json.dumps(result, sort_keys=True))
    elif not result["pumps"]:
        _out().print(f"no pump answered at addresses {first}-{last}")
    else:
        for pump in result["pumps"]:
            _out().print(f"address {pump['address']}: {pump['model']} firmware {pump['firmware']}"
                       f" safe-mode {pump['safe_mode_s']} s")


def _quantity(text: str, kind: Kind, field: str, *, default_unit: str | None = None) -> float:
    """A CLI quantity through pint (`pumpctl.units`); a bare number takes `default_unit`."""
    stripped = text.strip()
    if default_unit is not None:
        try:
            float(stripped)
        except ValueError:
            pass
        else:
            stripped = f"{stripped} {default_unit}"
    value = parse_quantity(stripped, kind, field).f
    if value < 0:
        raise UsageError(f"{field} {text!r} must not be negative")
    return value


def register(app: typer.Typer) -> None:
    """Add `pumpctl pump ...` to the root app."""
    app.add_typer(pump_app, name="pump")
