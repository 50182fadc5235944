"""One run of a plan on a pump: the controller's timeline and the parts it calls.

Nothing here knows a protocol: drivers are reached through `pumpctl.drivers.base`.
"""

