"""`pumpctl pump watch` and `pumpctl pump scan`: the two bench commands that run until
told otherwise or walk a whole line, beside the one-shot commands of `pumpctl.commands.pump`
(whose options and helpers they share). A pump that a `pumpctl run` drives is watched
through that run, never opened."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pumpctl.commands.pump import (
    JsonFlag,
    _json_after_command,
    _modbus,
    _newera,
    _Options,
    _opts,
    _out,
    _owner,
    _refuse_if_owned,
    _run_status,
    _status_dict,
    pump_app,
)
from pumpctl.errors import UsageError

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

    from pumpctl.drivers.base import PumpStatus
    from pumpctl.run.endpoint import PortOwner


def watch(ctx: typer.Context,
          interval: Annotated[float, typer.Option("--interval", min=0.1, max=60,
                                                  help="Seconds between polls.")] = 1.0,
          start: Annotated[bool, typer.Option("--run", help="Start the pump first; Ctrl-C, "
                                              "SIGTERM, SIGHUP or SIGQUIT then stops it.")] = False,
          as_json: JsonFlag = False) -> None:
    """Live status until Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT: a closed terminal too). Stops
    the pump on exit if `--run` started it. A pump that a `pumpctl run` drives is watched
    through that run (until it ends), never opened."""
    import asyncio

    from rich.live import Live

    from pumpctl.commands import STOP_SIGNALS
    from pumpctl.drivers.open import open_driver

    _json_after_command(ctx, as_json)
    opts = _opts(ctx)
    target = opts.target
    owner = _owner(opts)
    if owner is not None and not start:
        asyncio.run(_watch_run(opts, owner))
        return
    _refuse_if_owned(opts)

    async def main() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, done.set)
        async with open_driver(target) as d:
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


def _watch_table(status: PumpStatus | dict[str, Any] | None, via: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title="pump", show_header=False)
    if status is None:
        table.add_row("state", "connecting")
    else:
        shown = status if isinstance(status, dict) else _status_dict(status)
        for key, value in shown.items():
            table.add_row(key, "-" if value is None else str(value))
    if via is not None:
        table.add_row("read through", via)
    return table


async def _watch_run(opts: _Options, owner: PortOwner) -> None:
    """`watch` through the running controller: each sample it journals, until it ends."""
    import asyncio

    from rich.live import Live

    from pumpctl.commands import STOP_SIGNALS
    from pumpctl.run.endpoint import follow

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, done.set)
    via = owner.describe()

    async def show() -> None:
        async with contextlib.aclosing(follow(owner)) as records:
            with Live(_watch_table(None, via), console=_out(), auto_refresh=False,
                      transient=opts.as_json) as live:
                await _show_records(records, live, opts, owner)

    task = asyncio.create_task(show())
    stop = asyncio.create_task(done.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stop):
        pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _show_records(records: AsyncIterator[dict[str, Any]], live: Live, opts: _Options,
                        owner: PortOwner) -> None:
    async for record in records:
        kind = record.get("type")
        if kind not in ("snapshot", "sample", "state", "summary"):
            continue
        status = _run_status(record) if kind in ("snapshot", "sample") else None
        if kind == "state" or kind == "summary":
            status = {"state": record.get("state") or record.get("outcome")}
        if opts.as_json:
            typer.echo(json.dumps({**(status or {}), "via_run": owner.run_id},
                                  sort_keys=True))
        else:
            live.update(_watch_table(status, owner.describe()), refresh=True)
        if kind == "summary":
            return


def scan(ctx: typer.Context,
         first: Annotated[int | None, typer.Option(
             "--first", min=0, max=247, help="First address (New Era default 0).")] = None,
         last: Annotated[int | None, typer.Option(
             "--last", min=0, max=247, help="Last address (New Era default 99).")] = None,
         span: Annotated[str | None, typer.Option(
             "--range", metavar="FIRST-LAST",
             help="Addresses to try, e.g. 1-247. Default: New Era 0-99; Modbus unit ids 1-16 "
                  "(each silent id costs one --timeout, so 1-247 takes 247 of them).")] = None,
         timeout: Annotated[float, typer.Option("--timeout", min=0.02, max=5,
                                                help="Seconds to wait per address.")] = 0.1,
         as_json: JsonFlag = False,
         ) -> None:
    """Find the addresses (Modbus: unit ids) that answer on this line."""
    import asyncio

    from pumpctl.drivers.open import open_line

    _json_after_command(ctx, as_json)
    opts = _opts(ctx)
    target = opts.target
    modbus = target.scheme.startswith("modbus")
    low, high = _scan_range(span, first, last, (1, 16) if modbus else (0, 99),
                            (1, 247) if modbus else (0, 99))
    _refuse_if_owned(opts)

    async def main() -> dict[str, Any]:
        async with open_line(target) as line:
            found = await line.scan(range(low, high + 1), timeout_s=timeout)
            pumps = []
            for address in found:
                driver = line.pump(address)
                await driver.open()
                if (m := _modbus(driver)) is not None:
                    from pumpctl.commands import pump_modbus

                    pumps.append(await pump_modbus.scan_entry(m))
                    continue
                d = _newera(driver, opts)
                assert d.identity is not None
                pumps.append({"address": address, "model": d.identity.model,
                              "firmware": d.identity.firmware, "safe_mode_s": d.safe_s})
            return {"pumps": pumps}

    result = asyncio.run(main())
    if opts.as_json:
        typer.echo(json.dumps(result, sort_keys=True))
    elif not result["pumps"]:
        _out().print(f"no pump answered at {'unit ids' if modbus else 'addresses'} "
                     f"{low}-{high}")
    else:
        for pump in result["pumps"]:
            if "unit" in pump:
                watchdog = "none" if pump["watchdog_s"] is None else f"{pump['watchdog_s']} s"
                _out().print(f"unit {pump['unit']}: {pump['model']} firmware "
                             f"{pump['firmware'] or '-'} watchdog {watchdog}", markup=False)
            else:
                _out().print(f"address {pump['address']}: {pump['model']} firmware "
                             f"{pump['firmware']} safe-mode {pump['safe_mode_s']} s",
                             markup=False)


def _scan_range(span: str | None, first: int | None, last: int | None,
                default: tuple[int, int], limits: tuple[int, int]) -> tuple[int, int]:
    """The addresses `scan` tries: `--range A-B`, or `--first`/`--last`, within `limits`."""
    low, high = default
    if span is not None:
        if first is not None or last is not None:
            raise UsageError("--range and --first/--last: give one or the other")
        parts = span.replace(" ", "").split("-")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise UsageError(f"--range {span!r} must be FIRST-LAST, e.g. 1-16")
        low, high = int(parts[0]), int(parts[1])
    else:
        low = low if first is None else first
        high = high if last is None else last
    if not limits[0] <= low <= high <= limits[1]:
        raise UsageError(f"scan range {low}-{high} must be within {limits[0]}-{limits[1]} "
                         "(first <= last)")
    return low, high


def register(app: typer.Typer) -> None:
    """Add `watch` and `scan` to `pumpctl pump` (after `pumpctl.commands.pump.register`)."""
    pump_app.command()(watch)
    pump_app.command()(scan)
