"""One simulated New Era pump: the command set, alarms, safe mode and watchdog, over the physics.

The line (several pumps sharing one serial port) lives in `simulators.newera`; this module is
what a single pump does with a packet addressed to it. Choices the facts file leaves open are
written down in docs/newera.md ("Simulator behaviour").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pumpctl.clock import Clock
from simulators.faults import Fault, FaultKind
from simulators.newera.wire import Command, Packet, frame_reply, read_number, show_number
from simulators.physics import (
    EventKind,
    ModelEvent,
    Motion,
    PhysicsParams,
    RateLimits,
    SyringePumpModel,
)

RATE_UNITS_ML_H = {"UM": 0.06, "MM": 60.0, "UH": 0.001, "MH": 1.0}
VOLUME_UNITS_ML = {"UL": 0.001, "ML": 1.0}
DIAMETER_RANGE_MM = (0.1, 80.0)
SMALL_SYRINGE_MM = 14.0  # at or below: volumes default to µL


@dataclass
class SimPumpConfig:
    """A pump as it comes out of the box (or as it was left: safe mode persists)."""

    address: int = 0
    diameter_mm: float = 26.59
    capacity_ml: float = 60.0
    syringe_volume_ml: float = 60.0  # what the loaded syringe holds at the start
    model_number: int = 1000
    firmware: str = "V3.928"
    safe_s: int = 0  # watchdog setting kept in non-volatile memory
    physics: PhysicsParams = field(default_factory=PhysicsParams)


def default_volume_units(diameter_mm: float) -> str:
    return "UL" if diameter_mm <= SMALL_SYRINGE_MM else "ML"


class SimulatedPump:
    """The pump behind one address. `emit` puts unsolicited bytes (auto-alarms) on the line."""

    def __init__(self, clock: Clock, config: SimPumpConfig, *, rate_limits: RateLimits | None,
                 emit: Callable[[bytes], None], wake: Callable[[], None],
                 time_base: Callable[[], float] | None = None) -> None:
        self.clock = clock
        created = clock.monotonic()
        self._time_base = time_base or (lambda: created)
        self.config = config
        self.address = config.address
        self._emit = emit
        self._wake = wake
        self.model = SyringePumpModel(
            clock, diameter_mm=config.diameter_mm, capacity_ml=config.capacity_ml,
            contents_ml=config.syringe_volume_ml, params=config.physics, rate_limits=rate_limits)
        self.model.add_listener(self._on_model_event)
        # Settings in non-volatile memory.
        self.safe_s = config.safe_s
        self.stored_rate: tuple[float, str] = (0.0, "MH")
        self.volume: tuple[float, str] = (0.0, default_volume_units(config.diameter_mm))
        # Volatile state.
        self.rate: tuple[float, str] = self.stored_rate
        self.paused = False
        self.alarm: str | None = None
        self.powered = True
        self._power_up_at: float | None = None
        self._last_valid_at: float | None = None  # watchdog runs from here once set
        self.ignore_first_quirk = False
        self._ignore_next = False
        # Reply faults: how many replies are still affected.
        self._drop_left = 0
        self._delay_left = 0
        self._delay_s = 0.0
        self._corrupt_left = 0
        self._corrupt_in_left = 0  # received packets damaged "on the wire" to the pump
        self._corrupt_index = 1
        self._corrupt_mask = 0x40
        self._scheduled: list[tuple[float, Fault]] = []
        self._occlusion_clear_at: float | None = None
        self.alarm_log: list[tuple[float, str]] = []  # every alarm raised, for tests and HIL
        self.alarm = "R"  # the first reply after power-up reports the power interruption
        self.alarm_log.append((clock.monotonic(), "R"))

    # ---- state ----------------------------------------------------------------------------

    @property
    def safe_mode(self) -> bool:
        return self.safe_s > 0

    @property
    def moving(self) -> bool:
        return self.model.running

    def status_char(self) -> str:
        if self.model.running:
            return "I" if self.model.motion is Motion.INFUSE else "W"
        return "P" if self.paused else "S"

    def _prefix(self) -> str:
        return f"{self.address:02d}{self.status_char()}"

    # ---- time-driven behaviour --------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        """Schedule `fault` at `fault.at_s` seconds after the simulator started (at once if
        that time has passed)."""
        self.schedule(self._time_base() + fault.at_s, fault)

    def schedule(self, at: float, fault: Fault) -> None:
        """Apply `fault` at clock time `at`."""
        self._scheduled.append((at, fault))
        self._scheduled.sort(key=lambda item: item[0])
        self._wake()

    def next_deadline(self) -> float | None:
        times = [t for t, _ in self._scheduled[:1]]
        if self._power_up_at is not None:
            times.append(self._power_up_at)
        if self._occlusion_clear_at is not None:
            times.append(self._occlusion_clear_at)
        deadline = self.watchdog_deadline()
        if deadline is not None:
            times.append(deadline)
        if self.powered:
            event = self.model.next_event_at()
            if event is not None:
                times.append(event)
        return min(times) if times else None

    def watchdog_deadline(self) -> float | None:
        if not self.powered or not self.safe_mode or self._last_valid_at is None:
            return None
        return self._last_valid_at + self.safe_s

    def service(self, now: float) -> None:
        """Apply whatever became due by `now`: faults, power-up, watchdog, physics events."""
        while self._scheduled and self._scheduled[0][0] <= now:
            _, fault = self._scheduled.pop(0)
            self.apply(fault)
        if self._power_up_at is not None and now >= self._power_up_at:
            self._power_up()
        if self._occlusion_clear_at is not None and now >= self._occlusion_clear_at:
            self._occlusion_clear_at = None
            self.model.set_occluded(False)
        self.model.sync()
        deadline = self.watchdog_deadline()
        if deadline is not None and now >= deadline:
            self._last_valid_at = None  # re-armed by the next valid packet
            self._halt()
            self.raise_alarm("T")

    def _on_model_event(self, event: ModelEvent) -> None:
        self.paused = False
        if event.kind is EventKind.STALLED:
            self.raise_alarm("S")

    def raise_alarm(self, letter: str) -> None:
        self.alarm = letter
        self.alarm_log.append((self.clock.monotonic(), letter))
        if self.safe_mode and self.powered:
            self._emit(frame_reply(f"{self.address:02d}A?{letter}", safe=True))

    def _halt(self) -> None:
        self.model.stop(reset_phase=True)
        self.paused = False

    # ---- faults ---------------------------------------------------------------------------

    def apply(self, fault: Fault) -> None:
        kind = fault.kind
        now = self.clock.monotonic()
        if kind is FaultKind.OCCLUSION:
            self.model.set_occluded(True)
            clear_after = fault.param("clear_after")
            self._occlusion_clear_at = now + clear_after if clear_after > 0 else None
        elif kind is FaultKind.SYRINGE_EMPTY:
            self.model.empty_syringe()
        elif kind is FaultKind.STUCK_MOTOR:
            self.model.set_stuck(True)
        elif kind is FaultKind.FREE_FLOW:
            self.model.set_free_flow(fault.param("factor"))
        elif kind is FaultKind.DROP_REPLIES:
            self._drop_left = int(fault.param("count"))
        elif kind is FaultKind.DELAY_REPLIES:
            self._delay_left = int(fault.param("count"))
            self._delay_s = fault.param("delay")
        elif kind is FaultKind.CORRUPT_BYTES:
            if fault.param("inbound"):
                self._corrupt_in_left = int(fault.param("count"))
            else:
                self._corrupt_left = int(fault.param("count"))
            self._corrupt_index = int(fault.param("index"))
            self._corrupt_mask = int(fault.param("mask")) or 0x40
        elif kind is FaultKind.POWER_RESET:
            self.power_cut(fault.param("off"))
        elif kind is FaultKind.IGNORE_FIRST:
            self.ignore_first_quirk = True
            self._ignore_next = True
        self._wake()

    def power_cut(self, off_s: float = 0.0) -> None:
        """Lose power now; it comes back after `off_s` (0: at once)."""
        self._halt()
        self.model.clear_infused()
        self.model.clear_withdrawn()
        self.powered = False
        self.alarm = None
        self._last_valid_at = None
        self._power_up_at = self.clock.monotonic() + max(0.0, off_s)
        if off_s <= 0:
            self._power_up()

    def _power_up(self) -> None:
        self._power_up_at = None
        self.powered = True
        self.rate = self.stored_rate  # a rate changed while running was never stored
        self.model.set_rate(self._rate_ml_h(self.rate))
        self._ignore_next = self.ignore_first_quirk
        self.raise_alarm("R")

    # ---- packets --------------------------------------------------------------------------

    def on_packet(self, packet: Packet, command: Command | None,
                  now: float | None = None) -> tuple[bytes, float] | None:
        """The reply bytes and how long to hold them back, or None for silence. `now`: the
        clock reading the packet arrived at, if the caller has it."""
        if now is None:
            now = self.clock.monotonic()
        self.service(now)
        if not self.powered:
            return None
        if self._ignore_next:
            self._ignore_next = False
            return None
        safe_mode = self.safe_s > 0
        if self._corrupt_in_left and packet.valid:
            self._corrupt_in_left -= 1 if self._corrupt_in_left > 0 else 0
            if not packet.safe:
                return self._send(f"{self._prefix()}?", safe_mode)  # garbled text
            packet = Packet(packet.text, safe=True, valid=False)  # its CRC no longer matches
        if packet.safe:
            if not packet.valid:
                return self._send(f"{self._prefix()}?COM", safe_mode)
            if self._last_valid_at is None and safe_mode:
                self._wake()  # the watchdog starts now: the service task must know
            self._last_valid_at = now
        elif safe_mode:
            return None  # a pump in safe mode ignores plain CR-terminated commands
        if self.alarm is not None:
            # Any valid command acknowledges the alarm, and is answered with it instead.
            letter, self.alarm = self.alarm, None
            return self._send(f"{self.address:02d}A?{letter}", safe_mode)
        assert command is not None
        text = self.execute(command)
        if command.data or command.name in ("RUN", "STP"):
            # Something changed that may bring the next event (stall, target, watchdog)
            # closer; plain queries, the bulk of the traffic, need no wake-up.
            self._wake()
        # Commands may switch safe mode (SAF n): the reply goes out in the new mode.
        return self._send(text, self.safe_s > 0)

    def _send(self, text: str, safe: bool) -> tuple[bytes, float] | None:
        frame = frame_reply(text, safe=safe)
        if self._drop_left:
            self._drop_left -= 1 if self._drop_left > 0 else 0
            return None
        if self._corrupt_left:
            self._corrupt_left -= 1 if self._corrupt_left > 0 else 0
            index = min(self._corrupt_index + (1 if safe else 0), len(frame) - 2)
            damaged = bytearray(frame)
            damaged[index] ^= self._corrupt_mask
            frame = bytes(damaged)
        delay = 0.0
        if self._delay_left:
            self._delay_left -= 1 if self._delay_left > 0 else 0
            delay = self._delay_s
        return frame, delay

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
        if not data:
            return show_number(self.model.diameter_mm)
        value = read_number(data)
        if value is None or not DIAMETER_RANGE_MM[0] <= value <= DIAMETER_RANGE_MM[1]:
            return "?OOR"
        if self.moving or self.paused:
            return "?NA"
        old_units = default_volume_units(self.model.diameter_mm)
        new_units = default_volume_units(value)
        self.model.set_diameter(value)
        amount, units = self.volume
        if units == old_units and new_units != units:
            converted = amount * VOLUME_UNITS_ML[units] / VOLUME_UNITS_ML[new_units]
            if converted <= 9999:
                self.volume = (converted, new_units)
        return ""

    @staticmethod
    def _rate_ml_h(rate: tuple[float, str]) -> float:
        return rate[0] * RATE_UNITS_ML_H[rate[1]]

    def _cmd_rate(self, data: str) -> str:
        if not data:
            return show_number(self.rate[0]) + self.rate[1]
        match = re.fullmatch(r"([\d.]+)(UM|MM|UH|MH)?", data)
        value = read_number(match[1]) if match else None
        if match is None or value is None:
            return "?OOR"
        units = match[2] or self.rate[1]
        if self.moving and units != self.rate[1]:
            return "?NA"
        low, high = self.model.rate_limits_ml_h()
        ml_h = value * RATE_UNITS_ML_H[units]
        if not low <= ml_h <= high:
            return "?OOR"
        self.rate = (value, units)
        if not self.moving:
            self.stored_rate = self.rate  # settings are written to memory; running changes aren't
        self.model.set_rate(ml_h)
        return ""

    def _cmd_volume(self, data: str) -> str:
        amount, units = self.volume
        if not data:
            return show_number(amount) + units
        if data in VOLUME_UNITS_ML:
            if self.moving:
                return "?NA"
            self.volume = (amount, data)
            return ""
        value = read_number(data)
        if value is None:
            return "?OOR"
        if self.moving:
            return "?NA"
        self.volume = (value, units)
        return ""

    def _cmd_direction(self, data: str) -> str:
        if not data:
            return "INF" if self.model.motion is Motion.INFUSE else "WDR"
        if data not in ("INF", "WDR", "REV"):
            return "?OOR"
        if self.moving or self.paused:
            return "?NA"
        if data == "REV":
            flipped = Motion.WITHDRAW if self.model.motion is Motion.INFUSE else Motion.INFUSE
            self.model.set_motion(flipped)
        else:
            self.model.set_motion(Motion.INFUSE if data == "INF" else Motion.WITHDRAW)
        return ""

    def _cmd_run(self, data: str) -> str:
        if data:
            return "?OOR"  # pumping programs (RUN n) are not simulated
        if self.moving:
            return ""
        low, high = self.model.rate_limits_ml_h()
        if not low <= self._rate_ml_h(self.rate) <= high:
            return "?OOR"
        if not self.paused:
            amount, units = self.volume
            self.model.set_target(amount * VOLUME_UNITS_ML[units])
        self.paused = False
        self.model.set_rate(self._rate_ml_h(self.rate))
        self.model.start()
        return ""

    def _cmd_stop(self, data: str) -> str:
        if data:
            return "?OOR"
        if self.moving:
            self.model.stop(reset_phase=False)
            self.paused = True
        else:
            self._halt()
        return ""

    def _cmd_dispensed(self, data: str) -> str:
        if data:
            return "?OOR"
        units = self.volume[1]
        infused, withdrawn = self.model.counters_ml()
        size = VOLUME_UNITS_ML[units]
        if max(infused, withdrawn) / size >= 9999.5:
            units, size = "ML", 1.0
        return f"I{show_number(infused / size)}W{show_number(withdrawn / size)}{units}"

    def _cmd_clear(self, data: str) -> str:
        if data not in ("INF", "WDR"):
            return "?OOR"
        if self.moving:
            return "?NA"
        if data == "INF":
            self.model.clear_infused()
        else:
            self.model.clear_withdrawn()
        return ""

    def _cmd_safe(self, data: str) -> str:
        if not data:
            return str(self.safe_s)
        if not data.isdigit() or len(data) > 3 or int(data) > 255:
            return "?OOR"
        self.safe_s = int(data)
        self._last_valid_at = self.clock.monotonic() if self.safe_s else None
        self._wake()
        return ""

    def _cmd_address(self, data: str) -> str:
        if not data.isdigit() or int(data) > 99:
            return "?OOR"
        self.address = int(data)
        return ""


_HANDLERS: dict[str, Callable[[SimulatedPump, str], str]] = {
    "": SimulatedPump._cmd_status,
    "VER": SimulatedPump._cmd_version,
    "DIA": SimulatedPump._cmd_diameter,
    "RAT": SimulatedPump._cmd_rate,
    "VOL": SimulatedPump._cmd_volume,
    "DIR": SimulatedPump._cmd_direction,
    "RUN": SimulatedPump._cmd_run,
    "STP": SimulatedPump._cmd_stop,
    "DIS": SimulatedPump._cmd_dispensed,
    "CLD": SimulatedPump._cmd_clear,
    "SAF": SimulatedPump._cmd_safe,
    "*ADR": SimulatedPump._cmd_address,
}
