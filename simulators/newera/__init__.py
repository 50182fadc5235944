"""The New Era protocol engine: simulated New Era pumps on one serial line."""

from simulators.newera.pump import SimPumpConfig, SimulatedPump
from simulators.newera.simulator import NewEraSimulator, profile_rate_limits

__all__ = ["NewEraSimulator", "SimPumpConfig", "SimulatedPump", "profile_rate_limits"]
