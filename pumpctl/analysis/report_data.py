"""What a run report shows, read out of a run's journal (no plotting here).

Times are minutes since the pump was started (the `started` state record), the axis every
picture of the report shares. Monitoring points are plan times, placed on that axis as if the
run had not paused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pumpctl.analysis.accuracy import AccuracyInputs, AccuracyResult, FloatArray, analyse
from pumpctl.errors import UsageError
from pumpctl.journal import read_records, summarize_run


@dataclass
class Marker:
    t_min: float
    label: str
    kind: str


@dataclass
class RunData:
    run_id: str
    path: Path
    header: dict[str, Any]
    summary: dict[str, Any] | None
    outcome: str
    t_min: FloatArray  # of each status sample
    planned_ml: FloatArray
    delivered_ml: FloatArray  # the pump's counter (plus a resumed run's baseline)
    measured_ml: FloatArray | None  # the volume sensor, where fitted
    rate_ml_h: FloatArray
    planned_rate: list[tuple[float, float]]  # (t_min, mL/h) steps from the program
    planned_curve: list[tuple[float, float]] = field(default_factory=list)  # (t_min, mL)
    segments: list[Marker] = field(default_factory=list)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    alarm_marks: list[Marker] = field(default_factory=list)
    monitoring: list[Marker] = field(default_factory=list)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    accuracy: AccuracyResult | None = None
    accuracy_error: str | None = None  # why an accuracy run could not be analysed
    balance_t_min: FloatArray | None = None  # accuracy runs: each balance reading
    balance_ml: FloatArray | None = None  # its mass change over the density

    @property
    def end_min(self) -> float:
        ends = [float(self.t_min[-1])] if self.t_min.size else [0.0]
        ends += [t for t, _ in self.planned_curve]
        ends += [m.t_min for m in self.monitoring if m.kind != "assessment"]
        return max(ends)


def _array(samples: list[dict[str, Any]], key: str) -> FloatArray:
    return np.asarray([np.nan if s.get(key) is None else float(s[key]) for s in samples],
                      dtype=np.float64)


def load_run(path: Path) -> RunData:
    records = read_records(path)
    header = next((r for r in records if r["type"] == "header"), None)
    if header is None:
        raise UsageError(f"{path}: no header record; not a run journal")
    info = summarize_run(path)
    started = next((r["elapsed_s"] for r in records
                    if r["type"] == "state" and r.get("state") == "started"), None)
    t0 = float(started if started is not None else 0.0)

    def minutes(record: dict[str, Any]) -> float:
        return (float(record["elapsed_s"]) - t0) / 60.0

    samples = [r for r in records if r["type"] == "sample"]
    measured = _array(samples, "measured_ml")
    program = header.get("program") or {}
    planned_rate = [(float(s["start_s"]) / 60, float(s["rate_ml_h"]))
                    for s in program.get("segments", [])]
    planned_curve = [(0.0, 0.0)]
    for seg in program.get("segments", []):
        end = (float(seg["start_s"]) + float(seg["duration_s"])) / 60
        planned_curve += [(float(seg["start_s"]) / 60, planned_curve[-1][1]),
                          (end, planned_curve[-1][1] + float(seg["volume_ml"]))]
    if planned_rate:
        planned_rate.append((planned_curve[-1][0], 0.0))
    data = RunData(
        run_id=info.run_id, path=path, header=header,
        summary=next((r for r in reversed(records) if r["type"] == "summary"), None),
        outcome=info.outcome, t_min=np.asarray([minutes(s) for s in samples], dtype=np.float64),
        planned_ml=_array(samples, "planned_ml"), delivered_ml=_array(samples, "infused_ml"),
        measured_ml=None if np.all(np.isnan(measured)) else measured,
        rate_ml_h=_array(samples, "rate_ml_h"), planned_rate=planned_rate,
        planned_curve=planned_curve,
        overrides=list(header.get("overrides") or []))
    for r in records:
        if r["type"] == "segment" and r.get("index", 0) > 0:
            data.segments.append(Marker(minutes(r), f"segment {r['index']}", "segment"))
        elif r["type"] == "alarm":
            data.alarms.append({**r, "t_min": minutes(r)})
            data.alarm_marks.append(Marker(minutes(r), str(r.get("kind")), "alarm"))
    for m in program.get("monitoring", []):
        data.monitoring.append(Marker(float(m["at_s"]) / 60, str(m["label"]), str(m["kind"])))
    if "accuracy" in header:
        _add_accuracy(data, records)
    return data


def _add_accuracy(data: RunData, records: list[dict[str, Any]]) -> None:
    spec = data.header["accuracy"]
    weighings = [r for r in records if r["type"] == "weighing"]
    masses = [float(r["mass_g"]) for r in weighings]
    if masses:
        density = float(spec.get("density_g_ml") or 0.998)
        data.balance_t_min = np.asarray([float(r["t_min"]) for r in weighings])
        data.balance_ml = (np.asarray(masses) - masses[0]) / density
    try:
        inputs = AccuracyInputs(
            rate_ml_h=float(spec["rate_ml_h"]), interval_min=float(spec["interval_min"]),
            density_g_ml=float(spec["density_g_ml"]), start_min=float(spec["start_min"]),
            period_min=float(spec["period_min"]),
            windows_min=tuple(float(w) for w in spec["windows_min"]),
            evaporation_g_min=float(spec.get("evaporation_g_min", 0.0)))
        count = round(float(spec["duration_min"]) / inputs.interval_min) + 1
        data.accuracy = analyse(masses[:count], inputs)
    except (KeyError, TypeError, ValueError, UsageError) as exc:
        # A run stopped early has too few readings: the report says so instead of failing.
        data.accuracy_error = str(exc)
