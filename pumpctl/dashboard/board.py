"""Every pump's current state, built only from what the broker delivers.

Each message is checked against the payload models of docs/telemetry.schema.json (fields the
dashboard does not know are ignored, so a newer controller does not blank the page), then
folded into the pump it belongs to. The board keeps two views of a pump apart because they
change at very different rates:

- `run_view`: the retained `run` message (plan, drug, monitoring timeline, outcome) and the
  planned-volume curve compiled from its program; changes a few times per run.
- `live_view`: online/offline, the newest telemetry, the active alarm, the last run event,
  which monitoring points fell due, the newest delivered-volume point; changes every poll.

Deliveries are at least once (docs/telemetry.md): a message already folded in, by
`(run_id, seq, topic kind)`, is ignored, and telemetry older than the newest one shown does
not replace it (it still fills its place in the chart history).
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from pumpctl.dashboard.layout import PumpTopic
from pumpctl.telemetry.schema import (
    AlarmEvent,
    MonitoringEvent,
    OverrideEvent,
    RunPayload,
    RunStateEvent,
    SegmentEvent,
    SummaryEvent,
    TelemetryPayload,
)

log = logging.getLogger("pumpctl.dashboard.board")

MAX_PUMPS = 1000  # beyond this a misconfigured broker could exhaust memory; logged once
MAX_POINTS = 1500  # delivered-volume points kept per pump (halved in resolution when full)
SEEN_PER_PUMP = 512  # how many (run_id, seq, kind) keys are remembered for de-duplication

def _tolerant(model: type[BaseModel]) -> type[BaseModel]:
    """`model` with every check kept but unknown fields dropped instead of refused: a newer
    controller's extra field must not blank a pump on an older dashboard."""
    config = ConfigDict(extra="ignore", frozen=True)
    return type(model.__name__, (model,), {"model_config": config, "__doc__": model.__doc__})


_TELEMETRY = _tolerant(TelemetryPayload)
_RUN = _tolerant(RunPayload)
_RUN_STATE = _tolerant(RunStateEvent)
_EVENT_MODELS: dict[str, type[BaseModel]] = {
    "segment_changed": _tolerant(SegmentEvent),
    "alarm": _tolerant(AlarmEvent),
    "soft_limit_override": _tolerant(OverrideEvent),
    "monitoring_due": _tolerant(MonitoringEvent),
    "run_summary": _tolerant(SummaryEvent),
}
_RUN_KEYS = tuple(k for k in RunPayload.model_fields if k != "program")


def planned_curve(program: dict[str, Any]) -> list[list[float]]:
    """Cumulative planned volume against run time, one corner per segment boundary."""
    points: list[list[float]] = [[0.0, 0.0]]
    total = 0.0
    for seg in program.get("segments") or []:
        try:
            start = float(seg["start_s"])
            end = start + float(seg["duration_s"])
            volume = float(seg["volume_ml"])
        except (KeyError, TypeError, ValueError):
            return []
        if start > points[-1][0]:
            points.append([start, total])  # a gap between segments: nothing delivered
        total += volume
        points.append([end, round(total, 6)])
    return points


