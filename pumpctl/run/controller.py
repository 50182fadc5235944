"""InfusionController: deliver one validated `RateProgram` through one `PumpDriver`.

The controller follows the compiled `segments` (rate changes at each boundary) on a `Clock`,
polls the pump, and asks the independent `SafetyMonitor` about every command before it is sent
and every status sample after it arrives. Any breach, pump error, operator stop, cancellation
or bug ends the same way: stop the pump, confirm it stopped, read back what was delivered,
journal it. Where the pump has a volume-to-dispense (its driver's capabilities say), it is set
to the remaining planned volume, so the hardware stops at the planned total even if this
process dies; where it has none, the controller stops it at the end of the program itself.
With the pump's own watchdog armed, the pump stops if the controller dies.

Plan time runs only while the pump is meant to infuse: it starts when `run` is sent and is
frozen while paused, so a pause shifts the rest of the schedule instead of skipping it.

This module is the run's timeline and remote-control hooks; the parts it calls are its
siblings in `pumpctl.run`: `commands`, `prepare`, `planclock`, `records`, `requests`, `stop`
and `types` (the settings and result types are re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pumpctl.clock import Clock, LoopClock
from pumpctl.drivers.base import PumpDriver, PumpError, PumpStatus, RunOutline
from pumpctl.drivers.sensors import VolumeSensor
from pumpctl.journal import Journal, JournalError, RecordSink, new_run_id
from pumpctl.plan.program import RateProgram, Segment
from pumpctl.run.commands import BreachStop, RunCommands, retries_of
from pumpctl.run.pausing import VolumeCap, pause_pump, resume_pump
from pumpctl.run.planclock import PlanClock
from pumpctl.run.prepare import identify_and_record, prepare_pump
from pumpctl.run.records import SampleFields, header_fields, summary_fields, whoami
from pumpctl.run.requests import RunRequests, StopRequested
from pumpctl.run.sampling import Sampler
from pumpctl.run.schedule import Schedule
from pumpctl.run.stop import (
    completion_breach,
    end_after_bug,
    final_delivered,
    stop_until_confirmed,
    unconfirmed_stop,
)
from pumpctl.run.types import (
    OUTCOMES,
    REMOTE_PREFIXES,
    ResumePoint,
    RunResult,
    RunSettings,
    breach_for_error,
)
from pumpctl.safety import Breach, BreachKind, SafetyMonitor

__all__ = ["OUTCOMES", "REMOTE_PREFIXES", "InfusionController", "ResumePoint", "RunResult",
           "RunSettings", "breach_for_error"]

log = logging.getLogger(__name__)

# Deadlines this close are due now. The event loop runs timers within its clock resolution
# early without advancing time, so waiting for a remainder that small would spin forever on
# a virtual-time loop.
_DUE_S = 1e-6


class InfusionController:
    """Runs one program on one pump; `await run()` returns when the pump is stopped."""

    def __init__(self, driver: PumpDriver, program: RateProgram,
                 settings: RunSettings | None = None, *, clock: Clock | None = None,
                 sinks: Sequence[RecordSink] = (), resume: ResumePoint | None = None,
                 volume_sensor: VolumeSensor | None = None) -> None:
        cfg = settings or RunSettings()
        self.driver = driver
        self.program = program
        self.settings = cfg
        self.clock: Clock = clock or LoopClock()
        self.channel = cfg.channel
        self.poll_s = float(cfg.poll_s)
        self.monitor = SafetyMonitor(program, cfg.safety_tolerances(), driver.capabilities)
        # No volume to dispense: nothing in the pump stops it at the total, so we do.
        self._self_stop = driver.capabilities.volume_cap is None
        self.sinks = list(sinks)
        self.resume = resume
        self.run_id = cfg.run_id or new_run_id(cfg.channel)
        self.operator = cfg.operator or whoami()
        self.volume_sensor = volume_sensor
        self.baseline_ml = resume.baseline_ml if resume else 0.0
        self._plan = PlanClock(self.clock, resume.plan_offset_s if resume else 0.0)
        self._requests = RunRequests()
        self._commands = RunCommands(channel=cfg.channel, clock=self.clock, monitor=self.monitor,
                                     plan_t=self._plan.at, delivered_ml=lambda: self._delivered,
                                     retries=lambda: retries_of(self.driver))
        self._samples = SampleFields(program, self.monitor)
        self._schedule = Schedule(program, self._plan.offset_s)
        self._delivered = self.baseline_ml
        self._cap = VolumeCap(self._commands, driver,
                              min(program.total_volume_ml, self.monitor.cap_ml))
        self._lateness: list[float] = []
        self._stopped_at: float | None = None
        self._completed = False
        self._last_status: PumpStatus | None = None
        self._unconfirmed: Breach | None = None  # the alarm of a stop the pump never confirmed
        self._sampler = Sampler(self._commands, self.monitor, driver, self.clock,
                                sensor=volume_sensor, baseline_ml=self.baseline_ml)

    @property
    def journal(self) -> Journal | None:
        """The run's journal, once `run()` has created it."""
        return self._commands.journal

    # -- remote-control hooks (loop-safe, not thread-safe) -------------------------------

    def request_pause(self, reason: str, sender: str) -> None:
        self._requests.add("pause", reason, sender)

    def request_resume(self, reason: str, sender: str) -> None:
        self._requests.add("resume", reason, sender)

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
        self._commands.note(str(body.pop("type", "command")), body)

    def request_stop(self, reason: str, sender: str) -> None:
        self._requests.add("stop", reason, sender)

    @property
    def paused(self) -> bool:
        return self._plan.paused

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> RunResult:
        self._commands.attach(Journal.create(Path(self.settings.journal_dir), channel=self.channel,
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
            except StopRequested:
                stop_by = self._requests.stop_by or ("stop requested", "operator")
            except PumpError as exc:
                fault = self._commands.alarm(breach_for_error(exc))
            except asyncio.CancelledError:
                stop_by = ("cancelled", "controller")
                await self._end(None, stop_by)
                raise
            except Exception as exc:  # a bug must still end with the pump stopped
                fault = self._commands.alarm(Breach(BreachKind.CONTROLLER_ERROR,
                                                    f"{type(exc).__name__}: {exc}",
                                                    source="controller"))
            return await self._end(fault, stop_by)
        finally:
            self._sampler.close()
            if self.journal is not None:
                try:
                    self.journal.close()
                except JournalError as exc:
                    log.error("%s: %s", self.channel, exc)

    def _now(self) -> float:
        return self.clock.monotonic()

    # -- phases --------------------------------------------------------------------------

    async def _prepare(self) -> None:
        c = self._commands
        cfg = self.settings
        await identify_and_record(c, self.driver, lambda identity: header_fields(
            self.program, self.monitor, identity, pump_url=cfg.pump_url,
            operator=self.operator, poll_s=self.poll_s, watchdog_s=cfg.watchdog_s,
            alarm_at_open=self.driver.alarm_at_open, resume=self.resume,
            extra=dict(cfg.header_extra)))
        outline = RunOutline(tuple(s.rate_ml_h for s in self.program.segments),
                             self._cap.target_ml - self.baseline_ml)
        await prepare_pump(c, self.driver, watchdog_s=cfg.watchdog_s,
                           diameter_mm=self.program.syringe.inner_diameter_mm,
                           volume_sensor=self.volume_sensor, outline=outline,
                           handle_stop=lambda: self._handle_requests(started=False))

    async def _rearm(self, infused_ml: float) -> None:
        """After a stop that stood for a pause: the cap again, for what remains."""
        self._delivered = max(self._delivered, self.baseline_ml + infused_ml)
        await self._cap.set_for(self._delivered)

    def _segment_record(self, seg: Segment) -> None:
        self._commands.write("segment", index=self._schedule.index, rate_ml_h=seg.rate_ml_h,
                             start_s=seg.start_s, duration_s=seg.duration_s,
                             volume_ml=seg.volume_ml)

    async def _enter_segment(self, seg: Segment) -> None:
        self._segment_record(seg)
        rate = seg.rate_ml_h
        await self._commands.checked("set_rate", rate, lambda: self.driver.set_rate(rate))

    async def _start(self) -> None:
        d = self.driver
        c = self._commands
        c.check_journal()  # never start a pump whose run cannot be recorded
        if not self.program.segments:
            c.fail(Breach(BreachKind.COMMAND_REFUSED, "program has no segments to run",
                          source="controller"))
        offset = self._plan.offset_s
        seg = self._schedule.start()
        await c.checked("set_rate", seg.rate_ml_h, lambda: d.set_rate(seg.rate_ml_h))
        await self._cap.set_for(self.baseline_ml)
        await self._handle_requests(started=False)
        self._segment_record(seg)
        c.write("state", state="started", reason="resume" if self.resume else "plan start",
                sender="controller")
        breach = self.monitor.check_command("run", None, plan_t=offset,
                                            delivered_ml=self._delivered)
        if breach is not None:
            c.fail(breach)
        self._plan.start(self._now())
        await c.cmd("run", {}, d.run)
        self.monitor.note_command("run")

    async def _supervise(self) -> None:
        next_poll = (self._plan.started_at or self._now()) + self.poll_s
        plan, schedule = self._plan, self._schedule
        while True:
            self._commands.check_journal()
            if self._requests:
                await self._handle_requests(started=True)
            now = self._now()
            if not plan.paused:
                plan_t = plan.at(now)
                changed = False
                for seg in schedule.due_segments(plan_t, early_s=_DUE_S):
                    await self._enter_segment(seg)
                    changed = True
                if changed:
                    now = self._now()  # the rate changes took time
                for m in schedule.due_monitoring(plan_t):
                    self._commands.write("monitoring", at_s=m.at_s, kind=m.kind, label=m.label)
                if self._self_stop and plan_t >= schedule.end_s - _DUE_S:
                    self._completed = True  # the program is through: stop the pump now
                    return
            if now >= next_poll - _DUE_S:
                self._lateness.append(now - next_poll)
                while next_poll <= now + _DUE_S:
                    next_poll += self.poll_s
                if await self._poll(now):
                    return
            deadline = next_poll
            boundary = None if plan.paused else schedule.next_start()
            if boundary is None and self._self_stop and not plan.paused:
                boundary = schedule.end_s
            if boundary is not None:
                deadline = min(deadline, plan.clock_time_of(boundary))
            # Until the next deadline, or until a request arrives.
            await self._requests.wait(deadline - self._now(), due_s=_DUE_S)

    async def _handle_requests(self, *, started: bool) -> None:
        """Act on queued requests in order; a stop is acted on at once, even before start."""
        c = self._commands
        stop = self._requests.take_stop()
        if stop is not None:
            reason, sender = stop
            if sender.startswith(REMOTE_PREFIXES):  # a stop over the network is an alarm too
                c.alarms.append(c.write("alarm", kind="remote_stop", source="operator",
                                        message=f"stop requested by {sender}: {reason}",
                                        value=sender, limit=None))
            raise StopRequested()
        if not started:
            return  # pause/resume wait until the pump is running
        while (request := self._requests.pop()) is not None:
            kind, reason, sender = request
            if kind == "pause" and not self._plan.paused:
                await pause_pump(c, self.driver)
                self._plan.pause(self._now())
                c.write("state", state="paused", reason=reason, sender=sender)
            elif kind == "resume" and self._plan.paused:
                await resume_pump(c, self.driver, rearm=self._rearm)
                self._plan.resume(self._now())
                c.write("state", state="resumed", reason=reason, sender=sender)

    async def _poll(self, now: float) -> bool:
        """Take one status sample (requested at clock time `now`) and act on it; True when
        the run is complete."""
        c = self._commands
        retries_before = c.retries()
        st = await self._sampler.status(now)
        if st is None:
            return False
        measured = await self._sampler.measured()
        now = self._now()
        self._last_status = st
        delivered = self.baseline_ml + st.infused_ml
        # A counter that went backwards (power reset) must not erase what was delivered.
        self._delivered = max(self._delivered, delivered)
        plan_t = self._plan.at(now)
        paused = self._plan.paused
        breaches = self.monitor.check_sample(st, delivered_ml=delivered, plan_t=plan_t, now=now,
                                             measured_ml=measured)
        c.write_sample(self._samples.values(st, delivered, plan_t, measured,
                                            self._cap.total_ml, self._schedule.index, paused,
                                            breaches, c.retries() - retries_before))
        if breaches:
            for b in breaches:  # most serious first; the run ends on the first
                c.alarm(b)
            raise BreachStop(breaches[0])
        if not paused and self.monitor.is_complete(delivered) and (
                not st.state.is_moving or (self._self_stop and delivered >= self.monitor.cap_ml)):
            self._completed = True  # the pump stopped itself, or we stop it at the total
            return True
        end = self.monitor.plan.end_s + self.monitor.end_grace_s
        if plan_t > end and not paused:
            c.fail(Breach(BreachKind.UNDER_INFUSION,
                          f"plan ended {plan_t - self.monitor.plan.end_s:.0f} s ago with "
                          f"{delivered:.4g} of {self.monitor.cap_ml:.4g} mL delivered",
                          delivered, self.monitor.cap_ml))
        return False

    # -- the end -------------------------------------------------------------------------

    async def _end(self, fault: Breach | None, stop_by: tuple[str, str] | None) -> RunResult:
        try:
            return await self._finish(fault, stop_by)
        except Exception as exc:  # a bug in the end itself must not skip the stop or summary
            return await end_after_bug(
                exc, self._commands, self.driver, self.program, self.monitor,
                run_id=self.run_id, channel=self.channel, delivered_ml=self._delivered,
                measured_ml=self._sampler.measured_ml, baseline_ml=self.baseline_ml,
                journal_path=Path(self.settings.journal_dir) / f"{self.run_id}.jsonl",
                attempts=max(1, self.settings.stop_attempts),
                timeout_s=self.settings.stop_timeout_s)

    async def _finish(self, fault: Breach | None, stop_by: tuple[str, str] | None) -> RunResult:
        c = self._commands
        if fault is not None:
            reason, sender = f"{fault.kind.value}: {fault.message}", "safety"
        elif stop_by is not None:
            reason, sender = stop_by
        else:
            reason, sender = "planned total delivered", "controller"
        confirmed = await self._stop_pump(reason, sender)
        if not confirmed and fault is None:  # an unconfirmed stop is a fault, whoever asked
            fault = self._unconfirmed
            if fault is not None:
                reason = f"{reason}; then {fault.kind.value}: {fault.message}"
        final = self._delivered = final_delivered(
            self._last_status, baseline_ml=self.baseline_ml, delivered_ml=self._delivered,
            resolution=self.driver.capabilities.counters.resolution)
        if fault is None and stop_by is None and self._completed:
            # A fresh reading, taken now the pump is stopped: the last poll's can be a whole
            # poll interval old when the controller stopped the pump itself at the total (a
            # pump without a volume cap), and would read short by what that interval gave.
            try:
                await self._sampler.measured()
            except BreachStop as failed:  # the sensor failed at the end: a fault like any
                fault = failed.breach
                reason, sender = f"{fault.kind.value}: {fault.message}", "safety"
        if fault is None and stop_by is None and self._completed:
            verdict = completion_breach(self.monitor, final, self._sampler.measured_ml)
            if verdict is not None:
                fault = c.alarm(verdict)
                reason, sender = f"{verdict.kind.value}: {verdict.message}", "safety"
        if fault is not None:
            outcome = "faulted"
        elif stop_by is not None or not self._completed:
            outcome = "aborted"
        else:
            outcome = "completed"
        if self.settings.watchdog_s and confirmed:
            # The pump is stopped; if disarming fails, a watchdog alarm later is harmless.
            with contextlib.suppress(PumpError):
                await c.cmd("set_watchdog", {"value": 0}, lambda: self.driver.set_watchdog(0))
        started = self._plan.started_at
        duration = (self._now() - started) if started is not None else 0.0
        conc = self.program.concentration_mg_per_ml
        c.write("state", state=outcome, reason=reason, sender=sender)
        c.write_fields("summary", summary_fields(
            outcome=outcome, planned_volume_ml=self.monitor.cap_ml, delivered_ml=final,
            planned_dose_mg=self.program.total_dose_mg, concentration_mg_per_ml=conc,
            duration_s=duration, alarms=len(c.alarms), stop_confirmed=confirmed, reason=reason,
            measured_ml=self._sampler.measured_ml, baseline_ml=self.baseline_ml,
            retries=c.retries() - c.retries_at_start))
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
        attempts = max(1, self.settings.stop_attempts)
        st = await stop_until_confirmed(c, self.driver, attempts=attempts,
                                        timeout_s=self.settings.stop_timeout_s)
        if st is None:
            self._unconfirmed = c.alarm(unconfirmed_stop(attempts, self.settings.watchdog_s))
            return False
        self._last_status = st
        self._stopped_at = self._now()
        self.monitor.note_command("stop")
        if c.journal is not None:  # the confirming status is the last sample: flow 0 shown,
            # and the run's alarm still named (a stop does not clear it)
            done = final_delivered(st, baseline_ml=self.baseline_ml, delivered_ml=self._delivered,
                                   resolution=self.driver.capabilities.counters.resolution)
            last = [c.last_breach] if c.last_breach is not None else []
            c.write_sample(self._samples.values(
                st, done, self._plan.at(), self._sampler.measured_ml, self._cap.total_ml,
                self._schedule.index, self._plan.paused, last))
        c.write("state", state="stopped", reason=reason, sender=sender)
        return True

