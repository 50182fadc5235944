"""One New Era pump on the line: its address, command set, units, safe mode and auto-alarm,
over a protocol-free `simulators.pump.SimulatedPump`.

What the pump does (rates, volumes, alarms, watchdog, faults) is the `SimulatedPump`'s; this
module holds only what New Era makes of it: letters, the 4-digit number format, the rate and
volume units a value is shown in (volume units follow the diameter), `?OOR`/`?NA` replies,
safe-mode framing and the alarm packets a pump in safe mode sends unasked. Choices the facts
file leaves open are written down in docs/newera.md ("Simulator behaviour").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from simulators.newera.wire import Command, Packet, frame_reply, read_number, show_number
from simulators.physics import Motion, PhysicsParams
from simulators.pump import PumpAlarm, PumpSetup, Refusal, SimPumpState, SimulatedPump

RATE_UNITS_ML_H = {"UM": 0.06, "MM": 60.0, "UH": 0.001, "MH": 1.0}
VOLUME_UNITS_ML = {"UL": 0.001, "ML": 1.0}
SMALL_SYRINGE_MM = 14.0  # at or below: volumes default to µL

# New Era has one letter for a stall whatever stalled it, and none for a volume limit.
ALARM_LETTERS = {
    PumpAlarm.POWER_RESET: "R", PumpAlarm.STALL: "S", PumpAlarm.SYRINGE_EMPTY: "S",
    PumpAlarm.WATCHDOG: "T", PumpAlarm.PROGRAM_ERROR: "E", PumpAlarm.PHASE_OUT_OF_RANGE: "O",
    PumpAlarm.VOLUME_LIMIT_OUT_OF_RANGE: "O",
}
LETTER_ALARMS = {"R": PumpAlarm.POWER_RESET, "S": PumpAlarm.STALL, "T": PumpAlarm.WATCHDOG,
                 "E": PumpAlarm.PROGRAM_ERROR, "O": PumpAlarm.PHASE_OUT_OF_RANGE}
REFUSAL_REPLIES = {Refusal.OUT_OF_RANGE: "?OOR", Refusal.BUSY: "?NA",
                   Refusal.ALARM_PENDING: "?NA"}  # (a New Era pump acks the alarm first)
STATUS_CHARS = {SimPumpState.INFUSING: "I", SimPumpState.WITHDRAWING: "W",
                SimPumpState.PAUSED: "P", SimPumpState.STOPPED: "S"}


@dataclass
class SimPumpConfig:
    """A New Era pump as it comes out of the box (or as it was left: safe mode persists)."""

    address: int = 0
    diameter_mm: float = 26.59
    capacity_ml: float = 60.0
    syringe_volume_ml: float = 60.0  # what the loaded syringe holds at the start
    model_number: int = 1000
    firmware: str = "V3.928"
    safe_s: int = 0  # watchdog setting kept in non-volatile memory
    physics: PhysicsParams = field(default_factory=PhysicsParams)

    def setup(self) -> PumpSetup:
        """The protocol-free part."""
        return PumpSetup(diameter_mm=self.diameter_mm, capacity_ml=self.capacity_ml,
                         syringe_volume_ml=self.syringe_volume_ml, watchdog_s=self.safe_s,
                         physics=self.physics)


def default_volume_units(diameter_mm: float) -> str:
    return "UL" if diameter_mm <= SMALL_SYRINGE_MM else "ML"


def shown(value: float) -> float:
    """`value` as the pump's display rounds it (4 digits)."""
    number = read_number(show_number(value))
    return number if number is not None else value


