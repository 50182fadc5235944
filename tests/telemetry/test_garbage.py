"""Issue 9, item 9, telemetry side: garbage retained on the broker, a spool with bytes that
are not UTF-8, a damaged spool index. No traceback, nothing unsent deleted, and the operator
told what was found. Real processes and a real Mosquitto, as a lab runs them."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import aiomqtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pumpctl.telemetry.spool import MessageKind, OutMessage, Spool
from tests.telemetry.broker import Mosquitto
from tests.telemetry.conftest import ReconnectingCollector
from tests.telemetry.test_cli import PUMPCTL, start_tail

GOOD = {"ts": 1_700_000_000_000, "seq": 9, "pump_status": "infusing", "flow_rate_ml_h": 52.5,
        "volume_delivered_ml": 1.0, "vtbi_ml": 35.0, "vtbi_remaining_ml": 34.0,
        "time_remaining_s": 2300.0, "dose_delivered_mg": 1.0, "segment": 0, "alarm": None}
# Each retained on its own pump's telemetry topic, so all of them are there at once.
GARBAGE: dict[str, bytes] = {
    "nan-ts": b'{"ts": NaN, "seq": 1, "pump_status": "infusing"}',
    "huge-ts": json.dumps({**GOOD, "ts": 1e300}).encode(),
    "far-ts": json.dumps({**GOOD, "ts": 10**17}).encode(),
    "inf-rate": b'{"ts": 1700000000000, "flow_rate_ml_h": Infinity}',
    "status-object": json.dumps({**GOOD, "pump_status": {"a": 1}}).encode(),
    "rate-text": json.dumps({**GOOD, "flow_rate_ml_h": "fast"}).encode(),
    "seq-list": json.dumps({**GOOD, "seq": [1]}).encode(),
    "segment-true": json.dumps({**GOOD, "segment": True}).encode(),
}
MARKUP = json.dumps({**GOOD, "pump_status": "[/]", "alarm": "[bold red]x[/] [link=y]"}).encode()


async def test_tail_skips_retained_garbage_with_a_note_and_keeps_tailing(
        broker: Mosquitto, tmp_path: Path) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        for pump, payload in GARBAGE.items():
            await client.publish(f"pumpctl/lab/{pump}/telemetry", payload, qos=1, retain=True)
        await client.publish("pumpctl/lab/markup/telemetry", MARKUP, qos=1, retain=True)
        await client.publish("pumpctl/lab/[bold]x/status", b"[/]online", qos=1, retain=True)
    tail = start_tail(broker, "--count", str(len(GARBAGE) + 2))
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:  # and one live message
        await client.publish("pumpctl/lab/good/telemetry", json.dumps(GOOD), qos=1)
    out, err = tail.communicate(timeout=30)
    assert tail.returncode == 0 and "Traceback" not in err, err
    notes = [line for line in out.splitlines() if line.startswith("skipped a message on ")]
    assert sorted(line.split("/")[2] for line in notes) == sorted(GARBAGE)
    assert any("ts 1e+300 is not a time in epoch milliseconds" in line for line in notes)
    assert any("NaN in payload" in line for line in notes)
    # Text from a publisher is shown as written, never taken for markup.
    assert any("lab/markup" in line and "[/]" in line and "[bold red]x[/] [link=y]" in line
               for line in out.splitlines())
    assert "lab/[bold]x [/]online" in out
    assert any("lab/good" in line and "52.500 mL/h" in line for line in out.splitlines())


def _spool_with(directory: Path, n: int) -> list[int]:
    spool = Spool(directory).open()
    for i in range(n):
        spool.append(OutMessage("pumpctl/lab/p1/telemetry", json.dumps({"seq": i}).encode(), 1,
                                False, MessageKind.TELEMETRY))
    spool.close()
    return list(range(n))


async def test_a_damaged_spool_index_never_deletes_unsent_messages(
        broker_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    """The issue's case: 2412 unsent messages and an index claiming far more were sent."""
    broker = broker_factory()
    spool_dir = tmp_path / "spool"
    sent = _spool_with(spool_dir, 2412)
    (spool_dir / "acked").write_text("999999")
    async with ReconnectingCollector(broker) as witness:
        result = subprocess.run([*PUMPCTL, "telemetry", "flush", str(spool_dir), "--site", "lab",
                                 "--pump-id", "p1", "--mqtt", broker.url],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        first, last = result.stdout.strip().splitlines()
        assert "ack index not trusted (an index without a CRC" in first
        assert "2412 unsent messages recovered" in first
        assert last == "sent 2412 of 2412 spooled messages"
        await witness.wait_for(lambda c: len(c.on("telemetry")) == 2412)
    assert [json.loads(m.payload)["seq"] for m in witness.on("telemetry")] == sent


def test_a_spool_with_bytes_that_are_not_utf8_is_recovered_around_them(tmp_path: Path) -> None:
    _spool_with(tmp_path, 10)
    segment = next(tmp_path.glob("seg-*.jsonl"))
    lines = segment.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b'"payload"', b'"pay\xff\xfeload"')
    segment.write_bytes(b"\n".join(lines))
    spool = Spool(tmp_path).open()
    try:
        payloads = [json.loads(spool.take().message.payload)["seq"]  # type: ignore[union-attr]
                    for _ in range(spool.pending)]
        assert payloads == [0, 1, 2, 4, 5, 6, 7, 8, 9]
        assert spool.recovery.damaged_lines == 1
        assert "1 unreadable lines skipped" in spool.recovery.describe()
    finally:
        spool.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.binary(max_size=40) | st.integers(0, 20).map(lambda i: str(i).encode())
       | st.builds(lambda a, n, c: json.dumps({"acked": a, "next": n, "crc": c}).encode(),
                   st.integers(-5, 10**6), st.integers(-5, 10**6), st.integers(0, 2**32)))
