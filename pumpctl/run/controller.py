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

This module is the run's timeline and remote-control hooks; the parts it calls are its
siblings in `pumpctl.run`: `commands`, `prepare`, `records`, `stop` and `types` (the result
types are re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pumpctl.clock import Clock, LoopClock, SharedDeadline
from pumpctl.drivers.base import PumpAlarmError, PumpDriver, PumpError, PumpIdentity, PumpStatus
from pumpctl.drivers.sensors import VolumeSensor
from pumpctl.errors import UsageError
from pumpctl.journal import Journal, JournalError, RecordSink, new_run_id
from pumpctl.plan.program import RateProgram, Segment
from pumpctl.run.commands import BreachStop, RunCommands
from pumpctl.run.prepare import prepare_pump
from pumpctl.run.records import SampleFields, header_fields, json_result, summary_fields, whoami
from pumpctl.run.stop import final_delivered, stop_until_confirmed, unconfirmed_stop
from pumpctl.run.types import (
    OUTCOMES,
    REMOTE_PREFIXES,
    ResumePoint,
    RunResult,
    breach_for_error,
    floor_to_pump_format,
)
from pumpctl.safety import Breach, BreachKind, SafetyMonitor, SafetyTolerances

__all__ = ["OUTCOMES", "REMOTE_PREFIXES", "InfusionController", "ResumePoint", "RunResult",
           "breach_for_error", "floor_to_pump_format"]

log = logging.getLogger(__name__)

# Deadlines this close are due now. The event loop runs timers within its clock resolution
# early without advancing time, so waiting for a remainder that small would spin forever on
# a virtual-time loop.
_DUE_S = 1e-6


class _OperatorStop(Exception):
    pass


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
        self.operator = operator or whoami()
        self.header_extra = dict(header_extra or {})
        self.stop_timeout_s = stop_timeout_s
        self.stop_attempts = max(1, stop_attempts)
        self.volume_sensor = volume_sensor
        self._measured: float | None = None
        self.baseline_ml = resume.baseline_ml if resume else 0.0
        self.offset_s = resume.plan_offset_s if resume else 0.0
        self._commands = RunCommands(channel=channel, clock=self.clock, monitor=self.monitor,
                                     plan_t=self._plan_t, delivered_ml=lambda: self._delivered)
        self._samples = SampleFields(program, self.monitor)
        self._requests: list[tuple[str, str, str]] = []
        self._waiter: asyncio.Future[None] | None = None
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._t_run: float | None = None
        self._seg_index = 0
        self._delivered = self.baseline_ml
        self._vtbi_total: float | None = None
        self._lateness: list[float] = []
        self._stopped_at: float | None = None
        self._completed = False
        self._monitoring = sorted(program.monitoring, key=lambda m: m.at_s)
        self._monitoring_i = 0
        self._last_status: PumpStatus | None = None
        self._stop_request: tuple[str, str] | None = None
        self._header_written = False
        self._pending_notes: list[tuple[str, dict[str, Any]]] = []
        self._status_deadline = SharedDeadline()  # the no-status window of each poll

    @property
    def journal(self) -> Journal | None:
        """The run's journal, once `run()` has created it."""
        return self._commands.journal

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
            self._commands.write(kind, **body)

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
        self._commands.attach(Journal.create(self.journal_dir, channel=self.channel,
                                             clock=self.clock, run_id=self.run_id,
                                             sinks=self.sinks))
        fault: Breach | None = None
        stop_by: tuple[str, str] | None = None
        try:
            try:
                assert self._commands.journal is not None
                with self._commands.journal.batched_sync():  # nothing in it starts the pump
                    await self._prepare()
                await self._start()
                await self._supervise()
            except BreachStop as s:
                fault = s.breach if s.breach.fault else None
                if not s.breach.fault:
                    self._completed = True
            except _OperatorStop:
                stop_by = self._stop_request or ("stop requested", "operator")
            except PumpError as exc:
                fault = self._commands.alarm(breach_for_error(exc))
            except asyncio.CancelledError:
                stop_by = ("cancelled", "controller")
                await self._finish(None, stop_by)
                raise
            except Exception as exc:  # a bug must still end with the pump stopped
                fault = self._commands.alarm(Breach(BreachKind.CONTROLLER_ERROR,
                                                    f"{type(exc).__name__}: {exc}",
                                                    source="controller"))
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

    # -- phases --------------------------------------------------------------------------

    async def _prepare(self) -> None:
        c = self._commands
        identity: PumpIdentity | None = None
        ident_error: PumpError | None = None
        try:
            identity = await self.driver.identify()
        except PumpError as exc:
            ident_error = exc
        c.write_fields("header", header_fields(
            self.program, self.monitor, identity, pump_url=self.pump_url,
            operator=self.operator, poll_s=self.poll_s, watchdog_s=self.watchdog_s,
            alarm_at_open=getattr(self.driver, "alarm_at_open", None), resume=self.resume,
            extra=self.header_extra))
        self._header_written = True
        for kind, body in self._pending_notes:
            c.write(kind, **body)
        self._pending_notes.clear()
        if ident_error is not None:
            c.write("command", op="identify", args={}, error=str(ident_error),
                    error_type=type(ident_error).__name__)
            raise ident_error
        c.write("command", op="identify", args={}, result=json_result(identity))
        await prepare_pump(c, self.driver, watchdog_s=self.watchdog_s,
                           diameter_mm=self.program.syringe.inner_diameter_mm,
                           volume_sensor=self.volume_sensor,
                           handle_stop=lambda: self._handle_requests(started=False))

    def _segment_at(self, plan_t: float) -> int:
        idx = 0
        for i, s in enumerate(self.program.segments):
            if s.start_s <= plan_t + 1e-9:
                idx = i
        return idx

    def _segment_record(self, i: int, seg: Segment) -> None:
        self._commands.write("segment", index=i, rate_ml_h=seg.rate_ml_h, start_s=seg.start_s,
                             duration_s=seg.duration_s, volume_ml=seg.volume_ml)

    async def _enter_segment(self, seg: Segment) -> None:
        self._segment_record(self._seg_index, seg)
        rate = seg.rate_ml_h
        await self._commands.checked("set_rate", rate, lambda: self.driver.set_rate(rate))

    async def _start(self) -> None:
        d = self.driver
        c = self._commands
        c.check_journal()  # never start a pump whose run cannot be recorded
        if not self.program.segments:
            c.fail(Breach(BreachKind.COMMAND_REFUSED, "program has no segments to run",
                          source="controller"))
        self._seg_index = self._segment_at(self.offset_s)
        seg = self.program.segments[self._seg_index]
        await c.checked("set_rate", seg.rate_ml_h, lambda: d.set_rate(seg.rate_ml_h))
        target = min(self.program.total_volume_ml, self.monitor.cap_ml)
        vtbi = floor_to_pump_format(target - self.baseline_ml)
        read = await c.checked("set_volume_limit", vtbi, lambda: d.set_volume_limit(vtbi))
        self._vtbi_total = self.baseline_ml + read
        await self._handle_requests(started=False)
        self._segment_record(self._seg_index, seg)
        c.write("state", state="started", reason="resume" if self.resume else "plan start",
                sender="controller")
        breach = self.monitor.check_command("run", None, plan_t=self.offset_s,
                                            delivered_ml=self._delivered)
        if breach is not None:
            c.fail(breach)
        self._t_run = self._now()
        await c.cmd("run", {}, d.run)
        self.monitor.note_command("run")

    async def _supervise(self) -> None:
        next_poll = (self._t_run or self._now()) + self.poll_s
        segs = self.program.segments
        while True:
            self._commands.check_journal()
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
            self._commands.write("monitoring", at_s=m.at_s, kind=m.kind, label=m.label)

    async def _handle_requests(self, *, started: bool) -> None:
        """Act on queued requests in order; a stop is acted on at once, even before start."""
        c = self._commands
        if any(k == "stop" for k, _, _ in self._requests):
            kind, reason, sender = next(r for r in self._requests if r[0] == "stop")
            self._requests.clear()
            self._stop_request = (reason, sender)
            if sender.startswith(REMOTE_PREFIXES):
                rec = c.write("alarm", kind="remote_stop", source="operator",
                              message=f"stop requested by {sender}: {reason}",
                              value=sender, limit=None)
                c.alarms.append(rec)
            raise _OperatorStop()
        if not started:
            return  # pause/resume wait until the pump is running
        while self._requests:
            kind, reason, sender = self._requests.pop(0)
            if kind == "pause" and self._paused_at is None:
                await c.checked("pause", None, self.driver.pause)
                self._paused_at = self._now()
                c.write("state", state="paused", reason=reason, sender=sender)
            elif kind == "resume" and self._paused_at is not None:
                await c.checked("run", None, self.driver.run)
                self._paused_total += self._now() - self._paused_at
                self._paused_at = None
                c.write("state", state="resumed", reason=reason, sender=sender)

    async def _poll(self, now: float) -> bool:
        """Take one status sample (requested at clock time `now`) and act on it; True when
        the run is complete."""
        c = self._commands
        try:
            # asyncio.timeout(no_status_s), with the timer shared between polls
            async with asyncio.timeout(None) as scope:
                self._status_deadline.enter(scope, now + self.monitor.tolerances.no_status_s)
                try:
                    st = await self.driver.status()
                finally:
                    self._status_deadline.leave()
        except PumpAlarmError as exc:
            c.write("command", op="status", args={}, error=str(exc),
                    error_type=type(exc).__name__)
            c.fail(breach_for_error(exc))
        except (PumpError, TimeoutError) as exc:
            c.write("command", op="status", args={}, error=str(exc) or "timed out",
                    error_type=type(exc).__name__)
            self.monitor.note_status_failure(now)
            silent = self.monitor.check_silence(self._now())
            if silent is not None:
                c.fail(silent)
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
        c.write_sample(self._samples.values(st, delivered, plan_t, self._measured,
                                            self._vtbi_total, self._seg_index,
                                            self._paused_at is not None, breaches))
        if breaches:
            for b in breaches:  # most serious first; the run ends on the first
                c.alarm(b)
            raise BreachStop(breaches[0])
        if not st.state.is_moving and self._paused_at is None and \
                self.monitor.is_complete(delivered):
            self._completed = True
            return True
        end = self.monitor.plan.end_s + self.monitor.end_grace_s
        if plan_t > end and self._paused_at is None:
            c.fail(Breach(BreachKind.UNDER_INFUSION,
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
            self._commands.fail(Breach(BreachKind.SENSOR_ERROR, f"volume sensor failed: {exc}",
                                       source="controller"))
        if not math.isfinite(value):
            self._commands.fail(Breach(BreachKind.SENSOR_ERROR, f"volume sensor read {value}",
                                       source="controller"))
        self._measured = value
        return value

    # -- the end -------------------------------------------------------------------------

    async def _finish(self, fault: Breach | None, stop_by: tuple[str, str] | None) -> RunResult:
        c = self._commands
        if fault is not None:
            reason, sender = f"{fault.kind.value}: {fault.message}", "safety"
        elif stop_by is not None:
            reason, sender = stop_by
        else:
            reason, sender = "planned total delivered", "controller"
        confirmed = await self._stop_pump(reason, sender)
        final = self._delivered = final_delivered(self._last_status, baseline_ml=self.baseline_ml,
                                                  delivered_ml=self._delivered)
        if fault is None and stop_by is None and self._completed:
            shortfall = self.monitor.cap_ml - final
            if shortfall > self.monitor.volume_tolerance(self.monitor.cap_ml):
                cap = self.monitor.cap_ml
                fault = c.alarm(Breach(BreachKind.UNDER_INFUSION,
                                       f"run ended with {final:.4g} of {cap:.4g} mL", final, cap))
        if fault is not None:
            outcome = "faulted"
        elif stop_by is not None or not self._completed:
            outcome = "aborted"
        else:
            outcome = "completed"
        if self.watchdog_s and confirmed:
            # The pump is stopped; if disarming fails, a watchdog alarm later is harmless.
            with contextlib.suppress(PumpError):
                await c.cmd("set_watchdog", {"value": 0}, lambda: self.driver.set_watchdog(0))
        duration = (self._now() - self._t_run) if self._t_run is not None else 0.0
        conc = self.program.concentration_mg_per_ml
        c.write("state", state=outcome, reason=reason, sender=sender)
        c.write_fields("summary", summary_fields(
            outcome=outcome, planned_volume_ml=self.monitor.cap_ml, delivered_ml=final,
            planned_dose_mg=self.program.total_dose_mg, concentration_mg_per_ml=conc,
            duration_s=duration, alarms=len(c.alarms), stop_confirmed=confirmed, reason=reason,
            measured_ml=self._measured, baseline_ml=self.baseline_ml))
        b2s = None
        if c.first_breach_at is not None and self._stopped_at is not None:
            b2s = self._stopped_at - c.first_breach_at
        assert self.journal is not None
        return RunResult(
            run_id=self.run_id, channel=self.channel, outcome=outcome,
            planned_volume_ml=self.monitor.cap_ml, delivered_volume_ml=final,
            planned_dose_mg=self.program.total_dose_mg, delivered_dose_mg=final * conc,
            duration_s=duration, journal_path=self.journal.path, stop_confirmed=confirmed,
            alarms=list(c.alarms), poll_lateness_s=list(self._lateness),
            breach_to_stop_s=b2s, reason=reason)

    async def _stop_pump(self, reason: str, sender: str) -> bool:
        """Send stop until a status read confirms the pump is not moving."""
        c = self._commands
        c.write("state", state="stopping", reason=reason, sender=sender)
        st = await stop_until_confirmed(c, self.driver, attempts=self.stop_attempts,
                                        timeout_s=self.stop_timeout_s)
        if st is None:
            c.alarm(unconfirmed_stop(self.stop_attempts))
            return False
        self._last_status = st
        self._stopped_at = self._now()
        self.monitor.note_command("stop")
        c.write("state", state="stopped", reason=reason, sender=sender)
        return True


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
