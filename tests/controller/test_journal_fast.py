"""The sample fast path (`Journal.write_values`, `SampleFields.values`) writes exactly what the
general path (`Journal.write_fields` with the fields as a dict) writes: same bytes, same
records for the sinks, same refusals."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumpctl.clock import ManualClock
from pumpctl.drivers.base import Alarm, AlarmKind, PumpState, PumpStatus
from pumpctl.journal import Journal, JournalError
from pumpctl.run.records import SAMPLE_KEYS, SampleFields
from pumpctl.safety import Breach, BreachKind, SafetyMonitor

from .programs import make_program


class Keep:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def emit(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    async def aclose(self) -> None: ...


finite = st.floats(allow_nan=False, allow_infinity=False)
numbers = st.one_of(finite, st.integers(min_value=-(10**30), max_value=10**30),
                    st.sampled_from([0.0, -0.0, 1e-300, -5e-324, 1e300, 1e16, 1e-5, 0.1]))
scalars = st.one_of(numbers, st.none(), st.booleans(),
                    st.text(), st.sampled_from(['"', "\\", "\n", "\x00", "é", "💉", "%s", "%%"]))
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.text(max_size=5), scalars, max_size=3))


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Each line as JSON: these records hold arbitrary values, which `read_records` (checking
    the fields a reader relies on) would rightly call damaged."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def both(keys: tuple[str, ...], vals: list[Any], *, mono: float = 12.5,
         wall: float = 1.7e9, run_id: str = "r", channel: str = "pump0",
         ) -> tuple[bytes, bytes, list[dict[str, Any]], list[dict[str, Any]]]:
    """Write one record each way (after one ordinary record, so seq is not 0)."""
    out = []
    with tempfile.TemporaryDirectory() as d:
        for fast in (True, False):
            clock, sink = ManualClock(0.0, epoch=wall - mono), Keep()
            j = Journal(Path(d) / f"{fast}.jsonl", run_id=run_id, channel=channel, clock=clock,
                        sinks=[sink])
            j.write("state", state="started")
            clock.now, clock.epoch = mono, wall - mono
            if fast:
                j.write_values(j.layout("sample", keys), vals)
            else:
                j.write_fields("sample", dict(zip(keys, vals, strict=True)))
            j.close()
            assert j.seq == 2
            out.append((j.path.read_bytes(), sink.records))
            assert lines_of(j.path)[1] == json.loads(json.dumps(sink.records[1]))
    (fast_bytes, fast_recs), (gen_bytes, gen_recs) = out
    return fast_bytes, gen_bytes, fast_recs, gen_recs


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=len(SAMPLE_KEYS), max_size=len(SAMPLE_KEYS)),
       st.floats(min_value=-1e9, max_value=1e12), st.floats(min_value=0, max_value=4e9))
def test_fast_line_is_byte_equal_to_the_json_line(vals: list[Any], mono: float,
                                                 wall: float) -> None:
    fast, generic, fast_recs, gen_recs = both(SAMPLE_KEYS, vals, mono=mono, wall=wall)
    assert fast == generic
    assert fast_recs == gen_recs  # the sinks get the same record


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6, unique=True),
       st.data(), st.text(max_size=12), st.text(max_size=12))
def test_any_keys_run_id_and_channel_are_escaped_like_json(keys: list[str], data: st.DataObject,
                                                          run_id: str, channel: str) -> None:
    keys = [k for k in keys if k not in ("type", "seq", "t", "elapsed_s", "run_id", "channel")]
    vals = data.draw(st.lists(scalars, min_size=len(keys), max_size=len(keys)))
    fast, generic, _, _ = both(tuple(keys), vals, run_id=run_id, channel=channel)
    assert fast == generic


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused_as_before(bad: float, tmp_path: Path) -> None:
    j = Journal(tmp_path / "x.jsonl", run_id="r", channel="p", clock=ManualClock(1.0, epoch=1.0))
    layout = j.layout("sample", SAMPLE_KEYS)
    vals: list[Any] = [0.5] * len(SAMPLE_KEYS)
    vals[3] = bad
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        j.write_values(layout, vals)
    # a string that only looks like one is fine
    vals[3] = ":nan :inf :-inf"
    j.write_values(layout, vals)
    j.close()
    assert j.seq == 1 and lines_of(j.path)[0]["withdrawn_ml"] == ":nan :inf :-inf"


def test_layouts_refuse_unknown_types_and_repeated_keys(tmp_path: Path) -> None:
    j = Journal(tmp_path / "x.jsonl", run_id="r", channel="p", clock=ManualClock(1.0, epoch=1.0))
    with pytest.raises(ValueError, match="unknown journal record type"):
        j.layout("gossip", ("a",))
    with pytest.raises(ValueError, match="must be unique"):
        j.layout("sample", ("a", "a"))
    with pytest.raises(ValueError, match="must be unique and not repeat a common field"):
        j.layout("sample", ("seq",))
    layout = j.layout("sample", ("a",))
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.write_values(layout, [1.0])


# -- SampleFields: the same values the controller used to put in the dict -------------------

def reference(program: Any, monitor: SafetyMonitor, s: PumpStatus, delivered: float,
              plan_t: float, measured: float | None, vtbi: float | None, segment: int,
              paused: bool, breaches: list[Breach]) -> dict[str, Any]:
    """The sample fields as the controller built them before the fast path (kept verbatim)."""
    p = program
    dose = delivered * p.concentration_mg_per_ml
    remaining_s = max(0.0, monitor.plan.end_s - plan_t)
    alarm = s.alarm.kind.value if s.alarm else (breaches[0].kind.value if breaches else None)
    return dict(
        state=s.state.value, rate_ml_h=s.rate_ml_h, infused_ml=round(delivered, 6),
        withdrawn_ml=s.withdrawn_ml, counter_ml=s.infused_ml,
        measured_ml=None if measured is None else round(measured, 6),
        planned_ml=round(monitor.plan.volume_at(plan_t), 6),
        vtbi_ml=vtbi,
        remaining_ml=round(max(0.0, monitor.cap_ml - delivered), 6),
        remaining_s=round(remaining_s, 3), plan_t_s=round(plan_t, 3),
        dose_mg=round(dose, 6),
        dose_mg_per_kg=round(dose / p.weight_kg, 6) if p.weight_kg else None,
        dose_rate_mg_h=round(s.rate_ml_h * p.concentration_mg_per_ml, 6)
        if s.state.is_moving else 0.0,
        segment=segment, paused=paused, alarm=alarm, retries=0)


@settings(max_examples=300, deadline=None)
@given(state=st.sampled_from(list(PumpState)), rate=st.one_of(finite, st.integers(0, 2000)),
       counter=numbers, withdrawn=numbers, delivered=finite, plan_t=finite,
       measured=st.none() | finite, vtbi=st.none() | finite, segment=st.integers(0, 50),
       paused=st.booleans(), alarm=st.none() | st.sampled_from(list(AlarmKind)),
       breach=st.none() | st.sampled_from(list(BreachKind)),
       weight=st.none() | st.floats(min_value=0.5, max_value=300),
       conc=st.floats(min_value=0.001, max_value=100))
def test_sample_values_equal_the_old_dict(state: PumpState, rate: float, counter: float,
                                          withdrawn: float, delivered: float, plan_t: float,
                                          measured: float | None, vtbi: float | None,
                                          segment: int, paused: bool, alarm: AlarmKind | None,
                                          breach: BreachKind | None, weight: float | None,
                                          conc: float) -> None:
    program = make_program([(300.0, 120.0), (600.0, 60.0)], concentration=conc, weight=weight)
    monitor = SafetyMonitor(program)
    status = PumpStatus(state, rate, counter, withdrawn, Alarm(alarm, "S") if alarm else None)
    breaches = [Breach(breach, "m", 1.0, 2.0)] if breach else []
    vals = SampleFields(program, monitor).values(status, delivered, plan_t, measured, vtbi,
                                                 segment, paused, breaches)
    old = reference(program, monitor, status, delivered, plan_t, measured, vtbi, segment,
                    paused, breaches)
    assert list(old) == list(SAMPLE_KEYS)
    new = dict(zip(SAMPLE_KEYS, vals, strict=True))
    # equal values of equal types (1 == 1.0 == True would hide a changed type)
    assert [(type(v), v) for v in new.values()] == [(type(v), v) for v in old.values()]
