"""The single `pumpctl` entry point.

Each area registers its own commands from `pumpctl/commands/<area>.py`; this module only
assembles them and turns the project's errors into one line on stderr and an exit code,
so a user never sees a traceback for something they can fix.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from pumpctl import __version__
from pumpctl.commands import (
    accuracy,
    course,
    dashboard,
    plan,
    pump,
    report,
    run,
    runs,
    sim,
    sim_balance,
    telemetry,
)
from pumpctl.errors import PumpctlError
from pumpctl.run.output import silence_lost_output

app = typer.Typer(
    name="pumpctl",
    help="Infusion-pump controller companion and HIL test harness (Research Use Only).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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


for area in (plan, course, pump, sim, run, runs, telemetry, accuracy, sim_balance, report,
             dashboard):
    area.register(app)


@app.command("version")
def version() -> None:
    """Print the pumpctl version."""
    typer.echo(__version__)


_err = Console(stderr=True, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app, map errors to one line and an exit code."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except PumpctlError as exc:
        try:
            # The message quotes what the user gave (paths, values): never read it as markup.
            _err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        except OSError:  # the terminal is gone (SIGHUP) or stderr closed: the code still counts
            silence_lost_output()
        sys.exit(exc.exit_code)
    except TyperException as exc:  # bad arguments: the parser's own usage message
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            _err.print(f"error: {exc}", markup=False)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except typer.Abort:
        _err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        _err.print("interrupted")
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
