"""Dashboard fan-out: browsers connected x pumps shown, against a local Mosquitto.

    .venv/bin/python bench/bench_dashboard.py [--browsers 20] [--pumps 100] [--rate 1]
                                              [--seconds 20]

Synthetic publishers send each pump's retained `run` and `status`, then telemetry at `--rate`
Hz per pump, spread evenly over each second, every payload stamped with its publish time
(`ts`, epoch ms). `pumpctl dashboard` runs as its own process (so its CPU is its own); the
"browsers" are headless Server-Sent Events clients in another process. Measured side by side:

- broker -> page: publish time to a browser holding the new sample, p50/p99/max over every
  (browser, sample) pair, against the target p99 <= 250 ms;
- broker -> plain MQTT subscriber for the same samples: what the broker alone costs, so the
  dashboard's own share is the difference;
- the dashboard's CPU (user+system, % of one core) and peak memory over the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import aiomqtt  # noqa: E402

from pumpctl.telemetry.mapping import RecordMapper  # noqa: E402
from pumpctl.telemetry.topics import Topics  # noqa: E402
from tests.telemetry.broker import Mosquitto, free_port  # noqa: E402
from tests.telemetry.synthetic import SyntheticRun  # noqa: E402

TARGET_P99_MS = 250.0
WARMUP_S = 3.0


def pump_payloads(pumps: int) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
    """Retained run messages for every pump, and one telemetry body to stamp and send."""
    runs = []
    sample: dict[str, Any] = {}
    for k in range(pumps):
        topics = Topics.for_pump("bench", f"p{k:03d}")
        mapper = RecordMapper(topics, site="bench", pump_id=f"p{k:03d}", telemetry_qos=0)
        for _, record in SyntheticRun(samples=2400, run_id=f"bench-{k}").script()[:1]:
            (run,) = [m for m in mapper.map(record) if m.topic == topics.run]
            runs.append((run.topic, run.payload))
        if not sample:
            script = SyntheticRun(samples=4, run_id="bench-0").script()
            record = next(r for _, r in script if r["type"] == "sample")
            sample = json.loads(mapper.map(record)[0].payload)
    return runs, sample


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": percentile(values, 0.50),
            "p99_ms": percentile(values, 0.99), "max_ms": max(values, default=float("nan")),
            "mean_ms": statistics.fmean(values) if values else float("nan")}


# -- the browsers (run in their own process) ---------------------------------------------------

# A live frame starts {"key":...,"telemetry":{"ts":..,"time":"..","seq":..: read those three
# with one regex instead of parsing 2000 JSON frames a second, so the simulated browsers are
# not what limits the measurement on a small machine.
LIVE = re.compile(rb'^event: live\ndata: \{"key":"([^"]+)".*?"telemetry":\{"ts":(\d+),'
                  rb'"time":"[^"]*","seq":(\d+)', re.S)


async def browsers(url: str, count: int) -> None:
    """Connect `count` SSE clients, say "connected" on stdout, then record (ts, latency ms)
    of every new sample each one sees until stdin closes; print them as JSON."""
    samples: list[tuple[int, float]] = []
    frames = 0
    connected = 0
    all_connected = asyncio.Event()

    async def one(http: aiohttp.ClientSession) -> None:
        nonlocal frames, connected
        newest: dict[bytes, int] = {}
        async with http.get(url + "events") as stream:
            buffer = b""
            first = True
            async for chunk in stream.content.iter_any():
                now_ms = time.time() * 1000
                *blocks, buffer = (buffer + chunk).split(b"\n\n")
                for block in blocks:
                    frames += 1
                    if first and block.startswith(b"event: snapshot"):
                        first = False
                        connected += 1
                        if connected == count:
                            all_connected.set()
                    match = LIVE.match(block)
                    if match is None:
                        continue
                    key, ts, seq = match.group(1), int(match.group(2)), int(match.group(3))
                    if seq > newest.get(key, -1):
                        newest[key] = seq
                        samples.append((ts, now_ms - ts))

    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.create_task(one(http)) for _ in range(count)]
        await all_connected.wait()
        sys.stdout.write("connected\n")
        sys.stdout.flush()
        await asyncio.to_thread(sys.stdin.read)  # until the measurement is over
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    sys.stdout.write(json.dumps({"samples": samples, "frames": frames}) + "\n")
    sys.stdout.flush()


# -- publishers, the plain subscriber, and the dashboard's CPU -------------------------------

async def publish(broker: Mosquitto, runs: list[tuple[str, bytes]], sample: dict[str, Any],
                  pumps: int, rate: float, until: float) -> int:
    sent = 0
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="bench-publisher") as client:
        for topic, payload in runs:
            await client.publish(topic, payload, qos=1, retain=True)
            await client.publish(topic.rsplit("/", 1)[0] + "/status", b"online", qos=1,
                                 retain=True)
        period = 1.0 / (rate * pumps)
        start = time.monotonic()
        seq = 10
        while time.time() < until:
            for k in range(pumps):
                due = start + sent * period
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                body = {**sample, "seq": seq, "run_id": f"bench-{k}", "pump_id": f"p{k:03d}",
                        "site": "bench", "ts": int(time.time() * 1000),
                        "elapsed_s": float(seq), "volume_delivered_ml": seq / 1000}
                await client.publish(f"pumpctl/bench/p{k:03d}/telemetry",
                                     json.dumps(body).encode(), qos=0)
                sent += 1
            seq += 1
    return sent


async def plain_subscriber(broker: Mosquitto, start_at: float, stop_at: float,
                           ready: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="bench-plain") as client:
        await client.subscribe("pumpctl/bench/+/telemetry", qos=0)
        ready.set()
        try:
            async with asyncio.timeout(max(0.1, stop_at + 1.0 - time.time())):
                async for message in client.messages:
                    now_ms = time.time() * 1000
                    ts = json.loads(message.payload)["ts"]
                    if start_at * 1000 <= ts <= stop_at * 1000:
                        latencies.append(now_ms - ts)
        except TimeoutError:
            pass
    return latencies


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_dashboard(broker: Mosquitto) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pumpctl.cli", "dashboard", "--mqtt", broker.url,
         "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=REPO)
    subscribed = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if b"dashboard subscribed" in line:
                subscribed.set()

    threading.Thread(target=read, daemon=True).start()
    if not subscribed.wait(60):
        proc.kill()
        raise SystemExit("pumpctl dashboard did not start")
    return proc, f"http://127.0.0.1:{port}/"


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs, sample = pump_payloads(args.pumps)
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker").start()
        dash, url = start_dashboard(broker)
        clients = subprocess.Popen(
            [sys.executable, __file__, "--client", url,
             "--browsers", str(args.browsers)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
        try:
            assert clients.stdout is not None and clients.stdin is not None
            line = await asyncio.to_thread(clients.stdout.readline)
            if line.strip() != b"connected":
                raise SystemExit("the simulated browsers did not connect")
            t0 = time.time()
            start_at, stop_at = t0 + WARMUP_S, t0 + WARMUP_S + args.seconds
            ready = asyncio.Event()
            plain = asyncio.create_task(plain_subscriber(broker, start_at, stop_at, ready))
            await ready.wait()
            publisher = asyncio.create_task(
                publish(broker, runs, sample, args.pumps, args.rate, stop_at + 0.5))
            await asyncio.sleep(max(0.0, start_at - time.time()))
            cpu0, wall0 = cpu_seconds(dash.pid), time.monotonic()
            client_cpu0 = cpu_seconds(clients.pid)
            rss = 0.0
            while time.time() < stop_at:
                rss = max(rss, rss_mib(dash.pid))
                await asyncio.sleep(0.5)
            cpu = (cpu_seconds(dash.pid) - cpu0) / (time.monotonic() - wall0)
            client_cpu = (cpu_seconds(clients.pid) - client_cpu0) / (time.monotonic() - wall0)
            sent = await publisher
            plain_latency = await plain
            await asyncio.sleep(1.0)  # the last samples' way to the browsers
            clients.stdin.close()
            out = await asyncio.to_thread(clients.stdout.read)
            clients.wait(timeout=60)
            page = json.loads(out)
        finally:
            clients.kill()
            dash.terminate()
            dash.wait(timeout=15)
            broker.stop()
    window = [latency for ts, latency in page["samples"]
              if start_at * 1000 <= ts <= stop_at * 1000]
    published_in_window = len(plain_latency)
    return {"browsers": args.browsers, "pumps": args.pumps, "rate_hz": args.rate,
            "load_average_1min": os.getloadavg()[0], "cores": os.cpu_count(),
            "seconds": args.seconds, "published": sent,
            "published_in_window": published_in_window,
            "page": summary(window), "plain_mqtt": summary(plain_latency),
            "dashboard_cpu_percent": 100 * cpu, "dashboard_rss_mib": rss,
            "browsers_cpu_percent": 100 * client_cpu,
            "frames_received": page["frames"]}


def report(r: dict[str, Any]) -> None:
    expected = r["browsers"] * r["published_in_window"]
    print(f"{r['browsers']} browsers x {r['pumps']} pumps at {r['rate_hz']:g} Hz for "
          f"{r['seconds']:g} s ({r['published']} samples published)")
    print(f"{'':24}{'samples':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for label, key in (("broker -> page (SSE)", "page"), ("broker -> MQTT client", "plain_mqtt")):
        s = r[key]
        print(f"{label:<24}{s['n']:>9}{s['p50_ms']:>9.1f}{s['p99_ms']:>9.1f}{s['max_ms']:>9.1f}")
    page, plain = r["page"], r["plain_mqtt"]
    print(f"page p99 / target {TARGET_P99_MS:g} ms: {page['p99_ms'] / TARGET_P99_MS:.2f} "
          f"({'met' if page['p99_ms'] <= TARGET_P99_MS else 'MISSED'})")
    print(f"page p50 / plain MQTT p50: {page['p50_ms'] / max(plain['p50_ms'], 0.01):.1f}")
    print(f"samples seen by the browsers / published x browsers: {page['n'] / expected:.3f}"
          " (below 1: a lagging browser got the newer state instead)")
    print(f"dashboard CPU {r['dashboard_cpu_percent']:.0f} % of one core, "
          f"RSS {r['dashboard_rss_mib']:.0f} MiB; the simulated browsers "
          f"{r['browsers_cpu_percent']:.0f} % of one core")
    print(f"machine: {r['cores']} cores, load average {r['load_average_1min']:.1f} at the end "
          "(latency here is mostly waiting for a core when the load is above the core count)")
    print(json.dumps(r))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--browsers", type=int, default=20)
    parser.add_argument("--pumps", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1.0, help="telemetry per pump, Hz")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(browsers(args.client, args.browsers))
        return
    report(asyncio.run(measure(args)))


if __name__ == "__main__":
    main()
