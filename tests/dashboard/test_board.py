"""The board: what the dashboard makes of each message, fed with the run mapper's own payloads."""

from __future__ import annotations

import json

import pytest

from pumpctl.dashboard import board as board_module
from pumpctl.dashboard.board import Board, planned_curve
from pumpctl.dashboard.layout import TopicLayout
from pumpctl.telemetry.errors import TelemetryError
from tests.dashboard.feeds import run_messages, where
from tests.telemetry.synthetic import SyntheticRun


def fed(messages: list[tuple[str, bytes, bool]], board: Board | None = None) -> Board:
    board = board or Board(clock_ms=lambda: 1_000)
    for topic, payload, _ in messages:
        board.apply(where(topic), payload)
    return board


def test_layout_reads_site_and_pump_from_any_prefix_template() -> None:
    layout = TopicLayout("labs/{site}/pumps/{pump_id}")
    assert layout.filters == [f"labs/+/pumps/+/{s}" for s in
                              ("status", "run", "event", "telemetry")]
    parsed = layout.parse("labs/north/pumps/p-7/telemetry")
    assert parsed is not None
    assert (parsed.site, parsed.pump_id, parsed.suffix, parsed.base) == \
        ("north", "p-7", "telemetry", "labs/north/pumps/p-7")
    assert layout.command_topic(parsed.base, "alice") == "labs/north/pumps/p-7/cmd/alice"
    for foreign in ("labs/north/pumps/p-7/cmd/alice", "labs/north/p-7/telemetry",
                    "pumpctl/lab/pump0/telemetry", "labs/north/pumps/p-7/telemetry/x"):
        assert layout.parse(foreign) is None, foreign


def test_site_filter_narrows_the_subscription_and_the_parser() -> None:
    layout = TopicLayout(None, "lab2")
    assert layout.filters[0] == "pumpctl/lab2/+/status"
    assert layout.parse("pumpctl/lab1/pump0/status") is None
    assert layout.parse("pumpctl/lab2/pump0/status") is not None


@pytest.mark.parametrize(("template", "site", "needle"), [
    ("pumpctl/{site}", None, "{pump_id}"),
    ("pumpctl/{site}/{site}/{pump_id}", None, "exactly one"),
    ("pumpctl/#/{site}/{pump_id}", None, "plain topic"),
    (None, "lab 1", "--site"),
])
def test_bad_prefix_or_site_is_one_clear_error(template: str | None, site: str | None,
                                               needle: str) -> None:
    with pytest.raises(TelemetryError, match=needle.replace("{", r"\{").replace("}", r"\}")):
        TopicLayout(template, site)


def test_a_whole_run_fills_the_card() -> None:
    run = SyntheticRun(samples=10)
    board = fed(run_messages(run))
    pump = board.pumps["lab1/pump0"]
    view = pump.full_view()
    assert view["run"]["run_state"] == "completed"
    assert view["run"]["delivered_volume_ml"] == pytest.approx(run.program().total_volume_ml)
    assert "program" not in view["run"]  # the card does not ship the whole program
    # The planned curve comes from the compiled segments: two 5 s segments at 36 mL/h.
    assert view["planned"] == [[0.0, 0.0], [5.0, 0.05], [10.0, 0.1]]
    assert view["telemetry"]["seq"] == max(
        json.loads(p)["seq"] for t, p, _ in run_messages(SyntheticRun(samples=10))
        if t.endswith("/telemetry"))
    # One history point per sample heard, plus where the retained summary says it ended.
    assert [p[0] for p in view["history"]] == [float(k) for k in range(10)] + [10.0]
    assert view["monitoring_done"] == [5.0]
    assert view["last_event"]["event"] == "run_summary"
    assert view["last_event"]["outcome"] == "completed"
    # The synthetic run has a readback alarm that later samples no longer report: it stays
    # on the card, marked cleared, with what the safety monitor said.
    assert view["alarm"]["kind"] == "readback_mismatch"
    assert view["alarm"]["source"] == "safety"
    assert view["alarm"]["message"].startswith("rate read back")
    assert view["alarm"]["active"] is False and view["alarm"]["cleared_time"]


