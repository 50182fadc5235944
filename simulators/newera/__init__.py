"""The New Era protocol engine: simulated New Era pumps on one serial line."""

from simulators.newera.simulator import NewEraSimulator, profile_rate_limits
from simulators.newera.unit import NewEraUnit, SimPumpConfig

__all__ = ["NewEraSimulator", "NewEraUnit", "SimPumpConfig", "profile_rate_limits"]
