"""The run report's picture: planned vs delivered, rate, the monitoring timeline, and for an
accuracy run the start-up graph and the trumpet curve in the standard's layout.

Each series differs by line style and marker as well as by colour, so a greyscale print or a
colour-blind reader can still tell them apart; every axis names its quantity and unit.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: reports are written on benches and in CI

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pumpctl.analysis.accuracy import AccuracyResult
from pumpctl.analysis.report_data import RunData

BLUE = "#1f4e9a"
ORANGE = "#d95f02"
RED = "#b2182b"
GREY = "#6b6b6b"
GREEN = "#1b7a5a"


def _markevery(n: int) -> int:
    return max(1, n // 12)


def _volume(ax: Axes, d: RunData) -> None:
    if d.planned_curve:
        t, v = zip(*d.planned_curve, strict=True)
        ax.plot(t, v, "--", color="black", lw=1.8, label="planned", zorder=4)
    ax.plot(d.t_min, d.delivered_ml, "-", color=BLUE, lw=2.6, label="delivered (pump counter)")
    if d.measured_ml is not None:
        ax.plot(d.t_min, d.measured_ml, ":", color=ORANGE, lw=2, marker="o", ms=4,
                markevery=_markevery(d.t_min.size), label="measured (volume sensor)")
    if d.balance_ml is not None and d.balance_t_min is not None:
        ax.plot(d.balance_t_min, d.balance_ml, ":", color=GREEN, lw=2, marker="s", ms=4,
                markevery=_markevery(d.balance_t_min.size), label="balance (mass / density)")
    for n, alarm in enumerate(d.alarm_marks):
        i = int(np.searchsorted(d.t_min, alarm.t_min).clip(0, max(d.t_min.size - 1, 0)))
        y = float(d.delivered_ml[i]) if d.t_min.size else 0.0
        ax.plot([alarm.t_min], [y], "X", color=RED, ms=13, mec="black", zorder=6,
                label="alarm" if n == 0 else None)
        ax.annotate(f"alarm: {alarm.label}", (alarm.t_min, y), xytext=(12, -4 - 16 * n),
                    textcoords="offset points", color=RED, fontsize=10, fontweight="bold",
                    bbox={"boxstyle": "round", "fc": "white", "ec": RED, "alpha": 0.9})
    ax.set_ylabel("volume (mL)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=9, framealpha=0.95)


def _rate(ax: Axes, d: RunData) -> None:
    if d.planned_rate:
        t, r = zip(*d.planned_rate, strict=True)
        ax.step(t, r, "--", where="post", color="black", lw=1.8, label="planned rate")
    ax.step(d.t_min, d.rate_ml_h, "-", where="post", color=BLUE, lw=2,
            label="pump rate (reported)")
    ax.set_ylabel("rate (mL/h)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)


def _boundaries(ax: Axes, d: RunData, *, label: bool) -> None:
    for seg in d.segments:
        ax.axvline(seg.t_min, color=GREY, ls=":", lw=1)
        if label:
            ax.text(seg.t_min, 0.02, f" {seg.label}", transform=ax.get_xaxis_transform(),
                    rotation=90, va="bottom", ha="right", fontsize=8, color=GREY)
    for alarm in d.alarm_marks:
        ax.axvline(alarm.t_min, color=RED, ls="-", lw=1.5)


_TIMELINE = {"vitals": ("^", GREY, "vital signs"),
             "infusion_end": ("D", "black", "end of infusion"),
             "observation_end": ("s", BLUE, "end of observation"),
             "assessment": ("o", ORANGE, "assessment")}


def _timeline(ax: Axes, d: RunData, end: float) -> None:
    shown: set[str] = set()
    for m in d.monitoring:
        if m.t_min > end + 1e-9:
            continue
        marker, colour, name = _TIMELINE.get(m.kind, ("o", GREY, m.kind))
        ax.plot([m.t_min], [0], marker, color=colour, ms=10, mec="black", ls="none",
                label=None if m.kind in shown else name)
        shown.add(m.kind)
        if m.kind != "vitals":
            ax.annotate(name, (m.t_min, 0), xytext=(0, 10), textcoords="offset points",
                        ha="right" if m.t_min > 0.9 * end else "center", fontsize=9)
    if not shown:
        ax.text(0.5, 0.5, "no monitoring timeline in this run's plan", transform=ax.transAxes,
                ha="center", va="center", color=GREY, fontsize=9)
    ax.set_yticks([])
    ax.set_ylim(-1, 1.6)
    ax.set_ylabel("monitoring", fontsize=9)
    ax.set_xlabel("time since start (min)")
    if shown:
        ax.legend(loc="lower right", fontsize=8, ncol=len(shown), framealpha=0.9)


def _startup(ax: Axes, acc: AccuracyResult) -> None:
    r = acc.inputs.rate_ml_h
    ax.axvspan(acc.inputs.start_min, acc.period_end_min, color="0.88", hatch="//",
               ec="0.7", lw=0, label="analysis period")
    ax.plot(acc.times_min, acc.flows_ml_h, "-", color=BLUE, lw=1.2, marker=".", ms=4,
            label="flow per interval $Q_i$")
    ax.axhline(r, color="black", ls="--", lw=1.5, label=f"set rate {r:g} mL/h")
    ax.set_xlabel("time since start (min)")
    ax.set_ylabel("flow (mL/h)")
    ax.set_ylim(bottom=0)
    ax.set_title("start-up graph")
    ax.set_xlim(0, float(acc.times_min[-1]) if acc.times_min.size else 1)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)


def _trumpet(ax: Axes, acc: AccuracyResult) -> None:
    p = [t.window_min for t in acc.trumpet]
    ax.plot(p, [t.ep_max_pct for t in acc.trumpet], "-", color=BLUE, marker="^", ms=8, lw=2,
            label="Ep(max)")
    ax.plot(p, [t.ep_min_pct for t in acc.trumpet], "--", color=ORANGE, marker="v", ms=8,
            lw=2, label="Ep(min)")
    ax.axhline(acc.mean_error_pct, color="black", ls="-.", lw=1.5,
               label=f"A = {acc.mean_error_pct:+.2f} %")
    ax.axhline(0, color=GREY, lw=0.8)
    ax.set_xticks(p)
    ax.set_xlim(0, max(p) * 1.05 + 1)
    ax.set_xlabel("observation window P (min)")
    ax.set_ylabel("flow error (%)")
    ax.set_title(f"trumpet curve ({acc.inputs.start_min:g}-{acc.period_end_min:g} min)")
    ax.legend(loc="upper right", fontsize=9, framealpha=0.9)


def figure(d: RunData) -> Figure:
    accuracy = d.accuracy
    rows = 4 if accuracy is not None else 3
    heights = [3, 2, 0.8] + ([3] if accuracy is not None else [])
    fig = plt.figure(figsize=(11, 4 + 2.2 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, 2, height_ratios=heights)
    vol = fig.add_subplot(grid[0, :])
    rate = fig.add_subplot(grid[1, :], sharex=vol)
    line = fig.add_subplot(grid[2, :], sharex=vol)
    end = d.end_min
    _volume(vol, d)
    _rate(rate, d)
    _timeline(line, d, end)
    for ax in (vol, rate, line):
        _boundaries(ax, d, label=ax is vol)
        ax.grid(True, color="0.85", lw=0.6)
    first = min(0.0, float(d.t_min[0]) if d.t_min.size else 0.0)
    vol.set_xlim(first - 0.015 * end, max(end, 1e-3) * 1.03)
    plt.setp(vol.get_xticklabels(), visible=False)
    plt.setp(rate.get_xticklabels(), visible=False)
    plan = d.header.get("plan", "")
    fig.suptitle(f"run {d.run_id} · {plan} · {d.outcome}", fontsize=13, fontweight="bold")
    if accuracy is not None:
        start, trumpet = fig.add_subplot(grid[3, 0]), fig.add_subplot(grid[3, 1])
        _startup(start, accuracy)
        _trumpet(trumpet, accuracy)
        for ax in (start, trumpet):
            ax.grid(True, color="0.85", lw=0.6)
    return fig


def png_bytes(d: RunData) -> bytes:
    fig = figure(d)
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()
    finally:
        plt.close(fig)