def test_an_alarm_a_later_sample_no_longer_reports_is_shown_cleared() -> None:
    run = SyntheticRun(samples=10)
    messages = run_messages(run)
    board = Board()
    saw_active = False
    for topic, payload, _ in messages:
        board.apply(where(topic), payload)
        alarm = board.pumps["lab1/pump0"].alarm
        saw_active |= bool(alarm and alarm["active"])
        if topic.endswith("/telemetry") and alarm and not alarm["active"]:
            break
    else:
        # Synthetic samples carry alarm=None throughout: after the alarm event the next
        # sample clears it.
        raise AssertionError("the alarm was never cleared by a later sample")
    assert saw_active


def test_alarm_in_a_sample_shows_before_its_event_arrives() -> None:
    board = Board()
    messages = run_messages(SyntheticRun(samples=4))
    topic, payload, _ = next(m for m in messages if m[0].endswith("/telemetry"))
    sample = json.loads(payload)
    sample["alarm"] = "occlusion"
    sample["pump_status"] = "alarm"
    board.apply(where(topic), json.dumps(sample).encode())
    alarm = board.pumps["lab1/pump0"].alarm
    assert alarm is not None and alarm["kind"] == "occlusion" and alarm["active"]
    assert alarm["time"] == sample["time"]


def test_repeats_are_ignored_and_old_samples_do_not_replace_new_ones() -> None:
    messages = run_messages(SyntheticRun(samples=6))
    board = fed(messages)
    before = board.pumps["lab1/pump0"].full_view()
    for topic, payload, _ in messages:  # the whole run again: an at-least-once replay
        assert board.apply(where(topic), payload) == []
    assert board.pumps["lab1/pump0"].full_view() == before
    samples = [(t, p) for t, p, _ in messages if t.endswith("/telemetry")]
    board = Board()
    board.apply(where(samples[3][0]), samples[3][1])
    board.apply(where(samples[1][0]), samples[1][1])  # late, e.g. after a reconnect
    pump = board.pumps["lab1/pump0"]
    assert pump.telemetry is not None and pump.telemetry["seq"] == json.loads(samples[3][1])["seq"]
    assert [p[0] for p in pump.history] == [1.0, 3.0]  # but it fills its place in the chart


def test_a_new_run_on_the_same_pump_starts_a_clean_card() -> None:
    board = fed(run_messages(SyntheticRun(samples=6, run_id="run-A")))
    second = run_messages(SyntheticRun(samples=6, run_id="run-B", override=False))
    run_msg = next(m for m in second if m[0].endswith("/run"))
    changes = board.apply(where(run_msg[0]), run_msg[1])
    assert ("lab1/pump0", "run") in changes
    pump = board.pumps["lab1/pump0"]
    assert pump.run is not None and pump.run["run_id"] == "run-B"
    assert pump.run["run_state"] == "running"
    assert (pump.telemetry, pump.alarm, pump.last_event, pump.history, pump.monitoring_done) \
        == (None, None, None, [], [])


def test_status_and_last_will_flip_online_and_commands_follow_the_run() -> None:
    board = Board(clock_ms=lambda: 42)
    messages = run_messages(SyntheticRun(samples=6), remote_commands=True)
    status = where("pumpctl/lab1/pump0/status")
    assert board.apply(status, b"online") == [("lab1/pump0", "live")]
    assert board.apply(status, b"online") == []  # no change, nothing to send
    run_msg = next(m for m in messages if m[0].endswith("/run"))
    board.apply(where(run_msg[0]), run_msg[1])
    pump = board.pumps["lab1/pump0"]
    assert pump.run is not None and pump.run["remote_commands"] is True
    assert pump.accepts_commands()
    board.apply(status, b"offline")  # the Last Will of a killed controller
    assert pump.online is False and pump.status_since_ms == 42
    assert not pump.accepts_commands()
    board.apply(status, b"online")
    assert pump.accepts_commands()
    fed(messages, board)  # the run ends: the retained run says completed
    assert not pump.accepts_commands()


