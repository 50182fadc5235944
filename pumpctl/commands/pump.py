"""`pumpctl pump`: drive one pump from the bench, one command per invocation.

    pumpctl pump --port /tmp/ne rate 52.5 mL/h
    pumpctl pump --port /tmp/ne run
    pumpctl pump --port newera+tcp://127.0.0.1:4001 --address 1 --json status
    pumpctl pump --port "modbus+tcp://127.0.0.1:5020?map=generic" status

The commands are written against the driver contract, so they work on every pump family;
what a family shows of its settings differs (a Modbus pump's are its map's:
`pumpctl.commands.pump_modbus`).

Every setting is read back and printed as the pump reports it. `--json` prints one JSON
object instead. Errors are one line and a non-zero exit (see `pumpctl.errors`).

A pump that a `pumpctl run` is driving is never opened a second time: `status`, `dispensed`
and `watch` read it through the running controller (`pumpctl.run.endpoint`), and the other
commands refuse with the run's pid and id.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pumpctl.errors import PumpctlError, UsageError

if TYPE_CHECKING:  # ports, the event loop, rich and pydantic load when a command runs
    from rich.console import Console

    from pumpctl.drivers.base import PumpDriver, PumpOutOfRange, PumpStatus
    from pumpctl.drivers.modbus.driver import ModbusPumpDriver
    from pumpctl.drivers.newera.codec import ValueRefused
    from pumpctl.drivers.newera.driver import NewEraDriver
    from pumpctl.drivers.open import PumpTarget
    from pumpctl.run.endpoint import PortOwner
    from pumpctl.units import Kind

pump_app = typer.Typer(help="Query and drive one pump (New Era or Modbus; real or simulated).",
                       no_args_is_help=True)


def _out() -> Console:
    """The console for results (rich loads only when a command prints)."""
    from rich.console import Console


    return Console(highlight=False)


@dataclass
class _Options:
    url: str | None
    address: int | None
    as_json: bool

    @property
    def target(self) -> PumpTarget:
        """The pump to talk to. Checked when a command needs it, not in the group callback,
        so `pumpctl pump SUB --help` works without a port."""
        if self.url is None:
            raise UsageError("--port URL is required (or set PUMPCTL_PORT), e.g. "
                             "--port /tmp/ne or --port newera:///dev/ttyUSB0?baud=19200")
        from pumpctl.drivers.open import parse_pump_url

        target = parse_pump_url(self.url)
        if self.address is not None:
            target = target.with_address(self.address)
        return target


@pump_app.callback()
def _options(
    ctx: typer.Context,
    port: Annotated[str | None, typer.Option(
        "--port", envvar="PUMPCTL_PORT",
        help="Pump URL (newera:///dev/ttyUSB0?baud=19200, newera+tcp://HOST:PORT, "
             "modbus+tcp://HOST:PORT?map=NAME, modbus+rtu:///dev/ttyUSB0?map=NAME) or a plain "
             "serial/pty path (required by every command).")] = None,
    address: Annotated[int | None, typer.Option(
        "--address", min=0, max=247, help="Pump address on the line: New Era 0-99, Modbus "
        "unit id 1-247 (wins over the URL's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Options shared by every pump command."""
    from pumpctl.drivers.open import parse_pump_url

    if port is not None and not ctx.resilient_parsing:
        parse_pump_url(port)  # a bad URL is reported before anything else
    ctx.obj = _Options(port, address, as_json)


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
# `rate -1 mL/h` is a value to refuse with its reason, not an unknown option "-1".
_NUMBERS = {"ignore_unknown_options": True}


def _json_after_command(ctx: typer.Context, as_json: bool) -> None:
    """`pump --port P status --json` means the same as `pump --port P --json status`."""
    if as_json:
        _opts(ctx).as_json = True


def _opts(ctx: typer.Context) -> _Options:
    obj = ctx.obj
    assert isinstance(obj, _Options)
    return obj


def _owner(opts: _Options) -> PortOwner | None:
    from pumpctl.run.endpoint import owner_of

    return owner_of(opts.url) if opts.url is not None else None


def _refuse_if_owned(opts: _Options) -> None:
    """A second opener would talk over the run's requests: refuse, naming the owner."""
    from pumpctl.run.endpoint import PortInUse

    owner = _owner(opts)
    if owner is not None:
        raise PortInUse(
            f"port {opts.url} is in use by {owner.describe()}: 'pumpctl pump --port "
            f"{opts.url} status|dispensed|watch' read the pump through the run; stop the "
            f"run with Ctrl-C in its terminal or 'kill -TERM {owner.pid}'")


