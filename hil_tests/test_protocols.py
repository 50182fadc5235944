"""Acceptance: every seed plan runs to completion on every simulator kind, in virtual time,
over the in-memory link and over a real pty (the standard plan over TCP too), delivering the
plan to within the pump's resolution."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pumpctl.safety import counter_quantum_ml

from .conftest import SEED_PLANS, STANDARD_PLAN, compile_seed, run_scenario
from .kinds import Link, SimKind

PLAN_LINKS = [(plan, link) for plan in SEED_PLANS for link in ("memory", "pty")]
PLAN_LINKS.append((STANDARD_PLAN, "tcp"))


def test_there_are_seed_plans_to_run() -> None:
    names = {p.name for p in SEED_PLANS}
    assert "ketamine-0.5mgkg-40min.yaml" in names and len(names) >= 7


@pytest.mark.parametrize(("plan", "link"), PLAN_LINKS,
                         ids=[f"{plan.stem}-{link}" for plan, link in PLAN_LINKS])
def test_seed_plan_completes(sim_kind: SimKind, plan: Path, link: Link, tmp_path: Path) -> None:
    program = compile_seed(plan)
    # The standard plan at the default 1 Hz; the others (and every pty run, where each request
    # crosses the kernel twice) poll less often to keep the suite fast: the path is the same.
    poll = 1.0 if (link == "memory" and plan == STANDARD_PLAN) else (3.0 if link == "memory"
                                                                   else 10.0)
    wall = time.perf_counter()
    run = run_scenario(sim_kind, program, tmp_path, link=link, poll_s=poll)
    wall = time.perf_counter() - wall
    r = run.result
    assert r.outcome == "completed", (r.reason, run.alarms())
    resolution = max(program.limits.volume_resolution_ml,
                     counter_quantum_ml(program.total_volume_ml))
    assert abs(r.delivered_volume_ml - program.total_volume_ml) <= resolution
    assert abs(run.infused_ml - program.total_volume_ml) <= resolution  # the pump's counter
    assert not run.running and r.stop_confirmed
    assert run.alarms() == []
    assert run.states() == ["started", "stopping", "stopped", "completed"]
    segments = [rec for rec in run.records if rec["type"] == "segment"]
    assert [s["rate_ml_h"] for s in segments] == [s.rate_ml_h for s in program.segments]
    # Rate changes happen on schedule (plan time = run time here: no pauses).
    for rec, seg in zip(segments, program.segments, strict=True):
        assert rec["elapsed_s"] - segments[0]["elapsed_s"] == pytest.approx(seg.start_s, abs=0.5)
    assert r.duration_s == pytest.approx(program.duration_s, abs=poll + 1.0)
    assert wall < program.duration_s  # virtual time: faster than real time, whatever the host
