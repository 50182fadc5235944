"""InfusionController: deliver one validated `RateProgram` through one `PumpDriver`.

The controller follows the compiled `segments` (rate changes at each boundary) on a `Clock`,
polls the pump, and asks the independent `SafetyMonitor` about every command before it is sent
and every status sample after it arrives. Any breach, pump error, operator stop, cancellation
or bug ends the same way: stop the pump, confirm it stopped, read back what was delivered,
journal it. The pump's own volume-to-dispense is set to the remaining planned volume, so the
hardware stops at the planned total even if this process dies; with safe mode armed, the pump's
watchdog stops it too.

Plan time runs only while the pump is meant to infuse: it starts when `run` is sent and is
frozen while paused, so a pause shifts the rest of the schedule instead of skipping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pumpctl import __version__
from pumpctl.clock import Clock, LoopClock, SharedDeadline
from pumpctl.drivers.base import (
    Direction,
    PumpAlarmError,
    PumpDriver,
    PumpError,
    PumpIdentity,
    PumpStatus,
    ReadbackMismatch,
)
from pumpctl.errors import UsageError
from pumpctl.journal import Journal, JournalError, RecordSink, new_run_id
from pumpctl.plan.program import RateProgram, Segment
from pumpctl.safety import Breach, BreachKind, SafetyMonitor, SafetyTolerances, counter_quantum_ml
from pumpctl.sensors import VolumeSensor

T = TypeVar("T")
log = logging.getLogger(__name__)

OUTCOMES = ("completed", "aborted", "faulted")
# Deadlines this close are due now. The event loop runs timers within its clock resolution
# early without advancing time, so waiting for a remainder that small would spin forever on
# a virtual-time loop.
_DUE_S = 1e-6
REMOTE_PREFIXES = ("mqtt:", "remote:")


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run picks up (see pumpctl.resume): volume already in, plan time reached."""

    resume_of: str
    baseline_ml: float
    plan_offset_s: float
    journal_ml: float
    pump_ml: float


@dataclass
class RunResult:
    run_id: str
    channel: str
    outcome: str
    planned_volume_ml: float
    delivered_volume_ml: float
    planned_dose_mg: float
    delivered_dose_mg: float
    duration_s: float
    journal_path: Path
    stop_confirmed: bool
    alarms: list[dict[str, Any]] = field(default_factory=list)
    poll_lateness_s: list[float] = field(default_factory=list)
    breach_to_stop_s: float | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["journal_path"] = str(self.journal_path)
        d.pop("poll_lateness_s")
        return d


class _Stop(Exception):
    """Internal: a breach was found and journaled; unwind to the stop sequence."""

    def __init__(self, breach: Breach) -> None:
        super().__init__(breach.message)
        self.breach = breach


class _OperatorStop(Exception):
    pass


def floor_to_pump_format(volume_ml: float) -> float:
    """Largest value ≤ `volume_ml` that a 4-digit, ≤ 3-decimal pump field can hold."""
    if volume_ml <= 0:
        return 0.0
    q = counter_quantum_ml(volume_ml)
    return round(math.floor(volume_ml / q + 1e-9) * q, 3)


def breach_for_error(exc: PumpError) -> Breach:
    if isinstance(exc, ReadbackMismatch):
        return Breach(BreachKind.READBACK_MISMATCH, str(exc), _plain(exc.read), _plain(exc.sent),
                      source="pump")
    if isinstance(exc, PumpAlarmError):
        return Breach(BreachKind.PUMP_ALARM, str(exc), exc.alarm.kind.value, None, source="pump")
    return Breach(BreachKind.PUMP_ERROR, f"{type(exc).__name__}: {exc}", None, None,
                  source="controller")


def _plain(v: object) -> float | str | None:
    if v is None or isinstance(v, float | int | str):
        return v
    return str(v)