@dataclass
class Pump:
    """One pump, as the dashboard knows it."""

    site: str
    pump_id: str
    base: str
    online: bool | None = None
    status_since_ms: int | None = None  # dashboard's clock when the status last changed
    heard_ms: int | None = None  # dashboard's clock when anything last arrived
    # How far the run's clock (the `ts` it stamps) was ahead of this dashboard's when its
    # newest sample arrived: about zero, less the broker's latency, for a run in real time;
    # it grows for a run at `--speed N`, whose times then cannot be set beside ours.
    run_clock_ahead_ms: int | None = None
    run: dict[str, Any] | None = None
    planned: list[list[float]] = field(default_factory=list)
    telemetry: dict[str, Any] | None = None
    alarm: dict[str, Any] | None = None
    last_event: dict[str, Any] | None = None
    monitoring_done: list[float] = field(default_factory=list)
    history: list[list[float]] = field(default_factory=list)
    run_id: str | None = None
    _seen: set[tuple[str, int, str]] = field(default_factory=set)
    _seen_order: deque[tuple[str, int, str]] = field(default_factory=deque)

    @property
    def key(self) -> str:
        return f"{self.site}/{self.pump_id}"

    def accepts_commands(self) -> bool:
        """The run said it takes remote stop/pause, is still running, and its controller is
        connected to hear it."""
        run = self.run or {}
        return bool(run.get("remote_commands")) and run.get("run_state") == "running" \
            and self.online is True

    def run_view(self) -> dict[str, Any]:
        return {"key": self.key, "site": self.site, "pump_id": self.pump_id,
                "run": self.run, "planned": self.planned}

    def live_view(self) -> dict[str, Any]:
        return {"key": self.key, "site": self.site, "pump_id": self.pump_id,
                "run_id": self.run_id, "online": self.online,
                "status_since_ms": self.status_since_ms, "heard_ms": self.heard_ms,
                "run_clock_ahead_ms": self.run_clock_ahead_ms,
                "telemetry": self.telemetry, "alarm": self.alarm,
                "last_event": self.last_event, "monitoring_done": self.monitoring_done,
                "point": self.history[-1] if self.history else None,
                "accepts_commands": self.accepts_commands()}

    def full_view(self) -> dict[str, Any]:
        """Everything, with the chart history: for `/api/pumps` and a page's first paint."""
        return {**self.run_view(), **self.live_view(), "history": self.history}

    # -- folding messages in ------------------------------------------------------------------

    def seen(self, run_id: str, seq: int, kind: str) -> bool:
        """True if this message was folded in before; remembers it otherwise."""
        mark = (run_id, seq, kind)
        if mark in self._seen:
            return True
        self._seen.add(mark)
        self._seen_order.append(mark)
        if len(self._seen_order) > SEEN_PER_PUMP:
            self._seen.discard(self._seen_order.popleft())
        return False

    def start_run(self, run_id: str) -> None:
        """Forget everything that belonged to the previous run."""
        self.run_id = run_id
        self.run = None if self.run and self.run.get("run_id") != run_id else self.run
        self.planned = [] if self.run is None else self.planned
        self.telemetry = None
        self.alarm = None
        self.last_event = None
        self.monitoring_done = []
        self.history = []

    def add_point(self, elapsed_s: float, delivered_ml: float) -> None:
        point = [round(elapsed_s, 3), round(delivered_ml, 6)]
        if not self.history or point[0] > self.history[-1][0]:
            self.history.append(point)
        else:  # a replayed or late sample: keep the history in time order
            index = bisect.bisect_left(self.history, point)
            if index < len(self.history) and self.history[index][0] == point[0]:
                return
            self.history.insert(index, point)
        if len(self.history) > MAX_POINTS:
            # Halve the resolution of everything but the newest point, so a long run keeps
            # its whole shape in bounded memory.
            last = self.history[-1]
            self.history = [*self.history[:-1:2], last]


Change = tuple[str, str]  # (pump key, "run" | "live")