def test_no_index_whatever_its_bytes_loses_an_unsent_message(index: bytes,
                                                             tmp_path_factory: object) -> None:
    """Five of eight messages were acked and the index written; then the index is replaced
    by anything at all. Recovery may send acked ones again, never lose the three unsent."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        spool = Spool(directory).open()
        ids = [spool.append(OutMessage("t", json.dumps({"seq": i}).encode(), 1, False,
                                       MessageKind.EVENT)) for i in range(8)]
        for entry_id in ids[:5]:
            spool.ack(entry_id)
        spool._write_cursor()
        spool._head.close()  # type: ignore[union-attr]  # as if the process died here
        spool._head = None
        assert spool._lock is not None
        spool._lock.close()
        (directory / "acked").write_bytes(index)
        again = Spool(directory).open()
        try:
            seqs = set()
            while (entry := again.take()) is not None:
                seqs.add(json.loads(entry.message.payload)["seq"])
            assert {5, 6, 7} <= seqs
        finally:
            again.close()


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
                     | st.sampled_from(["[/]", "[bold]", "[link=x]", "\x1b[31m"]),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=10)
_fields = st.sampled_from(["ts", "seq", "pump_status", "flow_rate_ml_h", "volume_delivered_ml",
                           "vtbi_ml", "time_remaining_s", "segment", "alarm", "event",
                           "dose_delivered_mg_per_kg", "reason"])


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(_fields, _json, max_size=8), suffix=st.sampled_from(
    ["telemetry", "event", "status", "run"]), raw=st.binary(max_size=30), use_raw=st.booleans())
def test_any_payload_becomes_one_printable_line(body: dict[str, object], suffix: str,
                                                raw: bytes, use_raw: bool) -> None:
    """Whatever a publisher sends: one line, that rich prints without a markup error."""
    from rich.console import Console

    from pumpctl.telemetry.tail import format_message

    payload = raw if use_raw else json.dumps(body, allow_nan=True).encode()
    line = format_message(f"pumpctl/lab/p1/{suffix}", payload)
    console = Console(record=True, width=400, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(line)
    assert len(console.export_text().strip().splitlines()) <= 1
