"""A run's pump commands and alarms, each one checked and journaled.

Every command goes out the same way: the `SafetyMonitor` approves it, the driver sends it,
the journal records the result or the error, and the monitor checks what the pump read back.
Every breach becomes an `alarm` record, and `BreachStop` unwinds the run to its stop sequence.
A journal that fails mid-run (disk full) must not leave the pump running: the failure is
remembered, the run stops, and the stop goes on without the journal.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from pumpctl.clock import Clock
from pumpctl.drivers.base import PumpError
from pumpctl.journal import Journal, JournalError, RecordLayout
from pumpctl.run.records import SAMPLE_KEYS, json_result
from pumpctl.safety import Breach, BreachKind, SafetyMonitor

T = TypeVar("T")
log = logging.getLogger("pumpctl.run.controller")


class BreachStop(Exception):
    """A breach was found and journaled; unwind to the stop sequence."""

    def __init__(self, breach: Breach) -> None:
        super().__init__(breach.message)
        self.breach = breach


class RunCommands:
    """Journaled, monitor-checked commands and alarms for one run.

    `plan_t` and `delivered_ml` read the run's position at the moment the monitor needs it
    (before the command and again after its read-back).
    """

    def __init__(self, *, channel: str, clock: Clock, monitor: SafetyMonitor,
                 plan_t: Callable[[], float], delivered_ml: Callable[[], float],
                 retries: Callable[[], int] = lambda: 0) -> None:
        self.channel = channel
        self.retries = retries  # the driver's count of repeated requests (see retries_of)
        self.retries_at_start = 0
        self.clock = clock
        self.monitor = monitor
        self._plan_t = plan_t
        self._delivered_ml = delivered_ml
        self.journal: Journal | None = None
        self._sample_layout: RecordLayout | None = None
        self.journal_error: str | None = None
        self.alarms: list[dict[str, Any]] = []
        self.first_breach_at: float | None = None
        self._header_written = False
        self._pending_notes: list[tuple[str, dict[str, Any]]] = []
        self.last_breach: Breach | None = None  # the latest alarm, for the run's last sample

    # -- the journal ---------------------------------------------------------------------

    def attach(self, journal: Journal) -> None:
        """Write to `journal` from now on."""
        self.journal = journal
        self._sample_layout = journal.layout("sample", SAMPLE_KEYS)
        self.retries_at_start = self.retries()

    def write(self, type_: str, /, **fields: Any) -> dict[str, Any]:
        """Journal a record. If the journal fails (disk full, I/O error) the run must still
        end with the pump stopped: remember the failure, let the supervision loop stop the
        run, and keep going without the journal during the stop."""
        return self.write_fields(type_, fields)

    def write_fields(self, type_: str, fields: dict[str, Any]) -> dict[str, Any]:
        assert self.journal is not None
        try:
            return self.journal.write_fields(type_, fields)
        except JournalError as exc:
            self.journal_failed(exc)
            return {"type": type_, **fields}

    def write_header(self, fields: dict[str, Any]) -> None:
        """The first record, then the notes that arrived before it."""
        self.write_fields("header", fields)
        self._header_written = True
        for kind, body in self._pending_notes:
            self.write(kind, **body)
        self._pending_notes.clear()

    def note(self, kind: str, body: dict[str, Any]) -> None:
        """Journal a record for another component; before the header it waits for it, so
        the header always comes first."""
        if self.journal is None or not self._header_written:
            self._pending_notes.append((kind, body))
        else:
            self.write(kind, **body)

    def write_sample(self, values: tuple[Any, ...]) -> None:
        """The per-poll `sample` record (values in `SAMPLE_KEYS` order), on the journal's fast
        path; a failure is remembered like any other."""
        assert self.journal is not None and self._sample_layout is not None
        try:
            self.journal.write_values(self._sample_layout, values)
        except JournalError as exc:
            self.journal_failed(exc)

    def journal_failed(self, exc: JournalError) -> None:
        if self.journal_error is None:
            self.journal_error = str(exc)
            log.error("%s: %s; stopping the pump", self.channel, exc)

    def check_journal(self) -> None:
        """Stop the run if the journal has failed: a run that cannot be recorded must not go on."""
        if self.journal_error is not None:
            # An alarm like any other: the journal will not take it (`write` keeps the record
            # anyway), but the run's result, summary and console count it.
            self.fail(Breach(BreachKind.CONTROLLER_ERROR, f"journal failed: {self.journal_error}",
                             source="controller"))

    # -- commands ------------------------------------------------------------------------

    async def cmd(self, op: str, args: dict[str, Any], call: Callable[[], Awaitable[T]]) -> T:
        """Send one command and journal its result or its error (with `retries`: how many
        times a lost or corrupt reply made the driver repeat a request, when any did)."""
        before = self.retries()
        try:
            result = await call()
        except PumpError as exc:
            self.write("command", op=op, args=args, error=str(exc),
                       error_type=type(exc).__name__, **self.retried_since(before))
            raise
        self.write("command", op=op, args=args, result=json_result(result),
                   **self.retried_since(before))
        return result

    def retried_since(self, before: int) -> dict[str, int]:
        """`{"retries": n}` for a record, when the driver repeated n > 0 requests since."""
        n = self.retries() - before
        return {"retries": n} if n else {}

    async def checked(self, op: str, value: Any, call: Callable[[], Awaitable[T]],
                      args: dict[str, Any] | None = None) -> T:
        """Ask the monitor, send, journal, and let the monitor check the read-back."""
        args = args if args is not None else ({} if value is None else {"value": value})
        breach = self.monitor.check_command(op, value, plan_t=self._plan_t(),
                                            delivered_ml=self._delivered_ml())
        if breach is not None:
            self.fail(breach)
        result = await self.cmd(op, args, call)
        after = self.monitor.note_command(op, result, sent=value, plan_t=self._plan_t(),
                                          delivered_ml=self._delivered_ml())
        if after is not None:
            self.fail(after)
        return result

    # -- alarms --------------------------------------------------------------------------

    def alarm(self, breach: Breach) -> Breach:
        """Journal a breach as an alarm (the first fault starts the breach-to-stop clock)."""
        if self.first_breach_at is None and breach.fault:
            self.first_breach_at = self.clock.monotonic()
        rec = self.write("alarm", **breach.as_record())
        self.alarms.append(rec)
        self.last_breach = breach
        return breach

    def fail(self, breach: Breach) -> NoReturn:
        """Journal the breach and unwind the run to its stop sequence."""
        raise BreachStop(self.alarm(breach))


def retries_of(driver: object) -> int:
    """Requests the driver repeated because a reply was lost, late or corrupt (its `retried`
    counter); 0 for a driver that does not count them."""
    value = getattr(driver, "retried", 0)
    return value if isinstance(value, int) else 0
