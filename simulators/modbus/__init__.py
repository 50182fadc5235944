"""The Modbus protocol engine: simulated pumps serving any register map (configs/modbus/)."""

from simulators.modbus.simulator import ModbusSimulator, UnitConfig, map_rate_limits
from simulators.modbus.unit import ModbusUnit

__all__ = ["ModbusSimulator", "ModbusUnit", "UnitConfig", "map_rate_limits"]
