"""The dashboard server against a real Mosquitto: page, API, health, live stream, fan-out."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import aiomqtt

from pumpctl.dashboard.server import STATIC, Dashboard
from tests.dashboard.conftest import running_dashboard, subscriptions
from tests.dashboard.feeds import run_messages, where
from tests.dashboard.sse import sse_events
from tests.telemetry.broker import Mosquitto
from tests.telemetry.synthetic import SyntheticRun


async def publish_all(broker: Mosquitto, messages: list[tuple[str, bytes, bool]]) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, timeout=10) as client:
        for topic, payload, retain in messages:
            await client.publish(topic, payload, qos=1, retain=retain)


Frames = AsyncIterator[tuple[str, Any]]


async def read_until(frames: Frames, done: Callable[[str, Any], bool]) -> list[tuple[str, Any]]:
    """Every frame up to and including the first for which `done(event, data)` holds (one
    reader per stream: it buffers what it has read past that frame)."""
    seen = []
    async for event, data in frames:
        seen.append((event, data))
        if done(event, data):
            return seen
    raise AssertionError(f"stream ended after {len(seen)} frames")


def summary_for(key: str) -> Callable[[str, Any], bool]:
    def done(event: str, data: Any) -> bool:
        last = data.get("last_event") if event == "live" else None
        return data.get("key") == key and bool(last) and last["event"] == "run_summary"
    return done


async def test_two_runs_reach_the_page_api_and_stream(broker: Mosquitto) -> None:
    async with running_dashboard(broker.url) as dash, aiohttp.ClientSession() as http:
        async with http.get(dash.url + "events") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            reader = sse_events(stream)
            first = await anext(reader)
            assert first[0] == "snapshot" and first[1]["pumps"] == []
            await publish_all(broker, [*run_messages(SyntheticRun(samples=8), site="lab1"),
                                       *run_messages(SyntheticRun(samples=6, run_id="run-2"),
                                                     site="lab2", pump_id="syringe-3")])
            frames = await read_until(reader, summary_for("lab1/pump0"))
            frames += await read_until(reader, summary_for("lab2/syringe-3"))
        lives = [d for e, d in frames if e == "live" and d["key"] == "lab1/pump0"]
        # Frames published in a burst may be merged (newest state wins), but the browser
        # always ends up with the last sample, and the run frame comes before any live one.
        assert lives[-1]["telemetry"]["elapsed_s"] == 7.0
        assert next(e for e, d in frames if d.get("key") == "lab1/pump0") == "run"

        async with http.get(dash.url + "api/pumps") as response:
            body = await response.json()
        assert [p["key"] for p in body["pumps"]] == ["lab1/pump0", "lab2/syringe-3"]
        pump = body["pumps"][0]
        assert pump["run"]["run_state"] == "completed" and pump["run"]["drug_name"] == "ketamine"
        assert len(pump["history"]) == 9  # eight samples and the end from the summary
        volumes = [v for _, v in pump["history"]]
        assert volumes == sorted(volumes) and volumes[-1] > volumes[0]  # the numbers advance
        assert body["broker"]["connected"] is True and body["commands"] is False

        async with http.get(dash.url + "healthz") as response:
            health = await response.json()
            assert response.status == 200 and health["pumps"] == 2
        async with http.get(dash.url) as response:
            page = await response.text()
            assert response.status == 200
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        for asset in re.findall(r'(?:src|href)="([^"]+)"', page):
            assert asset.startswith(("/static/", "data:")), f"{asset}: not served by us"
            if asset.startswith("/static/"):
                async with http.get(dash.url + asset.lstrip("/")) as response:
                    assert response.status == 200, asset
        assert not re.search(r"https?://", "".join(p.read_text() for p in STATIC.iterdir())
                             .replace("http://www.w3.org/2000/svg", "")), "no CDN, no links out"


async def test_health_and_page_tell_when_the_broker_is_gone(broker: Mosquitto) -> None:
    async with running_dashboard(broker.url) as dash, aiohttp.ClientSession() as http:
        async with http.get(dash.url + "events") as stream:
            reader = sse_events(stream)
            await anext(reader)
            broker.kill()
            frames = await read_until(reader, lambda e, d: e == "broker")
            assert frames[-1][1]["connected"] is False
            async with http.get(dash.url + "healthz") as response:
                assert response.status == 503
                assert (await response.json())["connected"] is False
            broker.start()  # same port: the dashboard finds it again
            frames = await read_until(reader, lambda e, d: e == "broker" and d["connected"])
        async with http.get(dash.url + "healthz") as response:
            assert response.status == 200


async def test_one_broker_subscription_whatever_the_number_of_viewers(
        broker: Mosquitto) -> None:
    async with running_dashboard(broker.url) as dash, aiohttp.ClientSession() as http:
        streams = [await http.get(dash.url + "events") for _ in range(6)]
        readers = [sse_events(s) for s in streams]
        for reader in readers:
            assert (await anext(reader))[0] == "snapshot"
        assert dash.hub.stats()["viewers"] == 6
        messages = run_messages(SyntheticRun(samples=4))
        await publish_all(broker, messages)
        for stream, reader in zip(streams, readers, strict=True):
            await read_until(reader, summary_for("lab1/pump0"))
            stream.close()
        lines = subscriptions(broker, "pumpctl-dashboard-")
        # One client, one subscription per topic kind, however many browsers watch.
        assert len({line.split(": ", 1)[1].split(" ")[0] for line in lines}) == 1
        assert len(lines) == 4


_SAMPLE = json.loads(next(p for t, p, _ in run_messages(SyntheticRun(samples=2))
                         if t.endswith("/telemetry")))


def _telemetry(seq: int, pump: int) -> tuple[str, bytes]:
    body = {**_SAMPLE, "seq": seq, "elapsed_s": float(seq), "volume_delivered_ml": seq / 1000,
            "pump_id": f"p{pump}", "drug_name": "x" * 200}  # padded: fill buffers sooner
    return f"pumpctl/lab/p{pump}/telemetry", json.dumps(body).encode()


async def test_a_browser_that_never_reads_holds_nobody_back(broker: Mosquitto) -> None:
    pumps, rounds = 40, 300
    async with running_dashboard(broker.url) as dash, aiohttp.ClientSession() as http:
        host, port = dash.url.removeprefix("http://").rstrip("/").split(":")
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect((host, int(port)))
        stuck.sendall(f"GET /events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())  # never read
        try:
            async with http.get(dash.url + "events") as stream:
                reader = sse_events(stream)
                assert (await anext(reader))[0] == "snapshot"
                while dash.hub.stats()["viewers"] < 2:
                    await asyncio.sleep(0.01)
                latest: dict[str, int] = {}

                async def watch() -> None:
                    async for event, data in reader:
                        if event == "live" and data["telemetry"]:
                            latest[data["key"]] = data["telemetry"]["seq"]
                            if len(latest) == pumps and min(latest.values()) == rounds:
                                return

                watcher = asyncio.create_task(watch())
                for seq in range(1, rounds + 1):
                    for pump in range(pumps):
                        topic, payload = _telemetry(seq, pump)
                        dash._on_message(where(topic), payload)
                    await asyncio.sleep(0)  # a broker delivers in bursts, not all at once
                await asyncio.wait_for(watcher, 60)
                # The attentive browser saw the final state of every pump; the stuck one
                # holds at most one frame per pump and view, the rest replaced, not queued.
                assert set(latest.values()) == {rounds}
                slow = max(dash.hub.viewers, key=lambda v: v.replaced)
                assert len(slow.pending) <= pumps
                assert slow.replaced > rounds * pumps // 2
        finally:
            stuck.close()


async def test_a_page_opened_mid_run_gets_history_and_plan(broker: Mosquitto) -> None:
    messages = run_messages(SyntheticRun(samples=12))
    cut = next(i for i, (t, p, _) in enumerate(messages)
               if t.endswith("/telemetry") and json.loads(p)["elapsed_s"] == 6.0)
    async with running_dashboard(broker.url) as dash, aiohttp.ClientSession() as http:
        await publish_all(broker, messages[:cut + 1])
        async with http.get(dash.url + "events") as stream:
            await read_until(sse_events(stream), lambda e, d: True)  # the first snapshot
            dashboard_view = await _wait_history(dash, 7)
        async with http.get(dash.url + "events") as stream:
            event, snap = await anext(sse_events(stream))
        assert event == "snapshot"
        (pump,) = snap["pumps"]
        assert pump["history"] == dashboard_view and len(pump["history"]) == 7
        assert pump["planned"][-1] == [12.0, 0.12]  # the whole plan, not only what passed
        assert pump["run"]["run_state"] == "running"


async def _wait_history(dash: Dashboard, count: int) -> list[list[float]]:
    while True:
        pump = dash.board.pumps.get("lab1/pump0")
        if pump is not None and len(pump.history) >= count:
            return pump.history
        await asyncio.sleep(0.02)
