"""Journal record streams that follow the controller contract exactly (contracts.md, issue 4).

Used to drive the telemetry sink the way `InfusionController` does, with known content, so
every test can compute what must come out of the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pumpctl.plan.program import (
    MonitoringEvent,
    PlannedStep,
    ProgramLimits,
    RateProgram,
    Segment,
    SoftLimitOverride,
    SyringeInfo,
)

T0 = 1_800_000_000.0  # a fixed wall-clock origin so payload timestamps are predictable


@dataclass
class SyntheticRun:
    """A two-segment infusion sampled once per `period_s`, with events sprinkled in."""

    samples: int = 20
    period_s: float = 1.0
    run_id: str = "run-0001"
    channel: str = "pump0"
    rate_ml_h: float = 36.0
    concentration_mg_per_ml: float = 10.0
    weight_kg: float | None = 70.0
    t0: float = T0
    override: bool = True
    _seq: int = field(default=0, init=False)

    def program(self) -> RateProgram:
        half = self.samples * self.period_s / 2
        seg_volume = self.rate_ml_h * half / 3600
        dose = 2 * seg_volume * self.concentration_mg_per_ml
        return RateProgram(
            plan="synthetic-test", drug="ketamine", library_name="test-lib",
            library_version="1", weight_kg=self.weight_kg,
            concentration_mg_per_ml=self.concentration_mg_per_ml, total_dose_mg=dose,
            total_volume_ml=2 * seg_volume, duration_s=2 * half,
            syringe=SyringeInfo(id="bd-60", name="BD Plastipak 60 mL", inner_diameter_mm=26.59,
                                capacity_ml=60.0),
            pump_profile="newera-ne1000",
            soft_limit_overrides=[SoftLimitOverride(
                field="dose_mg_per_kg", value=0.6, limit=0.5, bound="soft_max",
                reason="protocol amendment 3")] if self.override else [],
            steps=[PlannedStep(label="infusion", start_s=0, duration_s=2 * half, dose_mg=dose,
                               volume_ml=2 * seg_volume)],
            segments=[Segment(start_s=0, duration_s=half, rate_ml_h=self.rate_ml_h,
                              volume_ml=seg_volume),
                      Segment(start_s=half, duration_s=half, rate_ml_h=self.rate_ml_h,
                              volume_ml=seg_volume)],
            monitoring=[MonitoringEvent(at_s=half, kind="vitals", label="vital signs check"),
                        MonitoringEvent(at_s=2 * half, kind="infusion_end", label="end")],
            limits=ProgramLimits(max_rate_ml_h=100, min_rate_ml_h=0.01,
                                 max_total_volume_ml=2 * seg_volume, max_total_dose_mg=dose,
                                 volume_resolution_ml=0.001),
        )

    def _record(self, rtype: str, elapsed_s: float, /, **fields: Any) -> dict[str, Any]:
        record = {"type": rtype, "seq": self._seq, "t": self.t0 + elapsed_s,
                  "elapsed_s": elapsed_s, "run_id": self.run_id, "channel": self.channel,
                  **fields}
        self._seq += 1
        return record

    def script(self) -> list[tuple[float, dict[str, Any]]]:
        """(elapsed seconds, record) in journal order; call once per run."""
        program = self.program()
        half_n = self.samples // 2
        out: list[tuple[float, dict[str, Any]]] = []

        def add(rtype: str, at: float, /, **fields: Any) -> None:
            out.append((at, self._record(rtype, at, **fields)))

        add("header", 0.0, plan=program.plan, program=program.model_dump(mode="json"),
            library_name="test-lib", library_version="1",
            pump={"model": "NE-1000", "firmware": "3.928", "address": 0},
            pump_url="newera+sim://", overrides=[o.model_dump() for o in
                                                 program.soft_limit_overrides],
            operator="tester", host="bench", software_version="0.1.0", drug="ketamine",
            concentration_mg_per_ml=self.concentration_mg_per_ml, weight_kg=self.weight_kg,
            total_volume_ml=program.total_volume_ml, total_dose_mg=program.total_dose_mg,
            duration_s=program.duration_s)
        add("command", 0.0, op="set_rate", args={"rate_ml_h": self.rate_ml_h}, result="ok")
        add("state", 0.0, state="started", reason="plan", sender="operator")
        add("segment", 0.0, index=0, rate_ml_h=self.rate_ml_h, start_s=0.0,
            duration_s=program.segments[0].duration_s, volume_ml=program.segments[0].volume_ml)
        for k in range(self.samples):
            at = k * self.period_s
            if k == half_n:
                seg = program.segments[1]
                add("segment", at, index=1, rate_ml_h=seg.rate_ml_h, start_s=seg.start_s,
                    duration_s=seg.duration_s, volume_ml=seg.volume_ml)
                add("monitoring", at, at_s=at, kind="vitals", label="vital signs check")
            if k == half_n + 1:
                add("alarm", at, kind="readback_mismatch", source="safety",
                    message="rate read back 36.01, sent 36", value=36.01, limit=36.0)
            add("sample", at, **self.sample_fields(at, program))
        end = self.samples * self.period_s
        add("state", end, state="completed", reason="plan finished", sender="controller")
        add("summary", end, outcome="completed", planned_volume_ml=program.total_volume_ml,
            delivered_volume_ml=program.total_volume_ml, planned_dose_mg=program.total_dose_mg,
            delivered_dose_mg=program.total_dose_mg, duration_s=end, alarms=1)
        return out

    def sample_fields(self, at: float, program: RateProgram) -> dict[str, Any]:
        infused = self.rate_ml_h * at / 3600
        dose = infused * self.concentration_mg_per_ml
        return {"state": "infusing", "rate_ml_h": self.rate_ml_h, "infused_ml": infused,
                "withdrawn_ml": 0.0, "planned_ml": infused, "vtbi_ml": program.total_volume_ml,
                "remaining_ml": program.total_volume_ml - infused,
                "remaining_s": program.duration_s - at, "dose_mg": dose,
                "dose_mg_per_kg": dose / self.weight_kg if self.weight_kg else None,
                "dose_rate_mg_h": self.rate_ml_h * self.concentration_mg_per_ml,
                "segment": 0 if at < program.duration_s / 2 else 1, "alarm": None}


def expected_counts(script: list[tuple[float, dict[str, Any]]]) -> tuple[int, int]:
    """(telemetry messages, event messages) the script must produce."""
    telemetry = sum(r["type"] == "sample" for _, r in script)
    events = sum(r["type"] in ("state", "segment", "alarm", "monitoring", "summary")
                 for _, r in script)
    events += sum(len(r["overrides"]) for _, r in script if r["type"] == "header")
    return telemetry, events


def message_count(records: list[dict[str, Any]]) -> int:
    """How many MQTT messages these records become (a header is the run plus its overrides,
    a summary an event plus the updated run, a command nothing)."""
    per_type = {"header": 1, "sample": 1, "state": 1, "segment": 1, "alarm": 1,
                "monitoring": 1, "summary": 2}
    return sum(per_type.get(r["type"], 0) + (len(r["overrides"]) if r["type"] == "header"
                                             else 0) for r in records)


async def play(script: list[tuple[float, dict[str, Any]]], emit: Callable[[dict[str, Any]], None],
               *, on_tick: Callable[[dict[str, Any]], None] | None = None) -> list[float]:
    """Emit each record at its elapsed time on the running loop's clock, like the controller.

    Returns how late each emission was (seconds): under a virtual-time loop anything but zero
    would mean telemetry held up the caller.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    lateness = []
    for at, record in script:
        delay = start + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness.append(loop.time() - (start + at))
        emit(record)
        if on_tick is not None:
            on_tick(record)
    return lateness
