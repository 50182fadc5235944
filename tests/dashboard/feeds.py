"""Real payloads for dashboard tests: synthetic journal records through the run's own mapper."""

from __future__ import annotations

from pumpctl.dashboard.layout import PumpTopic, TopicLayout
from pumpctl.telemetry.mapping import RecordMapper
from pumpctl.telemetry.topics import Topics
from tests.telemetry.synthetic import SyntheticRun

LAYOUT = TopicLayout()


def run_messages(run: SyntheticRun, *, site: str = "lab1", pump_id: str = "pump0",
                 remote_commands: bool = False) -> list[tuple[str, bytes, bool]]:
    """(topic, payload, retained) in the order the controller would publish them."""
    mapper = RecordMapper(Topics.for_pump(site, pump_id), site=site, pump_id=pump_id,
                          telemetry_qos=0, remote_commands=remote_commands)
    return [(m.topic, m.payload, m.retain) for _, record in run.script()
            for m in mapper.map(record)]


def where(topic: str) -> PumpTopic:
    parsed = LAYOUT.parse(topic)
    assert parsed is not None, topic
    return parsed
