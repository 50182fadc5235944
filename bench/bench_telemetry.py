"""Telemetry benchmarks against a local Mosquitto (started here on a free loopback port).

    .venv/bin/python bench/bench_telemetry.py [--messages 20000] [--pumps 100] [--seconds 10]

1. Throughput: telemetry messages per second through the sink (spool on disk, then the MQTT
   link) to the broker, at QoS 0 and QoS 1, next to plain aiomqtt publishing the same
   payloads with nothing in between; plus what one `emit` costs the controller.
2. Poll lateness: N real controllers (the standard plan on embedded simulated pumps) polling
   at 1 Hz in real time in this process, without telemetry and then each streaming to the
   broker (one MQTT connection and one spool per pump): p50/p99/max of how late each poll
   ran, side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiomqtt  # noqa: E402

from pumpctl.clock import LoopClock  # noqa: E402
from pumpctl.plan.compile import compile_plan_file  # noqa: E402
from pumpctl.run.controller import InfusionController  # noqa: E402
from pumpctl.run.fleet import request_stop_all, run_channels  # noqa: E402
from pumpctl.telemetry.mapping import RecordMapper  # noqa: E402
from pumpctl.telemetry.runtime import TelemetrySink, telemetry_for_run  # noqa: E402
from pumpctl.telemetry.topics import Topics  # noqa: E402
from simulators.newera.embedded import embedded_newera  # noqa: E402
from tests.telemetry.broker import Mosquitto  # noqa: E402

STANDARD = REPO / "configs" / "plans" / "ketamine-0.5mgkg-40min.yaml"


def sample(seq: int) -> dict[str, Any]:
    t = 1.8e9 + seq
    return {"type": "sample", "seq": seq, "t": t, "elapsed_s": float(seq), "run_id": "bench",
            "channel": "pump0", "state": "infusing", "rate_ml_h": 36.0,
            "infused_ml": seq * 0.01, "withdrawn_ml": 0.0, "planned_ml": seq * 0.01,
            "vtbi_ml": 24.0, "remaining_ml": 24.0 - seq * 0.01, "remaining_s": 2400.0 - seq,
            "dose_mg": seq * 0.1, "dose_mg_per_kg": seq * 0.1 / 70, "dose_rate_mg_h": 360.0,
            "segment": 0, "alarm": None}


async def sink_throughput(broker: Mosquitto, qos: int, n: int, workdir: Path) -> dict[str, float]:
    records = [sample(i) for i in range(n)]
    async with telemetry_for_run(broker.url, site="bench", pump_id=f"q{qos}", telemetry_qos=qos,
                                 spool_dir=workdir / f"spool-q{qos}",
                                 spool_max_messages=n + 10, drain_timeout_s=120) as sink:
        await sink.link.connected.wait()
        t0 = time.perf_counter()
        for record in records:
            sink.emit(record)
        t_emitted = time.perf_counter()
        drained = await sink.drain(120)
        t_done = time.perf_counter()
    assert drained, "spool did not drain"
    return {"msgs_per_s": n / (t_done - t0), "emit_us": (t_emitted - t0) / n * 1e6}


async def raw_throughput(broker: Mosquitto, qos: int, n: int) -> float:
    """Plain aiomqtt, one publish after the other, payloads prepared beforehand."""
    mapper = RecordMapper(Topics.for_pump("bench", "raw"), site="bench", pump_id="raw",
                          telemetry_qos=qos)
    payloads = [mapper.map(sample(i))[0].payload for i in range(n)]
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        t0 = time.perf_counter()
        for payload in payloads:
            await client.publish("pumpctl/bench/raw/telemetry", payload, qos=qos)
        return n / (time.perf_counter() - t0)


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered), p99, ordered[-1]


@asynccontextmanager
async def fleet(n: int, workdir: Path, broker: Mosquitto | None,
                qos: int) -> AsyncIterator[tuple[list[InfusionController], list[TelemetrySink]]]:
    program = compile_plan_file(STANDARD, weight_kg=70)
    clock = LoopClock()
    async with AsyncExitStack() as stack:
        controllers, sinks = [], []
        for i in range(n):
            _, driver = await stack.enter_async_context(embedded_newera(clock))
            ctl = InfusionController(driver, program, journal_dir=workdir / "runs", clock=clock,
                                     channel=f"pump{i:03d}")
            if broker is not None:
                sink = await stack.enter_async_context(telemetry_for_run(
                    broker.url, site="bench", pump_id=ctl.channel, telemetry_qos=qos,
                    spool_dir=workdir / "spools" / ctl.channel, controller_hooks=ctl,
                    journal_note=ctl.journal_note))
                ctl.add_sink(sink)
                sinks.append(sink)
            controllers.append(ctl)
        yield controllers, sinks


async def poll_lateness(n: int, seconds: float, workdir: Path, broker: Mosquitto | None,
                        qos: int = 0) -> dict[str, float]:
    async with fleet(n, workdir, broker, qos) as (controllers, sinks):
        if sinks:
            await asyncio.gather(*(s.link.connected.wait() for s in sinks))
        runs = asyncio.create_task(run_channels(controllers))
        await asyncio.sleep(seconds)
        request_stop_all(controllers, "benchmark over", "bench")
        results = await runs
        published = sum(s.link.stats.published for s in sinks)
    lateness = [x for r in results for x in r.poll_lateness_s]
    p50, p99, worst = percentiles(lateness)
    return {"polls": len(lateness), "p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3,
            "max_ms": worst * 1e3, "published": published}


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
        workdir = Path(tmp)
        broker = Mosquitto(workdir / "broker").start()
        try:
            print(f"Mosquitto on 127.0.0.1:{broker.port}; {args.messages} telemetry messages")
            print(f"{'':8}{'sink msg/s':>12}{'raw aiomqtt msg/s':>20}{'sink/raw':>10}"
                  f"{'emit µs':>10}")
            for qos in (0, 1):
                s = await sink_throughput(broker, qos, args.messages, workdir)
                raw = await raw_throughput(broker, qos, args.messages)
                print(f"QoS {qos}:{s['msgs_per_s']:>14,.0f}{raw:>20,.0f}"
                      f"{s['msgs_per_s'] / raw:>10.2f}{s['emit_us']:>10.1f}")

            print(f"\n{args.pumps} controllers at 1 Hz for {args.seconds:g} s "
                  "(standard plan, embedded simulators), poll lateness:")
            print(f"{'':22}{'polls':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'published':>11}")
            rows = [("no telemetry", None, 0), ("MQTT telemetry QoS 0", broker, 0),
                    ("MQTT telemetry QoS 1", broker, 1)]
            measured = {}
            for label, target, qos in rows:
                r = await poll_lateness(args.pumps, args.seconds, workdir / label.replace(" ", "-"),
                                        target, qos)
                measured[label] = r
                print(f"{label:<22}{r['polls']:>7.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                      f"{r['max_ms']:>9.2f}{r['published']:>11.0f}")
            base = measured["no telemetry"]["p99_ms"]
            for label in ("MQTT telemetry QoS 0", "MQTT telemetry QoS 1"):
                print(f"p99 ratio {label} / none: {measured[label]['p99_ms'] / base:.2f}")
            print(json.dumps({"throughput_messages": args.messages, "pumps": args.pumps,
                              "poll_lateness": measured}))
        finally:
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--pumps", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
