"""A line of simulated New Era pumps: bytes in from a host, bytes out to it.

`NewEraSimulator` is the New Era protocol engine on a `simulators.line.SimLine`: it splits
what the host sends into packets (basic and safe-mode framing), hands each to the pump(s) it
addresses (`NewEraUnit`, one per address, each over a protocol-free `SimulatedPump`), and
puts their replies back on the line. Everything else (the service task that fires faults,
the watchdog, a syringe running empty or a stall; baud pacing; clients) is the line's.

How the bytes reach a host (memory pipe, pty, TCP) is `simulators.serve`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence

from pumpctl.clock import Clock
from simulators.line import SimLine
from simulators.newera.unit import NewEraUnit, SimPumpConfig
from simulators.newera.wire import Packet, RequestFramer, split_command
from simulators.physics import RateLimits
from simulators.pump import SimulatedPump

__all__ = ["NewEraSimulator", "NewEraUnit", "SimPumpConfig", "profile_rate_limits"]


def profile_rate_limits(profile: str = "newera-ne1000") -> RateLimits:
    """Rate limits from the project's pump profile, so `?OOR` agrees with the plan compiler."""
    from pumpctl.plan.library import load_pump_profile

    loaded = load_pump_profile(profile)
    return loaded.rate_limits_ml_h


class NewEraSimulator(SimLine):
    """Simulated New Era pumps sharing one serial line.

    `pumps` is a count (addresses 0..n-1, default settings) or explicit configs. `baud`
    paces the line (None: bytes move instantly). Fault times are seconds after `start()`.
    Every client hears every reply, as on a serial line (a TCP client included).
    """

    def __init__(self, clock: Clock, pumps: int | Sequence[SimPumpConfig] = 1, *,
                 baud: int | None = None, profile: str = "newera-ne1000",
                 rate_limits: RateLimits | None = None) -> None:
        configs = ([SimPumpConfig(address=i) for i in range(pumps)] if isinstance(pumps, int)
                   else list(pumps))
        if not configs:
            raise ValueError("a simulator needs at least one pump")
        limits = rate_limits if rate_limits is not None else profile_rate_limits(profile)
        super().__init__(clock, [SimulatedPump(clock, cfg.setup(), rate_limits=limits)
                                 for cfg in configs], baud=baud, name="newera-sim")
        # The New Era face each pump shows at its address.
        self.units = [NewEraUnit(pump, cfg, emit=self.send)
                      for pump, cfg in zip(self.pumps, configs, strict=True)]
        self._framer = RequestFramer()

    def unit(self, address: int) -> NewEraUnit:
        """The New Era pump answering at `address` now."""
        for unit in self.units:
            if unit.address == address:
                return unit
        raise KeyError(f"no simulated pump at address {address}")

    def pump(self, address: int) -> SimulatedPump:
        """The protocol-free pump behind `address` (physics, faults, alarms, counters)."""
        return self.unit(address).pump

    def handle(self, token: int, data: bytes, now: float) -> None:
        # One framer for the line, whoever sent the bytes: on a serial line they interleave.
        for packet in self._framer.feed(data, now):
            self._dispatch(packet, now)

    def _dispatch(self, packet: Packet, now: float) -> None:
        command = split_command(packet.text)
        if command is None:
            return
        system = command.name.startswith("*")
        address = command.address if command.address is not None else 0
        for unit in list(self.units):
            if not system and unit.address != address:
                continue
            result = unit.on_packet(packet, command, now)
            if result is not None:
                frame, delay = result
                self.send(frame, delay=delay)
