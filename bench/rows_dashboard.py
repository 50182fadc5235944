"""The dashboard's row in the bench table: bench/bench_dashboard.py's measurement (browsers x
pumps against a local Mosquitto, `pumpctl dashboard` in its own process), as figures.

`.venv/bin/python bench/bench_dashboard.py --help` runs it alone with other sizes.
"""

from __future__ import annotations

import argparse
import asyncio

from bench.bench_dashboard import TARGET_P99_MS, measure
from bench.table import Bench, Figure, at_most, row


@row("dashboard", about="broker to browser latency, 20 browsers x 100 pumps at 1 Hz")
def dashboard(bench: Bench) -> list[Figure]:
    args = argparse.Namespace(browsers=20, pumps=100, rate=1.0,
                              seconds=5.0 if bench.quick else 20.0)
    r = asyncio.run(measure(args))
    page, plain = r["page"], r["plain_mqtt"]
    label = f"{args.browsers} browsers x {args.pumps} pumps"
    return [
        Figure(f"{label}: broker to page p99", page["p99_ms"], "ms", at_most(TARGET_P99_MS),
               note=f"p50 {page['p50_ms']:.1f} ms; plain MQTT subscriber p99 "
                    f"{plain['p99_ms']:.1f} ms; {page['n']} (browser, sample) pairs"),
        Figure(f"{label}: dashboard CPU", r["dashboard_cpu_percent"], "% of a core",
               note=f"RSS {r['dashboard_rss_mib']:.0f} MiB"),
    ]
