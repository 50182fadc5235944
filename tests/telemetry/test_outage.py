"""Store-and-forward against a broker that is down, killed and restarted (virtual time).

The emitting side runs on a virtual-time loop exactly like a CI run of the controller: a
sample per simulated second. The broker is a real Mosquitto process. A subscriber with a
persistent session (saved in the broker's database before the outage) is the witness that
nothing is lost: the broker queues for it whatever the pump sends after coming back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pumpctl.clock import LoopClock, wait_until
from pumpctl.clock import run as run_clock
from pumpctl.telemetry.runtime import TelemetrySink, telemetry_for_run
from tests.telemetry.broker import Mosquitto
from tests.telemetry.conftest import Collector, ReconnectingCollector, prepare_session
from tests.telemetry.synthetic import SyntheticRun, expected_counts, message_count, play

pytestmark = pytest.mark.timeout(60)


def received_seqs(collector: Collector, suffix: str) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in collector.on(suffix)]


def seqs_of(script: list[tuple[float, dict[str, Any]]], types: tuple[str, ...]) -> list[int]:
    return [r["seq"] for _, r in script if r["type"] in types]


EVENT_TYPES = ("state", "segment", "alarm", "monitoring", "summary")


def test_broker_killed_mid_run_and_back_30s_later_loses_nothing(
        broker_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    broker = broker_factory(persistence=True)
    run = SyntheticRun(samples=80)
    script = run.script()
    kill_at_s, outage_s = 20.0, 30.0
    timeline: dict[str, Any] = {}

    async def main() -> tuple[list[float], TelemetrySink, ReconnectingCollector]:
        clock = LoopClock()
        async with ReconnectingCollector(broker) as witness:
            broker.save_db()  # the witness's session survives the crash below
            async with telemetry_for_run(broker.url, site="lab", pump_id="p1", telemetry_qos=1,
                                         spool_dir=tmp_path / "spool") as sink:
                assert isinstance(witness, ReconnectingCollector)

                async def outage() -> None:
                    # Kill when everything sent so far has reached the witness (so nothing is
                    # in flight inside the broker), a little after kill_at_s.
                    def quiet() -> bool:
                        return (clock.monotonic() >= start + kill_at_s and sink.spool.pending == 0
                                and bool(emitted) and witness.last_seq() == emitted[-1]["seq"])

                    assert await wait_until(quiet, clock, interval=0.25, timeout=60)
                    broker.kill()
                    timeline["killed"] = clock.monotonic() - start
                    timeline["sent_before_kill"] = sink.link.stats.published
                    await asyncio.sleep(outage_s)
                    timeline["pending_at_restart"] = sink.spool.pending
                    broker.start()
                    timeline["restarted"] = clock.monotonic() - start

                emitted: list[dict[str, Any]] = []
                start = clock.monotonic()
                chaos = asyncio.create_task(outage())
                lateness = await play(script, sink.emit, on_tick=emitted.append)
                await chaos
            # The witness's backlog arrives once it has reconnected.
            n_telemetry, _ = expected_counts(script)
            await witness.wait_for(lambda c: len(c.on("telemetry")) >= n_telemetry
                                   and b"offline" in [m.payload for m in c.on("status")],
                                   timeout=None)
        return lateness, sink, witness

    lateness, sink, witness = run_clock(main(), virtual=True)

    # The run was not held up at all, although the broker was gone for 30 s of it.
    assert len(lateness) == len(script) and max(abs(x) for x in lateness) < 1e-9
    assert timeline["restarted"] - timeline["killed"] >= 30.0
    assert timeline["pending_at_restart"] >= 25  # about 30 samples were spooled meanwhile
    assert sink.link.stats.disconnects == 1 and sink.link.stats.connects == 2
    # Zero lost, none duplicated, order kept: exactly the journal's samples and events.
    assert received_seqs(witness, "telemetry") == seqs_of(script, ("sample",))
    assert received_seqs(witness, "event") == seqs_of(script, (*EVENT_TYPES, "header"))
    # Replayed messages carry the time they were recorded, not the time they were sent.
    by_seq = {r["seq"]: r for _, r in script}
    for m in witness.on("telemetry"):
        body = json.loads(m.payload)
        assert body["ts"] == round(by_seq[body["seq"]]["t"] * 1000)
    assert sink.summary()["dropped_telemetry"] == 0 and sink.summary()["pending"] == 0


def test_broker_down_from_the_start_then_up(
        broker_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    broker = broker_factory(persistence=True)
    prepare_session(broker)
    broker.kill()
    script = SyntheticRun(samples=30).script()
    n_telemetry, n_events = expected_counts(script)
    first_half = [x for x in script if x[0] < 15]

    async def main() -> tuple[TelemetrySink, Collector, int, int]:
        async with telemetry_for_run(broker.url, site="lab", pump_id="p1", telemetry_qos=1,
                                     spool_dir=tmp_path / "spool") as sink:
            await play(first_half, sink.emit)
            spooled, connects = sink.spool.pending, sink.link.stats.connects
            broker.start()
            rest = [(at - 15, r) for at, r in script if at >= 15]
            await play(rest, sink.emit)
        async with ReconnectingCollector(broker) as witness:
            await witness.wait_for(lambda c: len(c.on("telemetry")) >= n_telemetry
                                   and len(c.on("event")) >= n_events, timeout=None)
        return sink, witness, spooled, connects

    sink, witness, spooled, connects = run_clock(main(), virtual=True)
    assert connects == 0  # nothing could be sent during the first 15 s ...
    assert spooled == message_count([r for _, r in first_half])  # ... so it all waited
    assert received_seqs(witness, "telemetry") == seqs_of(script, ("sample",))
    assert len(witness.on("event")) == n_events
    assert sink.summary()["published"] == message_count([r for _, r in script])
    assert sink.summary()["pending"] == 0
