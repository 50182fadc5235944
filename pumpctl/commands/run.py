"""`pumpctl run`: deliver a plan on a pump or the embedded simulator."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO, cast

import typer

from pumpctl.errors import PumpctlError

if TYPE_CHECKING:  # the run's modules (pydantic, rich, asyncio) load when a run starts
    from rich.console import Console

    from pumpctl.run.session import SinkFactory


DEFAULT_SIM = "newera"


def sim_flag_alone(argv: list[str]) -> list[str]:
    """`run ... --sim` with no kind after it means `--sim newera` (the default kind): what
    follows `--sim` is a kind unless it is another option, or a plan file given after it."""
    if not argv or argv[0] != "run" or "--sim" not in argv:
        return argv
    out = list(argv)
    i = out.index("--sim")
    following = out[i + 1] if i + 1 < len(out) else None
    if following is None or following.startswith("-") or \
            Path(following).suffix.lower() in (".yaml", ".yml"):
        out.insert(i + 1, DEFAULT_SIM)
    return out


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    plan: Annotated[Path | None, typer.Argument(help="Plan file (optional with --resume).")] = None,
    weight: Annotated[float | None, typer.Option("--weight", help="Subject weight, kg.")] = None,
    pump: Annotated[str | None, typer.Option(
        "--pump", help="Pump URL, e.g. newera:///dev/ttyUSB0?safe=5 (default: --sim).")] = None,
    sim: Annotated[str | None, typer.Option(
        "--sim", metavar="[KIND]",
        help="Use the embedded simulator: newera (the default, also `--sim` alone), or a "
        "Modbus map's (generic, isco-d, vindum-vp, ...).")] = None,
    speed: Annotated[str, typer.Option(
        "--speed", help="N x real time (the event loop's clock runs N times faster), or "
        "'max' for virtual time (simulator only).")] = "1",
    poll: Annotated[float, typer.Option("--poll", help="Status poll interval, s.")] = 1.0,
    journal: Annotated[Path, typer.Option("--journal", help="Journal directory.")] = Path("runs"),
    override: Annotated[str | None, typer.Option(
        "--override-soft-limits", help="Reason for running beyond soft limits.")] = None,
    sim_fault: Annotated[list[str] | None, typer.Option(
        "--sim-fault", help="Inject a simulator fault KIND@TIME (repeatable), e.g. "
        "occlusion@10m.")] = None,
    resume: Annotated[str | None, typer.Option(
        "--resume", help="Resume a run whose controller died (journal id).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    mqtt: Annotated[str | None, typer.Option(
        "--mqtt", help="Stream telemetry to this broker: mqtt://[user@]host[:port] or "
        "mqtts://user@host:8883?ca=FILE (see docs/telemetry.md).")] = None,
    mqtt_password_file: Annotated[Path | None, typer.Option(
        "--mqtt-password-file", help="File holding the MQTT password (else env "
        "PUMPCTL_MQTT_PASSWORD); never journaled.")] = None,
    site: Annotated[str, typer.Option("--site", help="Site name in the topic prefix.")] = "lab",
    pump_id: Annotated[str | None, typer.Option(
        "--pump-id", help="Pump id in the topic prefix (default: the channel, pump0).")] = None,
    telemetry_qos: Annotated[int, typer.Option(
        "--telemetry-qos", help="QoS of per-poll telemetry, 0 or 1 (events are always 1).")] = 0,
    ha_discovery: Annotated[bool, typer.Option(
        "--ha-discovery", help="Publish Home Assistant MQTT discovery configs.")] = False,
    remote_commands: Annotated[bool, typer.Option(
        "--remote-commands", help="Accept stop/pause (never start or a higher rate) from "
        "the authenticated cmd topic.")] = False,
    prompt_timeout: Annotated[float | None, typer.Option(
        "--prompt-timeout", min=1.0, max=600.0,
        help="Seconds the Ctrl-C question waits for an answer before stopping "
             "(default 15).")] = None,
) -> None:
    """Run a plan with an independent safety monitor; everything is journaled.

    A real pump runs in safe mode (its watchdog stops it if pumpctl dies) unless its URL
    says safe=0. SIGHUP, SIGTERM, SIGQUIT, a closed output pipe and Ctrl-C stop the pump
    (on a terminal, Ctrl-C asks first). Exit codes: 0 completed, 5 aborted (operator or
    signal), 6 faulted (safety stop), 2/3 invalid plan, 7 resume refused.
    """
    from rich.console import Console

    from pumpctl.run.output import TolerantStream
    from pumpctl.run.session import RunOptions, execute
    from pumpctl.run.signals import DEFAULT_PROMPT_TIMEOUT_S
    from pumpctl.timescale import parse_speed

    if sim and pump:
        raise _usage("--sim and --pump exclude each other")
    # A closed terminal or pipe must cost the output, never the stop (pumpctl.run.output).
    stream = TolerantStream(sys.stderr if as_json else sys.stdout)
    console = Console(file=cast(TextIO, stream), highlight=False)
    # Telemetry options are checked here, before any pump is touched.
    sinks = telemetry_sink_factories(
        mqtt, site=site, pump_id=pump_id, telemetry_qos=telemetry_qos,
        ha_discovery=ha_discovery, remote_commands=remote_commands,
        password_file=mqtt_password_file, spool_root=journal / "spool")
    opts = RunOptions(plan=plan, weight_kg=weight, pump_url=pump, speed=parse_speed(speed),
                      poll_s=poll, journal_dir=journal, override_reason=override,
                      sim_faults=list(sim_fault or []), sim_kind=sim, resume=resume,
                      json=as_json,
                      sink_factories=sinks,
                      prompt_timeout_s=prompt_timeout or DEFAULT_PROMPT_TIMEOUT_S)
    try:
        result = execute(opts, console)
    except PumpctlError as exc:
        _print_outcome(exc, as_json, console)
        raise
    _print_result(result, as_json, console)


def telemetry_sink_factories(
    mqtt: str | None, *, site: str, pump_id: str | None, telemetry_qos: int,
    ha_discovery: bool, remote_commands: bool, password_file: Path | None, spool_root: Path,
) -> list[SinkFactory]:
    """The run's telemetry (MQTT) sinks: none without `--mqtt`.

    Each factory gets the controller (for its `request_*` hooks and `journal_note`) and
    returns an async context manager yielding a `RecordSink`; the journal always gets each
    record before any sink does. The spool lives beside the journal.
    """
    if mqtt is None:
        if remote_commands or ha_discovery:
            raise _usage("--remote-commands and --ha-discovery need --mqtt URL")
        return []
    from pumpctl.telemetry.runtime import telemetry_sink_factory

    return [telemetry_sink_factory(
        mqtt, site=site, spool_root=spool_root, pump_id=pump_id, telemetry_qos=telemetry_qos,
        ha_discovery=ha_discovery, remote_commands=remote_commands,
        password_file=password_file)]


def _usage(message: str) -> PumpctlError:
    from pumpctl.errors import UsageError

    return UsageError(message)


def _print_result(result: object, as_json: bool, console: Console) -> None:
    from pumpctl.run.controller import RunResult
    from pumpctl.run.display import summary_table
    from pumpctl.run.output import echo_safely

    assert isinstance(result, RunResult)
    if as_json:
        echo_safely(json.dumps(result.as_dict()))
    else:
        console.print(summary_table([result]))


def _print_outcome(exc: PumpctlError, as_json: bool, console: Console) -> None:
    result = getattr(exc, "result", None)
    if result is not None:
        _print_result(result, as_json, console)
