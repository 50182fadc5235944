"""Whether the pump will stop itself if `pumpctl run` dies, and what the run says about it.

No process can handle SIGKILL, an out-of-memory kill or a power cut. What stops the pump then
is the pump itself: its communication watchdog, where it has one (the driver's capability),
halts it `n` seconds after the last valid packet. So `pumpctl run` arms it by default on a
real pump (`DEFAULT_WATCHDOG_S`), unless the pump URL says otherwise: its scheme's watchdog
parameter (`safe=N`, `watchdog=N`) picks the time, 0 turns it off, which prints a warning and
is journaled. The bench commands of `pumpctl pump` keep the pump's mode unless their URL asks (a
pump left in basic mode stays in basic mode).

A pump without a watchdog is named as such in the run header and on the console: for it, a
killed controller leaves only the pump's volume-to-dispense (set to what remains of the plan)
to stop it. Whether a driver has one is its declared capability (`PumpCapabilities.watchdog`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pumpctl.drivers.base import PumpDriver

DEFAULT_WATCHDOG_S = 5  # the monitor's no-status window: the same doubt, seen from the pump


def has_watchdog(driver: PumpDriver) -> bool:
    """Whether `driver`'s pump can stop itself when this process is gone."""
    return driver.capabilities.watchdog is not None


@dataclass(frozen=True)
class WatchdogPlan:
    """What a run does about the pump's watchdog: `seconds` to arm (0: off, None: leave the
    pump's mode as it is), `state` for the header (`armed`, `off`, `absent`, `embedded`) and
    a console `warning` when the pump will not stop itself."""

    seconds: int | None
    state: str
    note: str
    warning: str | None = None

    def header(self) -> dict[str, object]:
        return {"watchdog": self.state, "watchdog_note": self.note}


def plan_watchdog(url_safe_s: int | None, *, driver: PumpDriver,
                  url_param: str = "safe") -> WatchdogPlan:
    """The watchdog for a run on a real pump whose URL gave its watchdog parameter
    `url_param=` (the scheme's own name for it) as `url_safe_s`."""
    if not has_watchdog(driver):
        if driver.capabilities.volume_cap is None:  # e.g. a Teledyne ISCO D on Modbus
            return WatchdogPlan(None, "absent", "this pump has no watchdog and no volume limit",
                                "this pump has no watchdog and no volume limit: if pumpctl "
                                "is killed, nothing stops it")
        return WatchdogPlan(None, "absent", "this pump has no watchdog",
                            "this pump has no watchdog: if pumpctl is killed, only its "
                            "volume limit (the rest of the plan) stops it")
    if url_safe_s == 0:
        return WatchdogPlan(0, "off", f"{url_param}=0 in the pump URL",
                            f"the pump's watchdog is off ({url_param}=0): if pumpctl is killed, "
                            "the pump runs on until its volume limit (the rest of the plan)")
    if url_safe_s is None:
        return WatchdogPlan(DEFAULT_WATCHDOG_S, "armed",
                            f"watchdog {DEFAULT_WATCHDOG_S} s (default for pumpctl run)")
    return WatchdogPlan(url_safe_s, "armed",
                        f"watchdog {url_safe_s} s ({url_param}={url_safe_s})")


EMBEDDED = WatchdogPlan(None, "embedded", "simulator inside this process: it ends with it")
