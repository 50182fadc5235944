"""`pumpctl telemetry tail|schema|flush`: watch, describe and forward MQTT telemetry.

Streaming itself is part of `pumpctl run --mqtt ...` (see pumpctl.telemetry.runtime); these
commands are for the lab terminal next to it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from pumpctl.telemetry.urls import PASSWORD_ENV, parse_mqtt_url, read_password

telemetry_app = typer.Typer(help="MQTT telemetry: watch it live, print its schema.",
                            no_args_is_help=True)

MqttOpt = Annotated[str, typer.Option(
    "--mqtt", envvar="PUMPCTL_MQTT", metavar="URL",
    help="Broker: mqtt://[user@]host[:port] or mqtts://user@host:8883[?ca=FILE]")]
PasswordFileOpt = Annotated[Path | None, typer.Option(
    "--mqtt-password-file", metavar="FILE",
    help=f"File whose first line is the broker password (else ${PASSWORD_ENV}).")]


@telemetry_app.command("tail")
def tail_command(
    mqtt: MqttOpt = "mqtt://127.0.0.1:1883",
    pump: Annotated[str | None, typer.Option("--pump", help="Only this pump id.")] = None,
    site: Annotated[str | None, typer.Option("--site", help="Only this site.")] = None,
    password_file: PasswordFileOpt = None,
    count: Annotated[int | None, typer.Option(
        "--count", "-n", min=1, help="Exit after this many telemetry messages.")] = None,
    events: Annotated[bool, typer.Option(help="Also show run events.")] = True,
    raw: Annotated[bool, typer.Option("--json", help="Print payloads as received.")] = False,
) -> None:
    """Print live telemetry (and events, and online/offline) for a lab terminal."""
    import asyncio

    from rich.console import Console
    from rich.markup import escape

    from pumpctl.telemetry.tail import subscription_filters, tail

    target = parse_mqtt_url(mqtt)
    filters = subscription_filters(target, site, pump, events=events)
    password = read_password(password_file)
    console = Console(highlight=False, soft_wrap=True)

    def emit(topic: str, line: str, payload: bytes) -> None:
        if raw:
            sys.stdout.write(f"{topic} {payload.decode(errors='replace')}\n")
            sys.stdout.flush()
        else:
            console.print(line)

    if not raw:
        console.print(f"[dim]{escape(target.display)}: {escape(', '.join(filters))}[/]")
    asyncio.run(tail(target, filters, password=password, emit=emit, count=count))


@telemetry_app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of every payload (docs/telemetry.schema.json)."""
    from pumpctl.telemetry.schema import json_schema_document

    typer.echo(json.dumps(json_schema_document(), indent=2))


@telemetry_app.command("flush")
def flush_command(
    spool_dir: Annotated[Path, typer.Argument(help="A pump's spool directory.")],
    site: Annotated[str, typer.Option("--site", help="Site the spool belongs to.")],
    pump_id: Annotated[str, typer.Option("--pump-id", help="Pump id the spool belongs to.")],
    mqtt: MqttOpt = "mqtt://127.0.0.1:1883",
    password_file: PasswordFileOpt = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.1, help="Give up after this many seconds.")] = 30.0,
) -> None:
    """Send what an interrupted run left in its spool, without starting a run."""
    import asyncio

    from pumpctl.telemetry.runtime import telemetry_for_run

    password = read_password(password_file)

    async def main() -> tuple[int, int, str]:
        async with telemetry_for_run(mqtt, site=site, pump_id=pump_id, spool_dir=spool_dir,
                                     password=password, drain_timeout_s=timeout) as sink:
            waiting = sink.spool.pending
            found = sink.spool.recovery.describe()
        return waiting, sink.spool.pending, found

    if not spool_dir.is_dir():
        raise typer.BadParameter(f"{spool_dir}: not a directory", param_hint="SPOOL_DIR")
    waiting, left, found = asyncio.run(main())
    if found:
        typer.echo(f"spool {spool_dir}: {found}")
    typer.echo(f"sent {waiting - left} of {waiting} spooled messages"
               + (f"; {left} still in {spool_dir}" if left else ""))
    if left:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `pumpctl telemetry ...` to the root app."""
    app.add_typer(telemetry_app, name="telemetry")
