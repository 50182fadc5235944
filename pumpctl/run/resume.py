"""Resuming a run whose controller died: reconcile the journal with the pump's counter.

After a crash the journal knows what had been delivered at the last sample; the pump knows
its own counter, which kept counting until the pump's watchdog (or its volume-to-dispense)
stopped it. The counter may legitimately be ahead of the journal by what the last rate could
deliver in one poll interval plus the watchdog timeout; anything else (a counter below the
journal, a pump that is still running, a different pump) means the two do not describe the
same infusion, and resuming would be guessing. Then we refuse.

A resumed run is a new run (new journal) that records `resume_of`, the reconciled volume
already delivered (its `baseline_ml`) and the plan time that volume corresponds to
(`plan_offset_s`): it follows the rest of the plan from there, so the rates stay as planned
and only the remaining volume is delivered.

A run is resumed at most once, and only the latest link of its chain of resumes can be
(`pumpctl.run.chain`): the volume already delivered is then never less than what every link
of the chain journaled, and what remains is never more than the plan.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pumpctl.drivers.base import PumpDriver, PumpError
from pumpctl.journal import JournalError, find_run, read_records
from pumpctl.plan.program import RateProgram
from pumpctl.run.chain import ChainIndex, ResumeRefused, chain_totals
from pumpctl.run.controller import ResumePoint
from pumpctl.safety import SafetyMonitor, SafetyTolerances

__all__ = ["JournalState", "ResumeRefused", "journal_delivered", "load_journal_state",
           "reconcile"]


@dataclass(frozen=True)
class JournalState:
    """What a run's journal says about where it stopped."""

    run_id: str
    path: Path
    header: dict[str, Any]
    program: RateProgram
    outcome: str | None  # None: no summary, the controller died
    baseline_ml: float
    delivered_ml: float  # at the last sample (or the summary)
    last_rate_ml_h: float
    poll_s: float
    watchdog_s: int | None
    vtbi_total_ml: float | None
    chain: tuple[str, ...] = ()  # the resume chain up to this run, root first
    chain_ml: float = 0.0  # what every link of the chain journaled as delivered, together


def journal_delivered(records: list[dict[str, Any]]) -> float | None:
    """A journal's cumulative delivered volume: its summary's, else its last sample's."""
    summary = next((r for r in reversed(records) if r.get("type") == "summary"), None)
    if summary is not None:
        return float(summary["delivered_volume_ml"])
    sample = next((r for r in reversed(records) if r.get("type") == "sample"), None)
    return float(sample["infused_ml"]) if sample is not None else None


def load_journal_state(runs_dir: Path | str, ref: str) -> JournalState:
    """Where run `ref` stopped, by its journal; refused unless it is the latest link of its
    resume chain."""
    path = find_run(runs_dir, ref)
    records = read_records(path)
    header = next((r for r in records if r.get("type") == "header"), None)
    if header is None:
        raise ResumeRefused(f"run {ref!r}: journal {path} has no header")
    index = ChainIndex(path.parent)
    run_id = str(header.get("run_id", path.stem))
    index.refuse_unless_latest(run_id)
    try:
        program = RateProgram.model_validate(header["program"])
    except (KeyError, ValueError) as exc:
        raise ResumeRefused(f"run {ref!r}: journal header has no valid program "  # one line:
                            f"({' '.join(str(exc).split())[:240]})") from None
    summary = next((r for r in reversed(records) if r.get("type") == "summary"), None)
    samples = [r for r in records if r.get("type") == "sample"]
    baseline = float(header.get("baseline_ml") or 0.0)
    delivered = float(samples[-1]["infused_ml"]) if samples else baseline
    if summary is not None:
        delivered = float(summary.get("delivered_volume_ml", delivered))
    last_rate = max((float(s.get("rate_ml_h") or 0.0) for s in samples[-3:]), default=0.0)
    wd = header.get("watchdog_s")
    vtbi = samples[-1].get("vtbi_ml") if samples else None
    links = index.links(run_id)
    volumes: dict[str, float | None] = {run_id: delivered}
    for link in links[:-1]:
        try:
            volumes[link] = journal_delivered(read_records(index.paths[link]))
        except (KeyError, JournalError, ValueError, TypeError) as exc:
            raise ResumeRefused(f"run {run_id}: the journal of {link}, an earlier link of its "
                                f"resume chain, cannot be read ({exc})") from None
    totals = chain_totals(index, run_id, volumes)
    return JournalState(
        run_id=run_id, path=path, header=header, program=program,
        outcome=str(summary["outcome"]) if summary else None, baseline_ml=baseline,
        delivered_ml=delivered, last_rate_ml_h=last_rate,
        poll_s=float(header.get("poll_s") or 1.0), watchdog_s=int(wd) if wd else None,
        vtbi_total_ml=float(vtbi) if vtbi is not None else None, chain=totals.links,
        chain_ml=totals.delivered_ml)