def _through_run(opts: _Options, owner: PortOwner,
                 pick: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """What the running controller last read from the pump, without opening the port."""
    import asyncio

    from pumpctl.run.endpoint import snapshot

    snap = asyncio.run(snapshot(owner))
    result = pick(_run_status(snap))
    result["via_run"] = f"{snap.get('run_id')} (pid {snap.get('pid')})"
    _print(opts, result)
    return result


def _run_status(record: dict[str, Any]) -> dict[str, Any]:
    """A run's snapshot or sample record in the shape of `status` (the pump's own counter)."""
    sample = record.get("sample") if record.get("type") == "snapshot" else record
    state = record.get("state") if record.get("type") == "snapshot" else None
    if not isinstance(sample, dict):
        return {"state": state, "rate_ml_h": None, "infused_ml": None, "withdrawn_ml": None,
                "direction": None, "alarm": None}
    moving = sample.get("state") in ("infusing", "withdrawing")
    return {"state": sample.get("state") if state in (None, "started", "resumed") else state,
            "rate_ml_h": sample.get("rate_ml_h"), "infused_ml": sample.get("counter_ml"),
            "withdrawn_ml": sample.get("withdrawn_ml"),
            "direction": "infuse" if moving else None, "alarm": sample.get("alarm")}


def _with_pump(ctx: typer.Context,
               action: Callable[[Any], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Open the pump, run `action`, close; prints the result and returns it."""
    import asyncio

    from pumpctl.drivers.open import open_driver

    opts = _opts(ctx)
    target = opts.target
    _refuse_if_owned(opts)

    async def main() -> dict[str, Any]:
        async with open_driver(target) as driver:
            result = await action(driver)
            if driver.alarm_at_open is not None:
                result.setdefault("alarm_at_open", driver.alarm_at_open.kind.value)
            return result

    result = asyncio.run(main())
    _print(opts, result)
    return result


def _newera(driver: PumpDriver, opts: _Options, what: str = "this command") -> NewEraDriver:
    """A New Era pump, for what only New Era has (safe mode by that name)."""
    if not _is_newera(driver):
        raise UsageError(f"{what} is for New Era pumps; {opts.url!r} "
                         f"({opts.target.scheme}://) is not one")
    assert isinstance(driver, _newera_class())
    return driver


def _newera_class() -> type[NewEraDriver]:
    from pumpctl.drivers.newera.driver import NewEraDriver

    return NewEraDriver


def _is_newera(driver: PumpDriver) -> bool:
    return isinstance(driver, _newera_class())


def _modbus(driver: PumpDriver) -> ModbusPumpDriver | None:
    """The Modbus driver, or None for another family (imported only when it is one)."""
    if _is_newera(driver):
        return None
    from pumpctl.drivers.modbus.driver import ModbusPumpDriver

    return driver if isinstance(driver, ModbusPumpDriver) else None


def _print(opts: _Options, result: dict[str, Any]) -> None:
    if opts.as_json:
        typer.echo(json.dumps(result, sort_keys=True))
        return
    for key, value in result.items():
        _out().print(f"{key}: {value}", markup=False)


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
        if (m := _modbus(d)) is not None:
            from pumpctl.commands import pump_modbus

            return await pump_modbus.info(m)
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
    """State, rate, dispensed volumes and alarm (through the run if one drives the pump)."""

    _json_after_command(ctx, as_json)
    owner = _owner(_opts(ctx))
    if owner is not None:
        _through_run(_opts(ctx), owner, dict)
        return

    async def action(d: NewEraDriver) -> dict[str, Any]:
        return _status_dict(await d.status())
    _with_pump(ctx, action)


@pump_app.command(context_settings=_NUMBERS)
def diameter(ctx: typer.Context, mm: Annotated[list[str] | None, typer.Argument(
        help="Inner diameter, e.g. 26.59 (mm), 26.59 mm or 2.659 cm; omit to query.")] = None,
        as_json: JsonFlag = False) -> None:
    """Syringe inner diameter."""
    from pumpctl.units import Kind

    _json_after_command(ctx, as_json)
    value = None if not mm else _quantity(" ".join(mm), Kind.LENGTH, "diameter",
                                          default_unit="mm", positive=True)

    async def action(d: NewEraDriver) -> dict[str, Any]:
        if (m := _modbus(d)) is not None:
            from pumpctl.commands import pump_modbus

            return await pump_modbus.diameter(m, value)
        read = await (d.set_diameter(value) if value is not None else d.diameter())
        return {"diameter_mm": read}
    _with_pump(ctx, action)


@pump_app.command(context_settings=_NUMBERS)
def rate(ctx: typer.Context, value: Annotated[list[str] | None, typer.Argument(
        help="Rate with unit, e.g. 52.5 mL/h, 875 uL/min; omit to query.")] = None,
        as_json: JsonFlag = False) -> None:
    """Pumping rate (takes effect at once while running)."""
    from pumpctl.drivers.newera.codec import ValueRefused
    from pumpctl.units import Kind

    _json_after_command(ctx, as_json)
    ml_h = None if not value else _quantity(" ".join(value), Kind.RATE, "rate", positive=True)

    async def action(d: NewEraDriver) -> dict[str, Any]:
        if ml_h is not None:
            try:
                await d.set_rate(ml_h)
            except ValueRefused as exc:
                raise await _rate_limit_error(d, ml_h, exc) from None
        if (m := _modbus(d)) is not None:
            from pumpctl.commands import pump_modbus

            return await pump_modbus.rate(m)
        read, units = await d.rate()
        return {"rate_ml_h": read, "units": units.label}
    _with_pump(ctx, action)


@pump_app.command(context_settings=_NUMBERS)
def volume(ctx: typer.Context, value: Annotated[list[str] | None, typer.Argument(
        help="Volume to dispense, mL (or with unit, e.g. 500 uL); 0 = no limit; omit to "
             "query.")] = None,
        as_json: JsonFlag = False) -> None:
    """Volume to dispense before the pump stops by itself."""
    from pumpctl.units import Kind

    _json_after_command(ctx, as_json)
    ml = None if not value else _quantity(" ".join(value), Kind.VOLUME, "volume",
                                          default_unit="mL")

    async def action(d: NewEraDriver) -> dict[str, Any]:
        if (m := _modbus(d)) is not None:
            from pumpctl.commands import pump_modbus

            return await pump_modbus.volume(m, ml)
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
    from pumpctl.drivers.base import Direction

    _json_after_command(ctx, as_json)
    wanted = None
    if value is not None:
        try:
            wanted = Direction(value.strip().lower())
        except ValueError:
            raise UsageError(f"direction {value!r} must be infuse or withdraw") from None

    async def action(d: NewEraDriver) -> dict[str, Any]:
        read = await (d.set_direction(wanted) if wanted is not None else d.direction())
        return {"direction": read.value if read is not None else None}
    _with_pump(ctx, action)


@pump_app.command()
def run(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Start pumping (until the volume to dispense is reached or `stop`).

    With safe mode armed the pump stops itself when this command's process has gone for
    longer than the watchdog time: use `watch --run` to keep it running."""
    from pumpctl.drivers.base import PumpAlarmError

    _json_after_command(ctx, as_json)
    async def action(d: NewEraDriver) -> dict[str, Any]:
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
    owner = _owner(_opts(ctx))
    if owner is not None:
        _through_run(_opts(ctx), owner, lambda st: {"infused_ml": st["infused_ml"],
                                                    "withdrawn_ml": st["withdrawn_ml"]})
        return

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
    async def action(opened: PumpDriver) -> dict[str, Any]:
        d = _newera(opened, _opts(ctx), "safe-mode (New Era's watchdog)")
        if seconds is not None:
            await d.set_watchdog(seconds)
        return {"safe_mode_s": d.safe_s if seconds is not None else await d.watchdog()}
    _with_pump(ctx, action)


def _quantity(text: str, kind: Kind, field: str, *, default_unit: str | None = None,
              positive: bool = False) -> float:
    """A CLI quantity through pint (`pumpctl.units`); a bare number takes `default_unit`.
    Negative is always refused; zero too where it means nothing (`positive`: a rate or a
    diameter of 0), both as bad input (exit 2) before the pump is opened."""
    from pumpctl.units import parse_quantity

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
    if positive and value == 0:
        raise UsageError(f"{field} {text!r} must be greater than zero")
    return value


def register(app: typer.Typer) -> None:
    """Add `pumpctl pump ...` to the root app (`watch` and `scan` come from
    `pumpctl.commands.pump_watch`, registered after it)."""
    app.add_typer(pump_app, name="pump")
