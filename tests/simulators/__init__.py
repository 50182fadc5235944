"""Simulator physics and fault-spec tests."""
