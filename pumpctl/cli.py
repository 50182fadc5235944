"""The single `pumpctl` entry point.

Each area registers its own commands from `pumpctl/commands/<area>.py`; this module only
assembles them and turns the project's errors into one line on stderr and an exit code,
so a user never sees a traceback for something they can fix.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from typer.exceptions import TyperException

from pumpctl import __version__
from pumpctl.commands import (
    accuracy,
    course,
    dashboard,
    plan,
    pump,
    pump_watch,
    report,
    run,
    runs,
    sim,
    sim_balance,
    sim_modbus,
    telemetry,
)
from pumpctl.errors import PumpctlError, shortened

app = typer.Typer(
    name="pumpctl",
    help="Infusion-pump controller companion and HIL test harness (Research Use Only).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help text, for every command below: typer's rich help imports a Markdown parser
    # and most of rich, which made `pumpctl --help` take twice as long (bench row startup).
    rich_markup_mode=None,
)



def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"pumpctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """Infusion-pump controller companion and HIL test harness (Research Use Only)."""


for area in (plan, course, pump, pump_watch, sim, run, runs, telemetry, accuracy, sim_balance,
             sim_modbus, report, dashboard):
    area.register(app)


@app.command("version")
def version() -> None:
    """Print the pumpctl version."""
    typer.echo(__version__)


def _error(text: str, *, prefix: str = "") -> None:
    """One line on stderr (`prefix` in rich markup, `text` as it is); rich is imported only
    when there is something to say, so commands that succeed never pay for it."""
    from rich.console import Console
    from rich.markup import escape

    try:
        # The message quotes what the user gave (paths, values): never read it as markup.
        Console(stderr=True, highlight=False, soft_wrap=True).print(prefix + escape(text))
    except OSError:  # the terminal is gone (SIGHUP) or stderr closed: the exit code still counts
        from pumpctl.run.output import silence_lost_output

        silence_lost_output()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app, map errors to one line and an exit code."""
    # pydantic looks for plugins in every installed distribution's entry points the first
    # time a model or adapter is built (typer builds one per option); pumpctl uses none, and
    # the scan is a tenth of a short command's time.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    argv = run.sim_flag_alone(sys.argv[1:] if argv is None else argv)
    try:
        rc = app(args=argv, standalone_mode=False)
    except PumpctlError as exc:
        _error(str(exc), prefix="[bold red]error:[/] ")
        sys.exit(exc.exit_code)
    except TyperException as exc:  # bad arguments: the parser's own usage message
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            _error(f"error: {exc}")
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except typer.Abort:
        _error("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        _error("interrupted")
        sys.exit(130)
    except OSError as exc:
        # The last net for a path the system refused where no command expected it (a name
        # too long, a loop of links): one line, never a traceback. Nothing is infusing by
        # now: a run stops its pump itself before any error leaves it.
        where = f"{shortened(str(exc.filename))}: " if exc.filename is not None else ""
        _error(f"{where}{exc.strerror or exc}", prefix="[bold red]error:[/] ")
        sys.exit(2 if exc.filename is not None else 1)
    sys.exit(rc if isinstance(rc, int) else 0)



if __name__ == "__main__":
    main()
