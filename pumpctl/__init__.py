"""pumpctl: infusion-pump controller companion and HIL test harness (Research Use Only)."""

__version__ = "0.1.0"