class NewEraUnit:
    """The pump behind one address. `emit` puts unsolicited bytes (auto-alarms) on the line."""

    def __init__(self, pump: SimulatedPump, config: SimPumpConfig, *,
                 emit: Callable[[bytes], None]) -> None:
        self.pump = pump
        self.config = config
        self.address = config.address
        self._emit = emit
        # Units values are shown in. The rate's are kept with the rate: only units set while
        # stopped survive a power cut, like the rate itself.
        self.rate_units = "MH"
        self.stored_rate_units = "MH"
        self.volume_units = default_volume_units(config.diameter_mm)
        pump.add_alarm_listener(self._on_alarm)
        pump.add_power_up_listener(self._on_power_up)

    # ---- state ----------------------------------------------------------------------------

    @property
    def safe_mode(self) -> bool:
        return self.pump.watchdog_s > 0

    @property
    def rate(self) -> tuple[float, str]:
        """The rate as `RAT` shows it: (number, units)."""
        units = self.rate_units
        return shown(self.pump.rate_ml_h / RATE_UNITS_ML_H[units]), units

    @property
    def volume(self) -> tuple[float, str]:
        """The volume to dispense as `VOL` shows it: (number, units)."""
        units = self.volume_units
        return shown(self.pump.volume_target_ml / VOLUME_UNITS_ML[units]), units

    def status_char(self) -> str:
        return STATUS_CHARS[self.pump.motion_state]

    def _prefix(self) -> str:
        return f"{self.address:02d}{self.status_char()}"

    def raise_alarm(self, letter: str) -> None:
        """Raise the alarm New Era calls `letter` (R, S, T, E, O)."""
        self.pump.raise_alarm(LETTER_ALARMS[letter])

    def _on_alarm(self, alarm: PumpAlarm) -> None:
        if self.safe_mode and self.pump.powered:
            self._emit(frame_reply(f"{self.address:02d}A?{ALARM_LETTERS[alarm]}", safe=True))

    def _on_power_up(self) -> None:
        self.rate_units = self.stored_rate_units

    # ---- packets --------------------------------------------------------------------------

    def on_packet(self, packet: Packet, command: Command | None,
                  now: float | None = None) -> tuple[bytes, float] | None:
        """The reply bytes and how long to hold them back, or None for silence. `now`: the
        clock reading the packet arrived at, if the caller has it."""
        pump = self.pump
        if now is None:
            now = pump.clock.monotonic()
        pump.service(now)
        if not pump.powered:
            return None
        if pump.take_ignored_command():
            return None
        safe_mode = pump.watchdog_s > 0
        if packet.valid and pump.wire.take_inbound_corruption():
            if not packet.safe:
                return self._send(f"{self._prefix()}?", safe_mode)  # garbled text
            packet = Packet(packet.text, safe=True, valid=False)  # its CRC no longer matches
        if packet.safe:
            if not packet.valid:
                return self._send(f"{self._prefix()}?COM", safe_mode)
            pump.feed_watchdog(now)
        elif safe_mode:
            return None  # a pump in safe mode ignores plain CR-terminated commands
        if pump.alarm is not None:
            # Any valid command acknowledges the alarm, and is answered with it instead.
            alarm = pump.acknowledge_alarm()
            assert alarm is not None
            return self._send(f"{self.address:02d}A?{ALARM_LETTERS[alarm]}", safe_mode)
        assert command is not None
        text = self.execute(command)
        if command.data or command.name in ("RUN", "STP"):
            # Something changed that may bring the next event (stall, target, watchdog)
            # closer; plain queries, the bulk of the traffic, need no wake-up.
            pump.poke()
        # Commands may switch safe mode (SAF n): the reply goes out in the new mode.
        return self._send(text, pump.watchdog_s > 0)

    def _send(self, text: str, safe: bool) -> tuple[bytes, float] | None:
        frame = frame_reply(text, safe=safe)
        fault = self.pump.wire.take_reply_fault()
        if fault is None:
            return frame, 0.0
        if fault.drop:
            return None
        if fault.corrupt is not None:
            index, mask = fault.corrupt
            index = min(index + (1 if safe else 0), len(frame) - 2)
            damaged = bytearray(frame)
            damaged[index] ^= mask
            frame = bytes(damaged)
        return frame, fault.delay_s

    # ---- commands -------------------------------------------------------------------------

    def execute(self, command: Command) -> str:
        handler = _HANDLERS.get(command.name)
        if handler is None:
            return f"{self._prefix()}?"
        result = handler(self, command.data)
        return f"{self._prefix()}{result}"

    def _cmd_status(self, data: str) -> str:
        return "" if not data else "?"

    def _cmd_version(self, data: str) -> str:
        return f"NE{self.config.model_number}{self.config.firmware}" if not data else "?OOR"

    def _cmd_diameter(self, data: str) -> str:
        pump = self.pump
        if not data:
            return show_number(pump.diameter_mm)
        value = read_number(data)
        if value is None:
            return "?OOR"
        old_units = default_volume_units(pump.diameter_mm)
        refused = pump.set_diameter(value)
        if refused is not None:
            return REFUSAL_REPLIES[refused]
        new_units = default_volume_units(value)
        # Volume units that followed the diameter follow it on, the volume converted (which
        # leaves the mL unchanged), unless the number would not fit in 4 digits.
        if (self.volume_units == old_units != new_units
                and pump.volume_target_ml / VOLUME_UNITS_ML[new_units] <= 9999):
            self.volume_units = new_units
        return ""

    def _cmd_rate(self, data: str) -> str:
        pump = self.pump
        if not data:
            return show_number(pump.rate_ml_h / RATE_UNITS_ML_H[self.rate_units]) + \
                self.rate_units
        match = re.fullmatch(r"([\d.]+)(UM|MM|UH|MH)?", data)
        value = read_number(match[1]) if match else None
        if match is None or value is None:
            return "?OOR"
        units = match[2] or self.rate_units
        if pump.moving and units != self.rate_units:
            return "?NA"
        refused = pump.set_rate(value * RATE_UNITS_ML_H[units])
        if refused is not None:
            return REFUSAL_REPLIES[refused]
        self.rate_units = units
        if not pump.moving:
            self.stored_rate_units = units
        return ""

    def _cmd_volume(self, data: str) -> str:
        pump = self.pump
        units = self.volume_units
        if not data:
            return show_number(pump.volume_target_ml / VOLUME_UNITS_ML[units]) + units
        if data in VOLUME_UNITS_ML:
            if pump.moving:
                return "?NA"
            number, _ = self.volume  # only the units change: the number is kept as shown
            pump.set_volume_target(number * VOLUME_UNITS_ML[data])
            self.volume_units = data
            return ""
        value = read_number(data)
        if value is None:
            return "?OOR"
        refused = pump.set_volume_target(value * VOLUME_UNITS_ML[units])
        return REFUSAL_REPLIES[refused] if refused is not None else ""

    def _cmd_direction(self, data: str) -> str:
        pump = self.pump
        if not data:
            return "INF" if pump.direction is Motion.INFUSE else "WDR"
        if data not in ("INF", "WDR", "REV"):
            return "?OOR"
        if data == "REV":
            motion = Motion.WITHDRAW if pump.direction is Motion.INFUSE else Motion.INFUSE
        else:
            motion = Motion.INFUSE if data == "INF" else Motion.WITHDRAW
        refused = pump.set_direction(motion)
        return REFUSAL_REPLIES[refused] if refused is not None else ""

    def _cmd_run(self, data: str) -> str:
        if data:
            return "?OOR"  # pumping programs (RUN n) are not simulated
        refused = self.pump.run()
        return REFUSAL_REPLIES[refused] if refused is not None else ""

    def _cmd_stop(self, data: str) -> str:
        if data:
            return "?OOR"
        if self.pump.moving:
            self.pump.pause()  # a first STP pauses; a second one ends the phase
        else:
            self.pump.stop()
        return ""

    def _cmd_dispensed(self, data: str) -> str:
        if data:
            return "?OOR"
        units = self.volume_units
        infused, withdrawn = self.pump.counters_ml()
        size = VOLUME_UNITS_ML[units]
        if max(infused, withdrawn) / size >= 9999.5:
            units, size = "ML", 1.0
        return f"I{show_number(infused / size)}W{show_number(withdrawn / size)}{units}"

    def _cmd_clear(self, data: str) -> str:
        if data not in ("INF", "WDR"):
            return "?OOR"
        refused = self.pump.clear_counters(infused=data == "INF", withdrawn=data == "WDR")
        return REFUSAL_REPLIES[refused] if refused is not None else ""

    def _cmd_safe(self, data: str) -> str:
        if not data:
            return str(self.pump.watchdog_s)
        if not data.isdigit() or len(data) > 3 or int(data) > 255:
            return "?OOR"
        self.pump.set_watchdog(int(data))
        return ""

    def _cmd_address(self, data: str) -> str:
        if not data.isdigit() or int(data) > 99:
            return "?OOR"
        self.address = int(data)
        return ""


_HANDLERS: dict[str, Callable[[NewEraUnit, str], str]] = {
    "": NewEraUnit._cmd_status,
    "VER": NewEraUnit._cmd_version,
    "DIA": NewEraUnit._cmd_diameter,
    "RAT": NewEraUnit._cmd_rate,
    "VOL": NewEraUnit._cmd_volume,
    "DIR": NewEraUnit._cmd_direction,
    "RUN": NewEraUnit._cmd_run,
    "STP": NewEraUnit._cmd_stop,
    "DIS": NewEraUnit._cmd_dispensed,
    "CLD": NewEraUnit._cmd_clear,
    "SAF": NewEraUnit._cmd_safe,
    "*ADR": NewEraUnit._cmd_address,
}
