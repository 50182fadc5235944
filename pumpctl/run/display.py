"""What `pumpctl run` shows while it runs: a `RecordSink` that renders journal records.

The display only ever sees what the journal already has, so what the operator watches and
what is recorded cannot diverge. Alarms are printed as lines as they happen (they stay in the
scroll-back); the live table shows the latest sample of each channel.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pumpctl.drivers.base import PumpState
from pumpctl.run.controller import RunResult


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{sec:02d}"


_MOVING = frozenset(state.value for state in PumpState if state.is_moving)


def _moving(sample: dict[str, Any]) -> bool:
    return sample.get("state") in _MOVING


class RunDisplay:
    """Collects the latest state of each channel from records; renders a rich table."""

    def __init__(self, console: Console, *, print_alarms: bool = True) -> None:
        self.console = console
        self.print_alarms = print_alarms
        self.headers: dict[str, dict[str, Any]] = {}
        self.samples: dict[str, dict[str, Any]] = {}
        self.states: dict[str, str] = {}
        self.alarms: list[dict[str, Any]] = []

    # RecordSink
    def emit(self, record: dict[str, Any]) -> None:
        ch = str(record.get("channel", ""))
        kind = record.get("type")
        if kind == "header":
            self.headers[ch] = record
            capabilities = record.get("pump_capabilities")
            for warning in capability_warnings(capabilities if isinstance(capabilities, dict)
                                               else {"volume_cap": {}, "watchdog": {}}):
                self.console.print(f"[bold yellow]WARNING[/] [cyan]{ch}[/] {warning}",
                                   highlight=False)
        elif kind == "sample":
            self.samples[ch] = record
        elif kind == "state":
            self.states[ch] = str(record.get("state"))
            if (self.print_alarms and record.get("sender") != "controller"
                    and record.get("state") in ("paused", "resumed", "stopping")):
                self.console.print(f"[cyan]{escape(ch)}[/] " + escape(
                    f"{record['state']}: {record.get('reason', '')} "
                    f"({record.get('sender', '')})"), highlight=False)
        elif kind == "alarm":
            self.alarms.append(record)
            if self.print_alarms:
                self.console.print(  # alarm text quotes outside input (a remote reason)
                    f"[bold red]ALARM[/] [cyan]{escape(ch)}[/] " + escape(
                        f"{record.get('kind')}: {record.get('message')} "
                        f"(t={record.get('elapsed_s', 0):.1f} s)"), highlight=False)

    async def aclose(self) -> None:
        return None

    def __rich__(self) -> RenderableType:
        """One column per channel, one row per figure (fits 80 columns for a few pumps).

        Rendered on the live display's own thread: a record this cannot show must cost the
        table, not raise there (a traceback over the run's output, the display gone)."""
        try:
            return self._table()
        except Exception as exc:
            return Text(f"(display error: {type(exc).__name__}: {exc}; the run goes on)")

    def _table(self) -> RenderableType:
        table = Table(title="pumpctl run (Research Use Only)", show_header=len(self.headers) > 1)
        table.add_column("")
        cells: dict[str, list[RenderableType]] = {}
        for ch, header in self.headers.items():
            table.add_column(ch, justify="right")
            s = self.samples.get(ch, {})
            n_alarms = sum(1 for a in self.alarms if a.get("channel") == ch)
            per_kg = s.get("dose_mg_per_kg")
            state = s.get("state", "") + (" (paused)" if s.get("paused") else "") if s else \
                self.states.get(ch, "preparing")
            last = next((a for a in reversed(self.alarms) if a.get("channel") == ch), None)
            column: dict[str, RenderableType] = {
                "state": state,
                # what flows: a stopped pump still reports the rate it would run at
                "rate mL/h": f"{s.get('rate_ml_h', 0.0) if _moving(s) else 0.0:.4g}" if s
                else "-",
                "volume mL": f"{s.get('infused_ml', 0.0):.3f} of "
                             f"{header.get('total_volume_ml', 0.0):.3f}",
                "planned so far mL": f"{s.get('planned_ml', 0.0):.3f}" if s else "-",
                "dose mg": f"{s.get('dose_mg', 0.0):.3f} of {header.get('total_dose_mg', 0.0):.3f}",
                "dose mg/kg": f"{per_kg:.4f}" if per_kg is not None else "-",
                "elapsed": _fmt_s(s.get("elapsed_s")),
                "remaining": _fmt_s(s.get("remaining_s")),
                "alarms": Text(f"{n_alarms}" + (f" (last: {last.get('kind')})" if last else ""),
                               style="bold red" if n_alarms else ""),
            }
            for name, value in column.items():
                cells.setdefault(name, []).append(value)
        for name, values in cells.items():
            table.add_row(name, *values)
        return table


def capability_warnings(capabilities: dict[str, Any]) -> list[str]:
    """What the operator must know before the pump moves: the safety nets it lacks (from the
    `pump_capabilities` of a run's header)."""
    out = []
    has_cap = capabilities.get("volume_cap") is not None
    if not has_cap:
        out.append("this pump has no volume limit of its own: pumpctl stops it at the "
                   "planned total")
    if capabilities.get("watchdog") is None:
        out.append("this pump has no watchdog of its own: if pumpctl dies, nothing stops it"
                   + (" before its volume limit" if has_cap else ""))
    return out


class PausableLive:
    """rich's `Live` display that can be paused (for the Ctrl-C question) and resumed below
    what was printed meanwhile. A resumed `Live` object would first move the cursor up by the
    height of its last table and draw over the question and its answer, so each resume draws
    with a new one; the old tables stay in the scroll-back."""

    def __init__(self, renderable: RenderableType, console: Console) -> None:
        self._renderable = renderable
        self._console = console
        self._live: Live | None = None

    @property
    def is_started(self) -> bool:
        return self._live is not None and self._live.is_started

    def start(self, refresh: bool = False) -> None:
        if self.is_started:
            return
        self._live = Live(self._renderable, console=self._console, refresh_per_second=4,
                          transient=False)
        self._live.start(refresh=refresh)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()


def summary_table(results: list[RunResult]) -> RenderableType:
    """One column per channel, one row per figure: readable in 80 columns."""
    table = Table(title="run summary", show_header=len(results) > 1)
    table.add_column("")
    for r in results:
        table.add_column(r.channel)
    rows: list[tuple[str, list[RenderableType]]] = [
        ("outcome", [Text(r.outcome, style={"completed": "green", "aborted": "yellow"}
                          .get(r.outcome, "bold red")) for r in results]),
        ("volume mL (delivered / planned)",
         [f"{r.delivered_volume_ml:.3f} / {r.planned_volume_ml:.3f}" for r in results]),
        ("dose mg (delivered / planned)",
         [f"{r.delivered_dose_mg:.3f} / {r.planned_dose_mg:.3f}" for r in results]),
        ("duration", [_fmt_s(r.duration_s) for r in results]),
        ("alarms", [", ".join(str(a.get("kind")) for a in r.alarms) or "none" for r in results]),
        ("pump stopped", ["confirmed" if r.stop_confirmed else "NOT CONFIRMED" for r in results]),
        ("run id", [r.run_id for r in results]),
        ("journal", [str(r.journal_path) for r in results]),
    ]
    for name, cells in rows:
        table.add_row(name, *cells)
    notes = [Text(f"{r.channel}: {r.reason}") for r in results if r.outcome != "completed"]
    return Group(table, *notes)