class Board:
    """All pumps. `apply` folds one message in and says which view of which pump changed."""

    def __init__(self, clock_ms: Callable[[], int] | None = None) -> None:
        self.pumps: dict[str, Pump] = {}
        self.rejected = 0  # messages that did not match their schema
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._full_warned = False

    def pump_views(self) -> list[dict[str, Any]]:
        return [self.pumps[k].full_view() for k in sorted(self.pumps)]

    def _pump(self, where: PumpTopic) -> Pump | None:
        pump = self.pumps.get(where.key)
        if pump is None:
            if len(self.pumps) >= MAX_PUMPS:
                if not self._full_warned:
                    self._full_warned = True
                    log.warning("more than %d pumps on the broker: %s and later ones not shown",
                                MAX_PUMPS, where.key)
                return None
            pump = self.pumps[where.key] = Pump(where.site, where.pump_id, where.base)
        return pump

    def apply(self, where: PumpTopic, payload: bytes) -> list[Change]:
        """Fold one message in; returns the views that changed (none for junk or repeats)."""
        pump = self._pump(where)
        if pump is None:
            return []
        now = self._clock_ms()
        pump.heard_ms = now
        try:
            if where.suffix == "status":
                return self._status(pump, payload, now)
            if where.suffix == "telemetry":
                return self._telemetry(pump, payload, now)
            handler = {"run": self._run, "event": self._event}[where.suffix]
            return handler(pump, payload)
        except (ValueError, ValidationError, UnicodeDecodeError) as exc:
            self.rejected += 1
            log.warning("ignored %s message of %s: %s", where.suffix, where.key,
                        str(exc).splitlines()[0][:200])
            return []

    def _status(self, pump: Pump, payload: bytes, now: int) -> list[Change]:
        text = payload.decode("utf-8").strip()
        if text not in ("online", "offline"):
            raise ValueError(f"status {text[:40]!r} is not online or offline")
        online = text == "online"
        if pump.online is online:
            return []
        pump.online = online
        pump.status_since_ms = now
        return [(pump.key, "live")]

    def _run(self, pump: Pump, payload: bytes) -> list[Change]:
        run = _RUN.model_validate_json(payload).model_dump()
        program = run.pop("program")
        if pump.seen(run["run_id"], run["seq"], "run"):
            return []
        if pump.run is not None and pump.run.get("run_id") == run["run_id"] \
                and pump.run.get("seq", -1) > run["seq"]:
            return []  # an older copy of this run's message
        if run["run_id"] != pump.run_id:
            pump.start_run(run["run_id"])
        pump.run = {k: run[k] for k in _RUN_KEYS if k in run}
        pump.planned = planned_curve(program)
        changes: list[Change] = [(pump.key, "run"), (pump.key, "live")]
        if run["run_state"] != "running" and run.get("delivered_volume_ml") is not None:
            # The retained summary tells where a run we did not hear to its end finished.
            pump.add_point(run["elapsed_s"], run["delivered_volume_ml"])
        return changes

    def _telemetry(self, pump: Pump, payload: bytes, now: int) -> list[Change]:
        sample = _TELEMETRY.model_validate_json(payload).model_dump()
        if pump.seen(sample["run_id"], sample["seq"], "telemetry"):
            return []
        if sample["run_id"] != pump.run_id:
            pump.start_run(sample["run_id"])
        pump.add_point(sample["elapsed_s"], sample["volume_delivered_ml"])
        newest = pump.telemetry is None or sample["seq"] > pump.telemetry["seq"]
        if newest:
            pump.telemetry = sample
            pump.run_clock_ahead_ms = sample["ts"] - now
            self._alarm_from_sample(pump, sample)
        return [(pump.key, "live")]

    @staticmethod
    def _alarm_from_sample(pump: Pump, sample: dict[str, Any]) -> None:
        kind = sample.get("alarm")
        alarm = pump.alarm
        if kind:
            if alarm is None or alarm["kind"] != kind or not alarm["active"]:
                pump.alarm = {"kind": kind, "message": "", "source": "pump status",
                              "time": sample["time"], "ts": sample["ts"],
                              "seq": sample["seq"], "active": True}
        elif alarm is not None and alarm["active"] and sample["seq"] > alarm["seq"] \
                and sample["pump_status"] != "alarm":
            pump.alarm = {**alarm, "active": False, "cleared_time": sample["time"]}

    def _event(self, pump: Pump, payload: bytes) -> list[Change]:
        body = json.loads(payload)
        name = body.get("event") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise ValueError("event payload without an `event` name")
        model = _RUN_STATE if name.startswith("run_") and name != "run_summary" \
            else _EVENT_MODELS.get(name)
        if model is None:
            raise ValueError(f"unknown event {name[:40]!r}")
        event = model.model_validate(body).model_dump()
        if pump.seen(event["run_id"], event["seq"], "event"):
            return []
        if event["run_id"] != pump.run_id:
            pump.start_run(event["run_id"])
        if name == "alarm":
            pump.alarm = {"kind": event["alarm"], "message": event["message"],
                          "source": event["alarm_source"], "time": event["time"],
                          "ts": event["ts"], "seq": event["seq"], "value": event["value"],
                          "limit": event["limit"], "active": True}
        elif name == "monitoring_due":
            if event["due_at_s"] not in pump.monitoring_done:
                pump.monitoring_done.append(event["due_at_s"])
        elif model is _RUN_STATE or name == "run_summary":
            pump.last_event = {"event": name, "reason": event.get("reason"),
                               "sender": event.get("sender"), "time": event["time"],
                               "outcome": event.get("outcome")}
        else:
            return []  # segment changes and overrides show through telemetry and the run
        return [(pump.key, "live")]