async def reconcile(state: JournalState, driver: PumpDriver, *,
                    tolerances: SafetyTolerances | None = None,
                    slack_s: float = 2.0) -> ResumePoint:
    """Compare the journal with the pump; return where to resume, or raise ResumeRefused."""
    rid = state.run_id
    if state.outcome == "completed":
        raise ResumeRefused(f"run {rid} already completed: nothing to resume")
    if state.outcome == "faulted":
        raise ResumeRefused(f"run {rid} ended faulted ({state.path}): start a new run after "
                            "checking the pump and line, do not resume")
    try:
        identity = await driver.identify()
        status = await driver.status()
    except PumpError as exc:
        raise ResumeRefused(f"run {rid}: cannot read the pump to reconcile: {exc}") from None
    was = state.header.get("pump") or {}
    if was and (was.get("model"), was.get("address")) != (identity.model, identity.address):
        raise ResumeRefused(
            f"run {rid} used pump {was.get('model')} at address {was.get('address')}, "
            f"this is {identity.model} at address {identity.address}")
    if status.state.is_moving:
        with contextlib.suppress(PumpError):
            await driver.stop()
        why = ("its watchdog did not stop it" if driver.capabilities.watchdog
               else "it has no watchdog: nothing stopped it when the run ended")
        raise ResumeRefused(f"run {rid}: the pump was still {status.state.value} ({why}); "
                            "stop sent, not resumed: what it delivered unsupervised is on "
                            "its counter (pumpctl pump ... dispensed); start a new run for "
                            "what remains")
    monitor = SafetyMonitor(state.program, tolerances or SafetyTolerances(),
                            driver.capabilities)
    pump_total = state.baseline_ml + status.infused_ml
    journal = state.delivered_ml
    tol = monitor.volume_tolerance(max(journal, pump_total))
    window_s = state.poll_s + (state.watchdog_s or 0) + slack_s
    may_have_run = state.last_rate_ml_h * window_s / 3600.0
    low, high = journal - tol, journal + may_have_run + tol
    if state.vtbi_total_ml is not None:
        high = min(high, state.vtbi_total_ml + monitor.quantum(state.vtbi_total_ml))
    if not low <= pump_total <= high:
        raise ResumeRefused(
            f"run {rid}: pump counter says {pump_total:.4g} mL delivered, journal says "
            f"{journal:.4g} mL; allowed {low:.4g}-{high:.4g} mL (tolerance {tol:.3g} mL, "
            f"{window_s:.0f} s at {state.last_rate_ml_h:g} mL/h): refusing to resume")
    # Never less than every link of the chain journaled, so never more than the plan remains.
    delivered = max(pump_total, state.chain_ml)
    if monitor.is_complete(delivered):
        raise ResumeRefused(f"run {rid}: the pump already delivered {delivered:.4g} mL of "
                            f"{monitor.cap_ml:.4g} mL: nothing remains")
    offset = monitor.plan.time_for_volume(delivered)
    return ResumePoint(resume_of=rid, baseline_ml=delivered, plan_offset_s=offset,
                       journal_ml=journal, pump_ml=pump_total)
