"""`pumpctl report`: one run's picture (PNG) and a self-contained HTML page around it.

The page embeds the picture as a data URI (one file to mail or archive), and lists what a
reviewer looks for: the summary, soft-limit overrides with their reasons, every alarm, the
monitoring timeline, and for an accuracy run the mean error and the trumpet table.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path
from typing import Any

from pumpctl.analysis.report_data import RunData, load_run
from pumpctl.analysis.report_plot import png_bytes

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.25em .6em;
text-align:left}th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}
.faulted,.aborted,.interrupted{color:#b2182b;font-weight:bold}.completed{color:#1a7a1a;
font-weight:bold}img{max-width:100%;border:1px solid #ccc}.none{color:#666}
"""


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows) + \
        "</table>"


def _summary(d: RunData) -> str:
    h, s = d.header, d.summary or {}
    pump = h.get("pump") or {}
    started = datetime.fromtimestamp(float(h["t"])).strftime("%Y-%m-%d %H:%M:%S") \
        if "t" in h else "-"
    rows = [("run", _e(d.run_id)), ("plan", _e(h.get("plan"))),
            ("outcome", f'<span class="{_e(d.outcome)}">{_e(d.outcome)}</span>'
             + (f" ({_e(s.get('reason'))})" if s.get("reason") else "")),
            ("started", _e(started)),
            ("drug", f"{_e(h.get('drug'))} {_e(h.get('concentration_mg_per_ml'))} mg/mL, "
                     f"weight {_e(h.get('weight_kg'))} kg"),
            ("volume delivered / planned", f"{_num(s.get('delivered_volume_ml'))} / "
                                           f"{_num(s.get('planned_volume_ml'))} mL"),
            ("dose delivered / planned", f"{_num(s.get('delivered_dose_mg'))} / "
                                         f"{_num(s.get('planned_dose_mg'))} mg"),
            ("measured volume (sensor)", f"{_num(s.get('measured_volume_ml'))} mL"),
            ("duration", f"{_num(s.get('duration_s'), 0)} s"),
            ("alarms", _e(s.get("alarms", len(d.alarms)))),
            ("stop confirmed", _e(s.get("stop_confirmed"))),
            ("pump", f"{_e(pump.get('model'))} fw {_e(pump.get('firmware'))} at "
                     f"{_e(h.get('pump_url'))}"),
            ("operator", f"{_e(h.get('operator'))}@{_e(h.get('host'))}"),
            ("pumpctl", _e(h.get("software_version"))), ("journal", _e(d.path))]
    return _table(rows)


def _list(items: list[str], empty: str) -> str:
    if not items:
        return f'<p class="none">{_e(empty)}</p>'
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _accuracy(d: RunData) -> str:
    if d.accuracy_error:
        return f"<h2>Accuracy</h2><p class='faulted'>not analysed: {_e(d.accuracy_error)}</p>"
    acc = d.accuracy
    if acc is None:
        return ""
    i = acc.inputs
    spec = d.header.get("accuracy", {})
    rows = "".join(f"<tr><td class=n>{p.window_min:g}</td><td class=n>{p.ep_max_pct:+.2f}</td>"
                   f"<td class=n>{p.ep_min_pct:+.2f}</td><td class=n>{p.positions}</td></tr>"
                   for p in acc.trumpet)
    return ("<h2>Accuracy (gravimetric)</h2>"
            + _table([("set rate", f"{i.rate_ml_h:g} mL/h"),
                      ("mean error A", f"<b>{acc.mean_error_pct:+.2f} %</b> over "
                                       f"{i.start_min:g}-{acc.period_end_min:g} min"),
                      ("readings", f"{acc.samples} every {i.interval_min:g} min"),
                      ("density", f"{i.density_g_ml:g} g/mL"),
                      ("evaporation added back", f"{i.evaporation_g_min * 1000:g} mg/min"),
                      ("balance", f"{_e((spec.get('balance') or {}).get('model'))} at "
                                  f"{_e(spec.get('balance_url'))}"),
                      ("rig", _e(spec.get("rig")))])
            + "<table><tr><th>window P (min)</th><th>Ep(max) %</th><th>Ep(min) %</th>"
              f"<th>windows</th></tr>{rows}</table>")


def render_html(d: RunData, png: bytes) -> str:
    alarms = [f"<b>{_e(a.get('kind'))}</b> at {a['t_min']:.2f} min ({_e(a.get('source'))}): "
              f"{_e(a.get('message'))}" for a in d.alarms]
    overrides = [f"{_e(o.get('field'))} = {_e(o.get('value'))} beyond {_e(o.get('bound'))} "
                 f"{_e(o.get('limit'))}: <i>{_e(o.get('reason'))}</i>" for o in d.overrides]
    timeline = [f"{m.t_min:g} min: {_e(m.label)}" for m in d.monitoring]
    data = base64.b64encode(png).decode("ascii")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pumpctl run {_e(d.run_id)}</title>
<style>{_STYLE}</style></head><body>
<h1>Run {_e(d.run_id)}: {_e(d.header.get('plan'))}</h1>
<p>Research Use Only. Generated by pumpctl from the run's journal.</p>
<img alt="planned and delivered volume and rate over time for run {_e(d.run_id)}"
 src="data:image/png;base64,{data}">
<h2>Summary</h2>{_summary(d)}
{_accuracy(d)}
<h2>Alarms</h2>{_list(alarms, "no alarms")}
<h2>Soft-limit overrides</h2>{_list(overrides, "no overrides")}
<h2>Monitoring timeline</h2>{_list(timeline, "no monitoring timeline in the plan")}
</body></html>
"""


def write_report(journal: Path, out_dir: Path) -> tuple[Path, Path]:
    """Write `<run>.png` and `<run>.html` for the journal file `journal` into `out_dir`."""
    data = load_run(journal)
    png = png_bytes(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    png_path = out_dir / f"{data.run_id}.png"
    html_path = out_dir / f"{data.run_id}.html"
    png_path.write_bytes(png)
    html_path.write_text(render_html(data, png), encoding="utf-8")
    return png_path, html_path
