"""Telemetry: messages per second through a pump's sink to a real Mosquitto, and spool replay.

The sink is what a run streams through: each record goes to the spool on disk first, then
over one MQTT connection. Plain aiomqtt publishing the same prepared payloads one after the
other is measured beside it as the reference (the ratio is in the note). The target is
1,000 msg/s for one sink: a whole 1,000-pump fleet's 1 Hz telemetry through one connection.

Spool replay: a pump that streamed while the broker was down has its messages on disk; when
the broker is back, the next run (or `pumpctl telemetry flush`) sends them oldest first. The
figure is how fast that replay empties the spool; at the 1,000 msg/s target an hour-long
outage of one pump (3,600 samples) is sent in under four seconds.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiomqtt

from bench.table import Bench, Figure, at_least, row
from pumpctl.telemetry.mapping import RecordMapper
from pumpctl.telemetry.runtime import telemetry_for_run
from pumpctl.telemetry.topics import Topics
from tests.telemetry.broker import Mosquitto, free_port


def sample(seq: int) -> dict[str, Any]:
    t = 1.8e9 + seq
    return {"type": "sample", "seq": seq, "t": t, "elapsed_s": float(seq), "run_id": "bench",
            "channel": "pump0", "state": "infusing", "rate_ml_h": 36.0,
            "infused_ml": seq * 0.01, "withdrawn_ml": 0.0, "planned_ml": seq * 0.01,
            "vtbi_ml": 24.0, "remaining_ml": 24.0 - seq * 0.01, "remaining_s": 2400.0 - seq,
            "dose_mg": seq * 0.1, "dose_mg_per_kg": seq * 0.1 / 70, "dose_rate_mg_h": 360.0,
            "segment": 0, "alarm": None}


async def sink_throughput(url: str, qos: int, n: int, spool: Path) -> float:
    records = [sample(i) for i in range(n)]
    async with telemetry_for_run(url, site="bench", pump_id=f"q{qos}", telemetry_qos=qos,
                                 spool_dir=spool, spool_max_messages=n + 10,
                                 drain_timeout_s=120) as sink:
        await sink.link.connected.wait()
        t0 = time.perf_counter()
        for record in records:
            sink.emit(record)
        drained = await sink.drain(120)
        wall = time.perf_counter() - t0
    assert drained, "spool did not drain"
    return n / wall


async def raw_throughput(port: int, qos: int, n: int) -> float:
    """Plain aiomqtt, one publish after the other, payloads prepared beforehand."""
    mapper = RecordMapper(Topics.for_pump("bench", "raw"), site="bench", pump_id="raw",
                          telemetry_qos=qos)
    payloads = [mapper.map(sample(i))[0].payload for i in range(n)]
    async with aiomqtt.Client("127.0.0.1", port) as client:
        t0 = time.perf_counter()
        for payload in payloads:
            await client.publish("pumpctl/bench/raw/telemetry", payload, qos=qos)
        return n / (time.perf_counter() - t0)


async def spool_replay(broker: Mosquitto, n: int, spool: Path) -> float:
    """Spool `n` samples with no broker to reach, then time their replay once it is back."""
    nowhere = f"mqtt://127.0.0.1:{free_port()}"
    async with telemetry_for_run(nowhere, site="bench", pump_id="replay", telemetry_qos=1,
                                 spool_dir=spool, spool_max_messages=n + 100,
                                 drain_timeout_s=0.01) as sink:
        for i in range(n):
            sink.emit(sample(i))
    async with telemetry_for_run(broker.url, site="bench", pump_id="replay", telemetry_qos=1,
                                 spool_dir=spool, spool_max_messages=n + 100,
                                 drain_timeout_s=120) as sink:
        waiting = sink.spool.pending
        assert waiting >= n, f"only {waiting} of {n} messages were spooled"
        await sink.link.connected.wait()
        t0 = time.perf_counter()
        drained = await sink.drain(120)
        wall = time.perf_counter() - t0
    assert drained, "the spool was not replayed"
    return waiting / wall


@row("telemetry", about="MQTT telemetry msg/s through a pump's sink (QoS 0/1), spool replay")
def telemetry(bench: Bench) -> list[Figure]:
    n = 3_000 if bench.quick else 20_000
    broker = Mosquitto(bench.scratch("broker")).start()
    try:
        async def measure() -> list[Figure]:
            figures = []
            for qos in (0, 1):
                sink = await sink_throughput(broker.url, qos, n, bench.scratch(f"spool-q{qos}"))
                raw = await raw_throughput(broker.port, qos, n)
                figures.append(Figure(f"telemetry through one sink, QoS {qos}", sink, "msg/s",
                                      at_least(1_000), note=f"{n} samples; plain aiomqtt "
                                      f"{raw:,.0f} msg/s ({sink / raw:.2f}x of it)"))
            replay = await spool_replay(broker, n // 4, bench.scratch("spool-replay"))
            figures.append(Figure("spool replay after a broker outage, QoS 1", replay, "msg/s",
                                  at_least(1_000), note=f"{n // 4} samples spooled while the "
                                  "broker was away"))
            return figures

        return asyncio.run(measure())
    finally:
        broker.stop()
