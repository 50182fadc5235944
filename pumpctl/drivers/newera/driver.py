"""`PumpDriver` for one New Era pump on a `NewEraBus` (get it from `NewEraLine.pump`).

Rules this driver keeps, so the controller can trust what it returns:
- every setting is read back after it is sent and compared; a difference is an error;
- reads are retried once; writes are never blindly repeated: when a write gets no reply the
  setting is read back to find out whether it was taken;
- alarms are sticky here even though the pump forgets them once any command has been
  answered with them: the driver keeps the alarm until `acknowledge_alarm()`, refuses to
  run or change settings meanwhile, and reports it in `status()`;
- in safe mode a heartbeat keeps the pump's watchdog fed for as long as this process runs
  (`safe_mode.SafeMode`, mixed in);
- what the pump can do is declared from the pump profile (`capabilities`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable, Mapping

from pumpctl.drivers.base import (
    Alarm,
    AlarmKind,
    Direction,
    PumpAlarmError,
    PumpCapabilities,
    PumpChecksumError,
    PumpError,
    PumpIdentity,
    PumpOutOfRange,
    PumpProtocolError,
    PumpState,
    PumpStatus,
    PumpTimeout,
    ReadbackMismatch,
    RunOutline,
)
from pumpctl.drivers.newera import codec
from pumpctl.drivers.newera.bus import DEFAULT_TIMEOUT_S, Framing, NewEraBus
from pumpctl.drivers.newera.capabilities import capabilities as newera_capabilities
from pumpctl.drivers.newera.codec import RateUnit, Reply, VolumeUnit
from pumpctl.drivers.newera.safe_mode import _RETRYABLE, MAX_WATCHDOG_S, SafeMode

__all__ = ["DEFAULT_TIMEOUT_S", "MAX_WATCHDOG_S", "NewEraBus", "NewEraDriver",
           "newera_capabilities"]

# (driver, old address, new address): how the line that handed out a driver learns of `*ADR`.
MovedListener = Callable[["NewEraDriver", int, int], None]

log = logging.getLogger(__name__)

DIAMETER_RANGE_MM = (0.1, 80.0)
# Alarms a pump is expected to hold when a session starts: it was powered up, or the previous
# controller's watchdog stopped it. Either way it is stopped and nothing needs deciding.
_BENIGN_AT_OPEN = (AlarmKind.POWER_RESET, AlarmKind.WATCHDOG)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


class NewEraDriver(SafeMode):
    """One pump at one address. Get it from `NewEraLine.pump(address)`."""

    def __init__(self, bus: NewEraBus, address: int, *, safe_s: int | None = None,
                 on_moved: MovedListener | None = None) -> None:
        self.bus = bus
        self._on_moved = on_moved
        self.address = address
        self._want_safe_s = safe_s
        self.safe_s = 0
        self._safe = False
        self._opened = False
        self.identity: PumpIdentity | None = None
        self.alarm: Alarm | None = None  # sticky until acknowledge_alarm()
        self.alarm_at_open: Alarm | None = None  # what the pump reported before we took over
        self._listeners: list[Callable[[Alarm], None]] = []
        self._state = PumpState.STOPPED
        self._rate_units: RateUnit | None = None
        self._run_units: RateUnit | None = None  # chosen by prepare() for every rate of a run
        self._volume_units: VolumeUnit | None = None
        self._direction: Direction | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.heartbeats = 0
        self.heartbeat_error: PumpError | None = None
        # Requests repeated, or settled by a read-back, because a reply was lost, late or
        # corrupt: each one a fault on the line that was survived. The controller journals it.
        self.retried = 0
        bus.add_alarm_listener(self._on_unsolicited)

    @property
    def capabilities(self) -> PumpCapabilities:
        return newera_capabilities()

    # ---- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Find the pump and its mode, take over a pending power-up alarm, identify it, and arm
        the watchdog if asked. A missing reply to the very first packet is tolerated (some
        units ignore it)."""
        if self._opened:
            return
        reply = None
        for attempt in range(2):
            try:
                reply = await self.bus.transact(self.address, "SAF", safe=True,
                                                framing=Framing.EITHER)
                break
            except PumpTimeout:
                if attempt:
                    raise PumpTimeout(f"no pump answers at address {self.address} "
                                      f"(two safe-framed SAF queries, {self.bus.timeout_s:g} s "
                                      "each)") from None
            except _RETRYABLE:
                if attempt:
                    raise
        assert reply is not None
        found = reply.alarm
        if found is not None:
            self.alarm_at_open = found  # acknowledged at the pump by that query
            reply = await self.bus.transact(self.address, "SAF", safe=True,
                                            framing=Framing.EITHER)
        self._note(reply)
        self._safe = reply.safe
        self.safe_s = self._parse_int(reply, "SAF")
        self._opened = True
        if found is not None and found.kind not in _BENIGN_AT_OPEN:
            # A stall or program error from before we came: it needs an explicit decision.
            self.alarm = found
        self.identity = await self.identify()
        if self._want_safe_s is not None and self._want_safe_s != self.safe_s:
            await self.set_watchdog(self._want_safe_s)
        elif self.safe_s:
            self._start_heartbeat()

    async def close(self) -> None:
        """Stop the heartbeat. The pump is left as it is (its watchdog, if armed, then fires)."""
        await self.stop_heartbeat()

    def add_alarm_listener(self, listener: Callable[[Alarm], None]) -> None:
        """Called as soon as an alarm is seen (a reply, a heartbeat, or an unsolicited packet)."""
        self._listeners.append(listener)

    # ---- request plumbing -------------------------------------------------------------------

    async def _send(self, command: str, data: str = "", *, framing: Framing | None = None,
                    reply_address: int | None = None) -> Reply:
        reply = await self.bus.transact(self.address, command, data, safe=self._safe,
                                        framing=framing, reply_address=reply_address)
        self._note(reply)
        return reply

    def _note(self, reply: Reply) -> None:
        if reply.alarm is not None:
            self._record_alarm(reply.alarm)
            self._state = PumpState.STOPPED  # every alarm halts the pump
        else:
            self._state = state = reply.state
            if state is PumpState.INFUSING:
                self._direction = Direction.INFUSE
            elif state is PumpState.WITHDRAWING:
                self._direction = Direction.WITHDRAW

    def _record_alarm(self, alarm: Alarm) -> None:
        if self._opened and self.alarm is None:
            log.info("pump %d alarm: %s", self.address, alarm.message)
        if not self._opened:
            self.alarm_at_open = alarm
            return
        self.alarm = alarm
        for listener in list(self._listeners):
            listener(alarm)

    def _on_unsolicited(self, address: int, alarm: Alarm) -> None:
        if address == self.address:
            self._record_alarm(alarm)

    async def _query(self, command: str, data: str = "") -> Reply:
        """A read: retried on timeout, a garbled reply or `?COM` (our packet was damaged on
        the way); an alarm reply (which the pump used to answer instead of executing) is
        recorded and the read repeated."""
        last: PumpError | None = None
        for attempt in range(1 + self.bus.retries):
            if attempt:
                self.retried += 1  # the previous reply was lost, late or corrupt
            try:
                # (_send, inlined: this is every status poll's path)
                reply = await self.bus.transact(self.address, command, data, safe=self._safe)
                self._note(reply)
                if reply.alarm is not None:
                    reply = await self._send(command, data)
                    if reply.alarm is not None:
                        raise PumpAlarmError(reply.alarm)
                error = None if reply.error is None else \
                    codec.error_for(reply, f"{command}{data}")
                if isinstance(error, PumpChecksumError):
                    raise error
            except _RETRYABLE as exc:
                last = exc
                continue
            if error is not None:
                raise error
            return reply
        assert last is not None
        raise last

    async def _write(self, command: str, data: str = "") -> Reply | None:
        """A write: sent once. None means no (usable) reply; the caller reads back."""
        if self.alarm is not None:
            raise PumpAlarmError(self.alarm, f"pump {self.address} is in alarm "
                                 f"({self.alarm.kind.value}): acknowledge it before {command}")
        try:
            reply = await self._send(command, data)
        except _RETRYABLE as exc:
            log.info("no usable reply to %s%s (%s); verifying by read-back", command, data, exc)
            self.retried += 1
            return None
        if reply.alarm is not None:
            raise PumpAlarmError(reply.alarm, f"pump {self.address} answered {command}{data} "
                                 f"with alarm {reply.alarm.kind.value}; it was not executed")
        if reply.error is not None:
            raise codec.error_for(reply, f"{command}{data}") or PumpProtocolError(reply.error)
        return reply

    # ---- queries ----------------------------------------------------------------------------

    async def identify(self) -> PumpIdentity:
        reply = await self._query("VER")
        match = re.fullmatch(r"NE(\d+)(X\d*)?V(\d+\.\d+)", reply.data)
        if match is None:
            raise PumpProtocolError(f"VER reply {reply.data!r} is not NE<model>V<version>")
        return PumpIdentity(model=f"NE-{match[1]}", firmware=match[3], address=self.address,
                            raw=reply.data)

    async def diameter(self) -> float:
        return codec.parse_number((await self._query("DIA")).data, field="diameter")

    async def rate(self) -> tuple[float, RateUnit]:
        value, units = codec.parse_rate((await self._query("RAT")).data)
        self._rate_units = units
        return value, units

    async def volume_limit(self) -> tuple[float, VolumeUnit]:
        value, units = codec.parse_volume((await self._query("VOL")).data)
        self._volume_units = units
        return value, units

    async def direction(self) -> Direction:
        data = (await self._query("DIR")).data
        if data not in ("INF", "WDR"):
            raise PumpProtocolError(f"DIR reply {data!r} is not INF or WDR")
        self._direction = Direction.INFUSE if data == "INF" else Direction.WITHDRAW
        return self._direction

    async def dispensed(self) -> tuple[float, float]:
        return codec.parse_dispensed((await self._query("DIS")).data)

    async def watchdog(self) -> int:
        return self._parse_int(await self._query("SAF"), "SAF")

    async def status(self) -> PumpStatus:
        dis = await self._query("DIS")
        infused, withdrawn = codec.parse_dispensed(dis.data)
        rate, self._rate_units = codec.parse_rate((await self._query("RAT")).data)  # = rate()
        state = PumpState.ALARM if self.alarm is not None else dis.state
        direction = self._direction or await self.direction()
        return PumpStatus(state=state, rate_ml_h=rate, infused_ml=infused,
                          withdrawn_ml=withdrawn, alarm=self.alarm, direction=direction)

    # ---- settings ---------------------------------------------------------------------------

    async def set_diameter(self, mm: float) -> float:
        low, high = DIAMETER_RANGE_MM
        if not (math.isfinite(mm) and low <= mm <= high):
            raise PumpOutOfRange(f"diameter {mm} mm is outside {low}-{high} mm")
        await self._write("DIA", codec.format_number(mm, field="diameter"))
        read = await self.diameter()
        if not _same(read, mm):
            raise ReadbackMismatch("diameter", f"{mm} mm", f"{read} mm")
        self._volume_units = None  # the pump may switch µL/mL with the diameter
        return read

    async def prepare(self, outline: RunOutline) -> Mapping[str, object]:
        """Choose one rate unit that writes every rate of the run (the pump refuses a change
        of units while it runs): the units already set if they can, else the first of
        mL/h, µL/h, µL/min, mL/min that can. `set_rate` then always uses it."""
        if self._rate_units is None:
            await self.rate()
        current = self._rate_units
        order = [u for u in codec.RATE_UNIT_PREFERENCE if u is not current]
        for units in ([current] if current else []) + order:
            if all(codec.is_expressible(r / units.ml_h) and r > 0 for r in outline.rates_ml_h):
                self._run_units = units
                return {"rate_unit": units.value}
        rates = ", ".join(f"{r:g}" for r in outline.rates_ml_h)
        raise PumpOutOfRange(f"no one rate unit of pump {self.address} writes every rate of "
                             f"this run ({rates} mL/h) in {codec.MAX_DIGITS} digits, and it "
                             "cannot change units while it runs")

    async def set_rate(self, ml_h: float) -> float:
        if self._rate_units is None:
            await self.rate()
        moving = self._state.is_moving or self._state is PumpState.PAUSED
        if self._run_units is not None:
            text, units = codec.encode_rate(ml_h, units=self._run_units)
        elif moving:
            text, units = codec.encode_rate(ml_h, units=self._rate_units)
        else:
            text, units = codec.encode_rate(ml_h, prefer=self._rate_units)
        await self._write("RAT", f"{text}{units.value}")
        read, read_units = await self.rate()
        if not _same(read, ml_h) or read_units is not units:
            raise ReadbackMismatch("rate", f"{text} {units.label}",
                                   f"{read:g} mL/h in {read_units.label}")
        return read

    async def set_volume_limit(self, ml: float) -> float:
        if self._volume_units is None:
            await self.volume_limit()
        text, units = codec.encode_volume(ml, prefer=self._volume_units)
        if units is not self._volume_units:
            await self._write("VOL", units.value)
        await self._write("VOL", text)
        read, read_units = await self.volume_limit()
        if not _same(read, ml):
            raise ReadbackMismatch("volume", f"{text} {units.value}",
                                   f"{read:g} mL ({read_units.value})")
        return read

    async def set_direction(self, direction: Direction) -> Direction:
        await self._write("DIR", "INF" if direction is Direction.INFUSE else "WDR")
        read = await self.direction()
        if read is not direction:
            raise ReadbackMismatch("direction", direction.value, read.value)
        return read

    async def clear_counters(self) -> None:
        await self._write("CLD", "INF")
        await self._write("CLD", "WDR")
        infused, withdrawn = await self.dispensed()
        if infused or withdrawn:
            raise ReadbackMismatch("dispensed", "I0 W0", f"I{infused:g} W{withdrawn:g} mL")

    async def set_address(self, new: int) -> None:
        """`*ADR`: every pump on the line takes it, so connect one pump at a time."""
        if not 0 <= new <= codec.MAX_ADDRESS:
            raise PumpOutOfRange(f"address {new} is outside 0-{codec.MAX_ADDRESS}")
        await self._send("*ADR", str(new), reply_address=new)
        old, self.address = self.address, new
        if self._on_moved is not None:
            self._on_moved(self, old, new)

    # ---- motion -----------------------------------------------------------------------------

    async def run(self) -> None:
        reply = await self._write("RUN")
        if reply is None:
            reply = await self._query("")
        if not reply.state.is_moving:
            raise PumpProtocolError(f"pump {self.address} did not start: state "
                                    f"{reply.state.value} after RUN")

    async def pause(self) -> None:
        if not self._state.is_moving:
            await self._query("")
        if self._state.is_moving:
            await self._send("STP")
        if self._state.is_moving:
            raise PumpProtocolError(f"pump {self.address} still {self._state.value} after STP")

    async def stop(self) -> None:
        """Stop completely whatever the state: STP until the pump says stopped (a first STP
        only pauses a running pump). Allowed in alarm; repeated on timeouts (it is safe)."""
        last: PumpError | None = None
        for _ in range(4):
            try:
                reply = await self._send("STP")
            except _RETRYABLE as exc:
                last = exc
                self.retried += 1
                continue
            if reply.alarm is None and reply.state is PumpState.STOPPED:
                return
        check = await self._query("")
        if check.state is PumpState.STOPPED:
            return
        raise PumpProtocolError(f"pump {self.address} still {check.state.value} after STP"
                                + (f" ({last})" if last else ""))

    async def acknowledge_alarm(self) -> None:
        """Clear the alarm here and at the pump (any command acknowledges it there)."""
        await self._send("")
        self.alarm = None
        self.alarm_at_open = None