class InfusionController:
    """Runs one program on one pump; `await run()` returns when the pump is stopped."""

    def __init__(self, driver: PumpDriver, program: RateProgram, *,
                 journal_dir: Path | str = "runs", clock: Clock | None = None,
                 channel: str = "pump0", poll_s: float = 1.0,
                 tolerances: SafetyTolerances | None = None,
                 sinks: Sequence[RecordSink] = (), pump_url: str = "",
                 watchdog_s: int | None = None, resume: ResumePoint | None = None,
                 run_id: str | None = None, operator: str | None = None,
                 header_extra: dict[str, Any] | None = None,
                 stop_timeout_s: float = 3.0, stop_attempts: int = 3,
                 volume_sensor: VolumeSensor | None = None) -> None:
        if not (isinstance(poll_s, int | float) and math.isfinite(poll_s) and 0 < poll_s <= 60):
            raise UsageError(f"poll interval {poll_s} s: must be > 0 and <= 60 s")
        self.driver = driver
        self.program = program
        self.clock: Clock = clock or LoopClock()
        self.channel = channel
        self.poll_s = float(poll_s)
        tol = tolerances or SafetyTolerances()
        if tol.no_status_s < 2.5 * self.poll_s:  # a single missed poll must not look like silence
            tol = SafetyTolerances(**{**tol.__dict__, "no_status_s": 2.5 * self.poll_s})
        self.monitor = SafetyMonitor(program, tol)
        self.journal_dir = Path(journal_dir)
        self.sinks = list(sinks)
        self.pump_url = pump_url
        self.watchdog_s = watchdog_s
        self.resume = resume
        self.run_id = run_id or new_run_id(channel)
        self.operator = operator or _whoami()
        self.header_extra = dict(header_extra or {})
        self.stop_timeout_s = stop_timeout_s
        self.stop_attempts = max(1, stop_attempts)
        self.volume_sensor = volume_sensor
        self._measured: float | None = None
        self.baseline_ml = resume.baseline_ml if resume else 0.0
        self.offset_s = resume.plan_offset_s if resume else 0.0
        self.journal: Journal | None = None
        self._requests: list[tuple[str, str, str]] = []
        self._waiter: asyncio.Future[None] | None = None
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._t_run: float | None = None
        self._seg_index = 0
        self._delivered = self.baseline_ml
        self._vtbi_total: float | None = None
        self._alarms: list[dict[str, Any]] = []
        self._lateness: list[float] = []
        self._first_breach_at: float | None = None
        self._stopped_at: float | None = None
        self._completed = False
        self._monitoring = sorted(program.monitoring, key=lambda m: m.at_s)
        self._monitoring_i = 0
        self._last_status: PumpStatus | None = None
        self._stop_request: tuple[str, str] | None = None
        self._header_written = False
        self._journal_error: str | None = None
        self._pending_notes: list[tuple[str, dict[str, Any]]] = []
        self._status_deadline = SharedDeadline()  # the no-status window of each poll

    # -- remote-control hooks (loop-safe, not thread-safe) -------------------------------

    def request_pause(self, reason: str, sender: str) -> None:
        self._request("pause", reason, sender)

    def request_resume(self, reason: str, sender: str) -> None:
        self._request("resume", reason, sender)

    def add_sink(self, sink: RecordSink) -> None:
        """Add a sink before `run()` (e.g. telemetry that needs this controller's hooks)."""
        if self.journal is not None:
            raise RuntimeError("sinks must be added before the run starts")
        self.sinks.append(sink)

    def journal_note(self, note: dict[str, Any]) -> None:
        """Journal a record on behalf of another component (e.g. a remote command received
        by telemetry): `{"type": "command", "op": ..., ...}`. Notes arriving before the
        header are written right after it, so the header always comes first."""
        body = dict(note)
        kind = str(body.pop("type", "command"))
        if self.journal is None or not self._header_written:
            self._pending_notes.append((kind, body))
        else:
            self._write(kind, **body)

    def request_stop(self, reason: str, sender: str) -> None:
        self._request("stop", reason, sender)

    def _request(self, kind: str, reason: str, sender: str) -> None:
        self._requests.append((kind, str(reason), str(sender)))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> RunResult:
        self.journal = Journal.create(self.journal_dir, channel=self.channel, clock=self.clock,
                                      run_id=self.run_id, sinks=self.sinks)
        fault: Breach | None = None
        stop_by: tuple[str, str] | None = None
        try:
            try:
                await self._prepare()
                await self._start()
                await self._supervise()
            except _Stop as s:
                fault = s.breach if s.breach.fault else None
                if not s.breach.fault:
                    self._completed = True
            except _OperatorStop:
                stop_by = self._stop_request or ("stop requested", "operator")
            except PumpError as exc:
                fault = self._alarm(breach_for_error(exc))
            except asyncio.CancelledError:
                stop_by = ("cancelled", "controller")
                await self._finish(None, stop_by)
                raise
            except Exception as exc:  # a bug must still end with the pump stopped
                fault = self._alarm(Breach(BreachKind.CONTROLLER_ERROR,
                                           f"{type(exc).__name__}: {exc}", source="controller"))
            return await self._finish(fault, stop_by)
        finally:
            self._status_deadline.close()
            if self.journal is not None:
                try:
                    self.journal.close()
                except JournalError as exc:
                    log.error("%s: %s", self.channel, exc)

    def _now(self) -> float:
        return self.clock.monotonic()

    def _plan_t(self, now: float | None = None) -> float:
        if self._t_run is None:
            return self.offset_s
        now = self._now() if now is None else now
        paused = self._paused_total
        if self._paused_at is not None:
            paused += now - self._paused_at
        return self.offset_s + (now - self._t_run - paused)

    def _j(self) -> Journal:
        assert self.journal is not None
        return self.journal

    def _write(self, type_: str, /, **fields: Any) -> dict[str, Any]:
        """Journal a record. If the journal fails (disk full, I/O error) the run must still
        end with the pump stopped: remember the failure, let the supervision loop stop the
        run, and keep going without the journal during the stop."""
        try:
            return self._j().write_fields(type_, fields)
        except JournalError as exc:
            if self._journal_error is None:
                self._journal_error = str(exc)
                log.error("%s: %s; stopping the pump", self.channel, exc)
            return {"type": type_, **fields}

    def _check_journal(self) -> None:
        if self._journal_error is not None:
            raise _Stop(Breach(BreachKind.CONTROLLER_ERROR,
                               f"journal failed: {self._journal_error}", source="controller"))

    # -- commands, every one journaled and checked ---------------------------------------

    async def _cmd(self, op: str, args: dict[str, Any], call: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await call()
        except PumpError as exc:
            self._write("command", op=op, args=args, error=str(exc),
                            error_type=type(exc).__name__)
            raise
        self._write("command", op=op, args=args, result=_json_result(result))
        return result

    async def _checked(self, op: str, value: Any, call: Callable[[], Awaitable[T]],
                       args: dict[str, Any] | None = None) -> T:
        """Ask the monitor, send, journal, and let the monitor check the read-back."""
        args = args if args is not None else ({} if value is None else {"value": value})
        breach = self.monitor.check_command(op, value, plan_t=self._plan_t(),
                                            delivered_ml=self._delivered)
        if breach is not None:
            self._raise(breach)
        result = await self._cmd(op, args, call)
        after = self.monitor.note_command(op, result, sent=value, plan_t=self._plan_t(),
                                          delivered_ml=self._delivered)
        if after is not None:
            self._raise(after)
        return result

    def _alarm(self, breach: Breach) -> Breach:
        if self._first_breach_at is None and breach.fault:
            self._first_breach_at = self._now()
        rec = self._write("alarm", **breach.as_record())
        self._alarms.append(rec)
        return breach

    def _raise(self, breach: Breach) -> None:
        raise _Stop(self._alarm(breach))

    # -- phases --------------------------------------------------------------------------

    async def _prepare(self) -> None:
        d = self.driver
        identity: PumpIdentity | None = None
        ident_error: PumpError | None = None
        try:
            identity = await d.identify()
        except PumpError as exc:
            ident_error = exc
        self._write_header(identity)
        self._header_written = True
        for kind, body in self._pending_notes:
            self._write(kind, **body)
        self._pending_notes.clear()
        if ident_error is not None:
            self._write("command", op="identify", args={}, error=str(ident_error),
                            error_type=type(ident_error).__name__)
            raise ident_error
        self._write("command", op="identify", args={}, result=_json_result(identity))
        status = await self._cmd("status", {}, d.status)
        if status.alarm is not None:
            # Power-up `R`, or the watchdog `T` that stopped the pump before a resume.
            await self._cmd("acknowledge_alarm", {"alarm": status.alarm.kind.value},
                            d.acknowledge_alarm)
        if status.state.is_moving:
            self._raise(Breach(BreachKind.UNEXPECTED_STATE,
                               f"pump was already {status.state.value} before the run started",
                               status.state.value, "stopped"))
        if status.state.value not in ("stopped", "alarm"):
            await self._cmd("stop", {}, d.stop)  # reset a paused phase so RUN starts fresh
        await self._handle_requests(started=False)
        if self.watchdog_s is not None:
            await self._checked("set_watchdog", self.watchdog_s,
                                lambda: d.set_watchdog(int(self.watchdog_s or 0)))
        dia = self.program.syringe.inner_diameter_mm
        await self._checked("set_diameter", dia, lambda: d.set_diameter(dia))
        await self._checked("set_direction", Direction.INFUSE,
                            lambda: d.set_direction(Direction.INFUSE), {"value": "infuse"})
        await self._checked("clear_counters", None, d.clear_counters,
                            {"infused_before_ml": status.infused_ml,
                             "withdrawn_before_ml": status.withdrawn_ml})
        if self.volume_sensor is not None:
            await self.volume_sensor.zero()
        cleared = await self._cmd("status", {}, d.status)
        if cleared.infused_ml > counter_quantum_ml(0.0):
            self._raise(Breach(BreachKind.READBACK_MISMATCH,
                               f"infused counter reads {cleared.infused_ml} mL after clearing",
                               cleared.infused_ml, 0.0, source="pump"))

    def _write_header(self, identity: PumpIdentity | None) -> None:
        p = self.program
        extra: dict[str, Any] = {
            "poll_s": self.poll_s, "watchdog_s": self.watchdog_s,
            "tolerances": self.monitor.tolerances.__dict__,
            "pump_alarm_at_open": _alarm_kind(getattr(self.driver, "alarm_at_open", None)),
            "checked_total_ml": self.monitor.cap_ml,
            "checked_total_dose_mg": self.monitor.cap_dose_mg,
        }
        if self.resume is not None:
            r = self.resume
            extra.update({"resume_of": r.resume_of, "baseline_ml": r.baseline_ml,
                          "plan_offset_s": r.plan_offset_s,
                          "reconciled": {"journal_ml": r.journal_ml, "pump_ml": r.pump_ml}})
        extra.update(self.header_extra)
        self._write(
            "header", plan=p.plan, program=p.model_dump(mode="json"),
            library_name=p.library_name, library_version=p.library_version,
            pump=asdict(identity) if identity else None, pump_url=self.pump_url,
            overrides=[o.model_dump(mode="json") for o in p.soft_limit_overrides],
            operator=self.operator, host=socket.gethostname(), software_version=__version__,
            drug=p.drug, concentration_mg_per_ml=p.concentration_mg_per_ml, weight_kg=p.weight_kg,
            total_volume_ml=p.total_volume_ml, total_dose_mg=p.total_dose_mg,
            duration_s=p.duration_s, **extra)

    def _segment_at(self, plan_t: float) -> int:
        idx = 0
        for i, s in enumerate(self.program.segments):
            if s.start_s <= plan_t + 1e-9:
                idx = i
        return idx

    def _segment_record(self, i: int, seg: Segment) -> None:
        self._write("segment", index=i, rate_ml_h=seg.rate_ml_h, start_s=seg.start_s,
                        duration_s=seg.duration_s, volume_ml=seg.volume_ml)

    async def _enter_segment(self, seg: Segment) -> None:
        self._segment_record(self._seg_index, seg)
        rate = seg.rate_ml_h
        await self._checked("set_rate", rate, lambda: self.driver.set_rate(rate))

    async def _start(self) -> None:
        d = self.driver
        self._check_journal()  # never start a pump whose run cannot be recorded
        if not self.program.segments:
            self._raise(Breach(BreachKind.COMMAND_REFUSED, "program has no segments to run",
                               source="controller"))
        self._seg_index = self._segment_at(self.offset_s)
        seg = self.program.segments[self._seg_index]
        await self._checked("set_rate", seg.rate_ml_h, lambda: d.set_rate(seg.rate_ml_h))
        target = min(self.program.total_volume_ml, self.monitor.cap_ml)
        vtbi = floor_to_pump_format(target - self.baseline_ml)
        read = await self._checked("set_volume_limit", vtbi, lambda: d.set_volume_limit(vtbi))
        self._vtbi_total = self.baseline_ml + read
        await self._handle_requests(started=False)
        self._segment_record(self._seg_index, seg)
        self._write("state", state="started", reason="resume" if self.resume else "plan start",
                        sender="controller")
        breach = self.monitor.check_command("run", None, plan_t=self.offset_s,
                                            delivered_ml=self._delivered)
        if breach is not None:
            self._raise(breach)
        self._t_run = self._now()
        await self._cmd("run", {}, d.run)
        self.monitor.note_command("run")

    async def _supervise(self) -> None:
        next_poll = (self._t_run or self._now()) + self.poll_s
        segs = self.program.segments
        while True:
            self._check_journal()
            if self._requests:
                await self._handle_requests(started=True)
            now = self._now()
            if self._paused_at is None:
                plan_t = self._plan_t(now)
                if (self._seg_index + 1 < len(segs)
                        and plan_t >= segs[self._seg_index + 1].start_s - _DUE_S):
                    while (self._seg_index + 1 < len(segs)
                           and plan_t >= segs[self._seg_index + 1].start_s - _DUE_S):
                        self._seg_index += 1
                        await self._enter_segment(segs[self._seg_index])
                    now = self._now()  # the rate changes took time
                self._emit_monitoring(plan_t)
            if now >= next_poll - _DUE_S:
                self._lateness.append(now - next_poll)
                while next_poll <= now + _DUE_S:
                    next_poll += self.poll_s
                if await self._poll(now):
                    return
            deadline = next_poll
            if self._paused_at is None and self._seg_index + 1 < len(segs):
                boundary = self._mono_for_plan_t(segs[self._seg_index + 1].start_s)
                deadline = min(deadline, boundary)
            await self._wait(deadline - self._now())

    def _mono_for_plan_t(self, plan_t: float) -> float:
        assert self._t_run is not None
        return self._t_run + self._paused_total + (plan_t - self.offset_s)

    async def _wait(self, seconds: float) -> None:
        """Sleep until the next deadline or until a request arrives, whichever is first.

        One future and one timer per wait: this is the controller's hot path, and in
        virtual time it runs thousands of times a second.
        """
        if self._requests or seconds <= _DUE_S:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, waiter)
        self._waiter = waiter
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _emit_monitoring(self, plan_t: float) -> None:
        while self._monitoring_i < len(self._monitoring) and \
                self._monitoring[self._monitoring_i].at_s <= plan_t:
            m = self._monitoring[self._monitoring_i]
            self._monitoring_i += 1
            if m.at_s < self.offset_s:  # already announced by the run we resume
                continue
            self._write("monitoring", at_s=m.at_s, kind=m.kind, label=m.label)


    async def _handle_requests(self, *, started: bool) -> None:
        """Act on queued requests in order; a stop is acted on at once, even before start."""
        if any(k == "stop" for k, _, _ in self._requests):
            kind, reason, sender = next(r for r in self._requests if r[0] == "stop")
            self._requests.clear()
            self._stop_request = (reason, sender)
            if sender.startswith(REMOTE_PREFIXES):
                rec = self._write("alarm", kind="remote_stop", source="operator",
                                      message=f"stop requested by {sender}: {reason}",
                                      value=sender, limit=None)
                self._alarms.append(rec)
            raise _OperatorStop()
        if not started:
            return  # pause/resume wait until the pump is running
        while self._requests:
            kind, reason, sender = self._requests.pop(0)
            if kind == "pause" and self._paused_at is None:
                await self._checked("pause", None, self.driver.pause)
                self._paused_at = self._now()
                self._write("state", state="paused", reason=reason, sender=sender)
            elif kind == "resume" and self._paused_at is not None:
                await self._checked("run", None, self.driver.run)
                self._paused_total += self._now() - self._paused_at
                self._paused_at = None
                self._write("state", state="resumed", reason=reason, sender=sender)

    async def _poll(self, now: float) -> bool:
        """Take one status sample (requested at clock time `now`) and act on it; True when
        the run is complete."""
        try:
            # asyncio.timeout(no_status_s), with the timer shared between polls
            async with asyncio.timeout(None) as scope:
                self._status_deadline.enter(scope, now + self.monitor.tolerances.no_status_s)
                try:
                    st = await self.driver.status()
                finally:
                    self._status_deadline.leave()
        except PumpAlarmError as exc:
            self._write("command", op="status", args={}, error=str(exc),
                            error_type=type(exc).__name__)
            self._raise(breach_for_error(exc))
        except (PumpError, TimeoutError) as exc:
            self._write("command", op="status", args={}, error=str(exc) or "timed out",
                            error_type=type(exc).__name__)
            self.monitor.note_status_failure(now)
            silent = self.monitor.check_silence(self._now())
            if silent is not None:
                self._raise(silent)
            return False
        measured = await self._read_sensor()
        now = self._now()
        self._last_status = st
        delivered = self.baseline_ml + st.infused_ml
        # A counter that went backwards (power reset) must not erase what was delivered.
        self._delivered = max(self._delivered, delivered)
        plan_t = self._plan_t(now)
        breaches = self.monitor.check_sample(st, delivered_ml=delivered, plan_t=plan_t, now=now,
                                             measured_ml=measured)
        self._write_sample(st, delivered, plan_t, breaches)
        if breaches:
            for b in breaches:  # most serious first; the run ends on the first
                self._alarm(b)
            raise _Stop(breaches[0])
        if not st.state.is_moving and self._paused_at is None and \
                self.monitor.is_complete(delivered):
            self._completed = True
            return True
        end = self.monitor.plan.end_s + self.monitor.end_grace_s
        if plan_t > end and self._paused_at is None:
            self._raise(Breach(BreachKind.UNDER_INFUSION,
                               f"plan ended {plan_t - self.monitor.plan.end_s:.0f} s ago with "
                               f"{delivered:.4g} of {self.monitor.cap_ml:.4g} mL delivered",
                               delivered, self.monitor.cap_ml))
        return False

    async def _read_sensor(self) -> float | None:
        if self.volume_sensor is None:
            return None
        try:
            value = self.baseline_ml + await self.volume_sensor.read_ml()
        except Exception as exc:  # a sensor we rely on has failed: that is doubt, so stop
            self._raise(Breach(BreachKind.SENSOR_ERROR, f"volume sensor failed: {exc}",
                               source="controller"))
        if not math.isfinite(value):
            self._raise(Breach(BreachKind.SENSOR_ERROR, f"volume sensor read {value}",
                               source="controller"))
        self._measured = value
        return value

    def _write_sample(self, st: PumpStatus, delivered: float, plan_t: float,
                      breaches: list[Breach]) -> None:
        p = self.program
        dose = delivered * p.concentration_mg_per_ml
        remaining_s = max(0.0, self.monitor.plan.end_s - plan_t)
        alarm = st.alarm.kind.value if st.alarm else (breaches[0].kind.value if breaches else None)
        self._write(
            "sample", state=st.state.value, rate_ml_h=st.rate_ml_h, infused_ml=round(delivered, 6),
            withdrawn_ml=st.withdrawn_ml, counter_ml=st.infused_ml,
            measured_ml=None if self._measured is None else round(self._measured, 6),
            planned_ml=round(self.monitor.plan.volume_at(plan_t), 6),
            vtbi_ml=self._vtbi_total,
            remaining_ml=round(max(0.0, self.monitor.cap_ml - delivered), 6),
            remaining_s=round(remaining_s, 3), plan_t_s=round(plan_t, 3),
            dose_mg=round(dose, 6),
            dose_mg_per_kg=round(dose / p.weight_kg, 6) if p.weight_kg else None,
            dose_rate_mg_h=round(st.rate_ml_h * p.concentration_mg_per_ml, 6)
            if st.state.is_moving else 0.0,
            segment=self._seg_index, paused=self._paused_at is not None,
            alarm=alarm)

    # -- the end -------------------------------------------------------------------------

    async def _finish(self, fault: Breach | None, stop_by: tuple[str, str] | None) -> RunResult:
        if fault is not None:
            reason, sender = f"{fault.kind.value}: {fault.message}", "safety"
        elif stop_by is not None:
            reason, sender = stop_by
        else:
            reason, sender = "planned total delivered", "controller"
        confirmed = await self._stop_pump(reason, sender)
        final = await self._final_readback()
        if fault is None and stop_by is None and self._completed:
            shortfall = self.monitor.cap_ml - final
            if shortfall > self.monitor.volume_tolerance(self.monitor.cap_ml):
                cap = self.monitor.cap_ml
                fault = self._alarm(Breach(BreachKind.UNDER_INFUSION,
                                           f"run ended with {final:.4g} of {cap:.4g} mL",
                                           final, cap))
        if fault is not None:
            outcome = "faulted"
        elif stop_by is not None or not self._completed:
            outcome = "aborted"
        else:
            outcome = "completed"
        if self.watchdog_s and confirmed:
            # The pump is stopped; if disarming fails, a watchdog alarm later is harmless.
            with contextlib.suppress(PumpError):
                await self._cmd("set_watchdog", {"value": 0}, lambda: self.driver.set_watchdog(0))
        duration = (self._now() - self._t_run) if self._t_run is not None else 0.0
        conc = self.program.concentration_mg_per_ml
        self._write("state", state=outcome, reason=reason, sender=sender)
        self._write(
            "summary", outcome=outcome, planned_volume_ml=self.monitor.cap_ml,
            delivered_volume_ml=round(final, 6), planned_dose_mg=self.program.total_dose_mg,
            delivered_dose_mg=round(final * conc, 6), duration_s=round(duration, 3),
            alarms=len(self._alarms), stop_confirmed=confirmed, reason=reason,
            measured_volume_ml=None if self._measured is None else round(self._measured, 6),
            baseline_ml=self.baseline_ml)
        b2s = None
        if self._first_breach_at is not None and self._stopped_at is not None:
            b2s = self._stopped_at - self._first_breach_at
        return RunResult(
            run_id=self.run_id, channel=self.channel, outcome=outcome,
            planned_volume_ml=self.monitor.cap_ml, delivered_volume_ml=final,
            planned_dose_mg=self.program.total_dose_mg, delivered_dose_mg=final * conc,
            duration_s=duration, journal_path=self._j().path, stop_confirmed=confirmed,
            alarms=list(self._alarms), poll_lateness_s=list(self._lateness),
            breach_to_stop_s=b2s, reason=reason)

    async def _stop_pump(self, reason: str, sender: str) -> bool:
        """Send stop until a status read confirms the pump is not moving."""
        self._write("state", state="stopping", reason=reason, sender=sender)
        for _ in range(self.stop_attempts):
            try:
                async with asyncio.timeout(self.stop_timeout_s):
                    await self._cmd("stop", {}, self.driver.stop)
            except Exception:  # whatever went wrong, confirm below and retry
                pass  # (a pump in alarm refuses the command but is already stopped)
            try:
                async with asyncio.timeout(self.stop_timeout_s):
                    st = await self._cmd("status", {}, self.driver.status)
            except Exception:
                continue
            if not st.state.is_moving:
                self._last_status = st
                self._stopped_at = self._now()
                self.monitor.note_command("stop")
                self._write("state", state="stopped", reason=reason, sender=sender)
                return True
        self._alarm(Breach(BreachKind.PUMP_ERROR,
                           f"stop not confirmed after {self.stop_attempts} attempts; "
                           "relying on the pump's own volume limit and watchdog",
                           source="controller"))
        return False

    async def _final_readback(self) -> float:
        """Delivered volume at the end: the pump's counter, unless it went backwards (reset)."""
        st = self._last_status
        if st is not None:
            counter = self.baseline_ml + st.infused_ml
            if counter >= self._delivered - counter_quantum_ml(self._delivered):
                self._delivered = max(self._delivered, counter)
        return self._delivered


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _alarm_kind(alarm: object) -> str | None:
    """What the pump was showing when the driver took over (e.g. the watchdog's `T`)."""
    kind = getattr(alarm, "kind", None)
    return None if kind is None else str(getattr(kind, "value", kind))


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _json_result(value: object) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, PumpStatus):
        return {"state": value.state.value, "rate_ml_h": value.rate_ml_h,
                "infused_ml": value.infused_ml, "withdrawn_ml": value.withdrawn_ml,
                "alarm": value.alarm.kind.value if value.alarm else None}
    if hasattr(value, "value"):
        return value.value
    if hasattr(value, "__dataclass_fields__"):
        return {k: _json_result(getattr(value, k)) for k in value.__dataclass_fields__}
    return str(value)
