"""Pump drivers: one `PumpDriver` protocol, one implementation per wire protocol."""