def test_a_run_without_remote_commands_never_offers_them() -> None:
    board = fed(run_messages(SyntheticRun(samples=6))[:1])
    board.apply(where("pumpctl/lab1/pump0/status"), b"online")
    pump = board.pumps["lab1/pump0"]
    assert pump.run is not None and pump.run["run_state"] == "running"
    assert pump.run["remote_commands"] is False
    assert not pump.accepts_commands()


@pytest.mark.parametrize(("suffix", "payload"), [
    ("status", b"maybe"),
    ("telemetry", b"not json"),
    ("telemetry", b"[1, 2]"),
    ("telemetry", b'{"ts": 1}'),
    ("event", b'{"event": "teleport"}'),
    ("run", b'{"run_state": "running"}'),
    ("telemetry", b"\xff\xfe"),
])
def test_junk_is_counted_and_changes_nothing(suffix: str, payload: bytes) -> None:
    board = Board()
    assert board.apply(where(f"pumpctl/lab1/pump0/{suffix}"), payload) == []
    assert board.rejected == 1
    pump = board.pumps["lab1/pump0"]
    assert (pump.online, pump.run, pump.telemetry) == (None, None, None)


def test_unknown_fields_from_a_newer_controller_are_ignored_not_fatal() -> None:
    messages = run_messages(SyntheticRun(samples=4))
    topic, payload, _ = next(m for m in messages if m[0].endswith("/telemetry"))
    body = {**json.loads(payload), "battery_percent": 80}
    board = Board()
    assert board.apply(where(topic), json.dumps(body).encode()) == [("lab1/pump0", "live")]
    telemetry = board.pumps["lab1/pump0"].telemetry
    assert telemetry is not None and "battery_percent" not in telemetry


def test_history_and_pump_count_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(board_module, "MAX_POINTS", 100)
    monkeypatch.setattr(board_module, "MAX_PUMPS", 3)
    run = SyntheticRun(samples=400)
    board = fed(run_messages(run))
    history = board.pumps["lab1/pump0"].history
    assert len(history) <= 100
    assert history[0][0] == 0.0 and history[-1][0] == 400.0  # the whole run's shape is kept
    assert history == sorted(history)
    for k in range(5):
        board.apply(where(f"pumpctl/lab1/extra{k}/status"), b"online")
    assert len(board.pumps) == 3


def test_planned_curve_follows_segments_and_gaps() -> None:
    program = {"segments": [
        {"start_s": 0, "duration_s": 60, "rate_ml_h": 60, "volume_ml": 1.0},
        {"start_s": 120, "duration_s": 60, "rate_ml_h": 30, "volume_ml": 0.5}]}
    assert planned_curve(program) == [[0.0, 0.0], [60.0, 1.0], [120.0, 1.0], [180.0, 1.5]]
    assert planned_curve({"segments": [{"start_s": "x"}]}) == []


def test_how_far_the_run_clock_is_ahead_is_measured_at_each_newest_sample() -> None:
    """A run at --speed N stamps run time: the card labels its times once the two clocks
    disagree, so the board says by how much, as of the newest sample heard."""
    now = [0]
    board = Board(clock_ms=lambda: now[0])
    samples = [m for m in run_messages(SyntheticRun(samples=6)) if m[0].endswith("/telemetry")]
    stamps = [json.loads(payload)["ts"] for _, payload, _ in samples]
    now[0] = stamps[2] + 40  # heard 40 ms after it was stamped: clocks agree
    board.apply(where(samples[2][0]), samples[2][1])
    pump = board.pumps["lab1/pump0"]
    assert pump.run_clock_ahead_ms == -40
    now[0] = stamps[3] - 90_000  # stamped 90 s ahead of us: a run at --speed
    board.apply(where(samples[3][0]), samples[3][1])
    assert pump.live_view()["run_clock_ahead_ms"] == 90_000
    board.apply(where(samples[1][0]), samples[1][1])  # a late, older sample changes nothing
    assert pump.run_clock_ahead_ms == 90_000
