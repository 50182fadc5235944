"""Register maps: the shipped ones load, and every kind of mistake in a map is one line naming
the map, the entry and the problem."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pumpctl.drivers.base import AlarmKind, PumpState
from pumpctl.drivers.modbus.pumpmap import (
    MapError,
    RegisterKind,
    ValueType,
    WordOrder,
    load_map,
    map_names,
    maps_dir,
    parse_map,
)


def small_map() -> dict[str, Any]:
    """The smallest complete map: a rate, run/stop command word, a state and a counter."""
    return {
        "name": "small",
        "title": "a small test pump",
        "registers": {
            "rate": {"kind": "holding", "address": 0, "type": "f32", "access": "rw"},
            "command": {"kind": "holding", "address": 2, "access": "action"},
            "errors": {"kind": "holding", "address": 3, "access": "r", "bits": {0: "jam"}},
            "state": {"kind": "input", "address": 0, "enum": {0: "stopped", 1: "infusing"}},
            "infused": {"kind": "input", "address": 1, "type": "f32"},
            "running": {"kind": "coil", "address": 0, "access": "rw"},
        },
        "operations": {
            "identify": "not supported",
            "rate": {"register": "rate", "unit": "mL/h"},
            "rate_actual": "not supported",
            "volume_target": "not supported",
            "direction": "not supported",
            "run": {"register": "command", "value": 1},
            "run_with_target": "not supported",
            "stop": {"register": "command", "value": 2},
            "pause": "not supported",
            "state": {"register": "state", "values": {0: "stopped", 1: "infusing"}},
            "counters": {"infused": "infused", "withdrawn": "not supported"},
            "alarms": [{"register": "errors", "bit": 0, "kind": "stall", "code": "jam"}],
            "acknowledge": "not supported",
            "clear_counters": "not supported",
            "watchdog": "not supported",
        },
    }


def test_the_small_map_is_valid() -> None:
    m = parse_map(small_map(), "small")
    assert m.operations.volume_target is None
    assert m.operations.counters.withdrawn is None
    assert m.operations.alarms[0].kind is AlarmKind.STALL
    assert m.register("rate").value_type is ValueType.F32
    assert m.register("running").value_type is ValueType.BOOL  # a coil's default type


def broken(path: str, value: Any, *, delete: bool = False) -> dict[str, Any]:
    """The small map with one entry (a dotted path) changed or deleted."""
    data = copy.deepcopy(small_map())
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if delete:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


CASES = [
    # (what is changed, new value, entry named, words of the problem)
    ("registers.infused.address", 0, "registers.", "overlaps register"),
    ("registers.running.type", "f32", "registers.running", "holds one bit"),
    ("registers.state.type", "bool", "registers.state", "use u16"),
    ("registers.rate.address", 65535, "registers.rate", "needs 2 registers"),
    ("operations.rate.register", "nosuch", "operations.rate.register", "unknown register"),
    ("operations.run.register", "infused", "operations.run.register", "cannot be written"),
    ("operations.state.running", "rate", "operations.state", "either"),
    ("operations.rate.readback", "command", "operations.rate.readback", "cannot be read back"),
    ("operations.identify", {"model": None}, "operations.identify", "names no register"),
    ("operations.state.values", {}, "operations.state.values", "empty"),
    ("registers.errors.bits", {16: "past the end"}, "registers.errors", "bit 16 is outside u16"),
    ("operations.alarms.0.bit", 40, "operations.alarms[0].bit", "bit 40 is outside"),
    ("registers.state.enum", {70000: "big"}, "registers.state", "enum key 70000 is outside u16"),
    ("registers.rate.enum", {1: "one"}, "registers.rate", "enum on an f32"),
    ("registers.rate.scale", 10, "registers.rate", "scale applies to integer types"),
    ("operations.run.value", 70000, "operations.run.value", "does not fit"),
    ("operations.rate.unit", "L/s", "operations.rate.unit", "is not one of"),
    ("operations.stop", "not supported", "operations", "every pump must support it"),
    ("registers.infused.kind", "input ", "registers.infused.kind", "Input should be"),
    ("registers.rate.colour", "red", "registers.rate.colour", "unknown field"),
    ("registers.infused.access", "rw", "registers.infused", "read-only"),
    # NaN or infinity anywhere a number goes: one line, never a crash while checking it
    ("operations.run.value", float("nan"), "operations.run.value", "finite number"),
    ("operations.run.value", float("inf"), "operations.run.value", "finite number"),
    ("registers.rate.scale", float("nan"), "registers.rate.scale", "finite number"),
]


@pytest.mark.parametrize(("path", "value", "entry", "problem"), CASES,
                         ids=[c[0] + "=" + str(c[1])[:12] for c in CASES])
def test_each_mistake_is_one_line_naming_map_entry_problem(path: str, value: Any, entry: str,
                                                           problem: str) -> None:
    with pytest.raises(MapError) as err:
        parse_map(broken(path, value), "small")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("modbus map small: "), text
    assert entry in err.value.entry or entry in text, text
    assert problem in err.value.problem, text


def test_an_optional_operation_left_out_must_be_said_not_supported() -> None:
    with pytest.raises(MapError, match=r"watchdog: missing; write `watchdog: not supported`"):
        parse_map(broken("operations.watchdog", None, delete=True), "small")


def test_a_required_field_left_out() -> None:
    with pytest.raises(MapError, match=r"operations\.counters: missing"):
        parse_map(broken("operations.counters", None, delete=True), "small")


def test_run_with_target_needs_a_volume_target() -> None:
    with pytest.raises(MapError, match="volume_target is not supported"):
        parse_map(broken("operations.run_with_target", {"register": "command", "value": 3}),
                  "small")


def test_a_block_may_not_end_inside_a_float() -> None:
    data = broken("blocks", [{"kind": "holding", "start": 0, "end": 0}])
    with pytest.raises(MapError, match=r"blocks\[0\]: ends at 0 inside register rate"):
        parse_map(data, "small")


# ---- the shipped maps --------------------------------------------------------------------------


def test_map_names_are_the_shipped_files() -> None:
    assert map_names() == ["generic", "isco-d", "vindum-vp"]
    assert sorted(p.stem for p in maps_dir().glob("*.yaml")) == map_names()


@pytest.mark.parametrize("name", ["generic", "isco-d", "vindum-vp"])
def test_each_shipped_map_loads(name: str) -> None:
    m = load_map(name)
    assert m.name == name
    assert m.operations.rate.unit == "mL/h"
    assert load_map(name) is m  # read once while the file is unchanged


def test_generic_map_facts() -> None:
    m = load_map("generic")
    assert m.framer == "socket" and m.unit == 1 and m.port == 502
    assert m.word_order is WordOrder.BIG and m.word_order_certain
    assert m.register("rate_setpoint").span == range(2, 4)
    assert m.at(RegisterKind.HOLDING, 3).name == "rate_setpoint"  # its second word
    assert m.operations.state.values[4] is PumpState.ALARM
    assert m.operations.watchdog is not None and m.operations.volume_target is not None
    assert not m.readable(RegisterKind.INPUT, 12)  # past the documented map: exception 2


def test_vindum_facts_and_uncertain_word_order() -> None:
    m = load_map("vindum-vp")
    assert m.framer == "rtu" and m.baud == 38400 and m.parity == "N"
    assert not m.word_order_certain and "CDAB" in m.word_order_note
    assert m.one_float_per_write
    assert m.command_response is not None and m.command_response.register == "command_response"
    assert m.register("a_set_rate").address == 5
    assert m.operations.watchdog is None  # no host watchdog
    assert m.operations.run_with_target is not None
    assert m.register(m.operations.run_with_target.register).address == 9
    # the documented gaps inside the blocks the field IOC reads answer 0, past them nothing
    for kind, gap in ((RegisterKind.HOLDING, 4), (RegisterKind.HOLDING, 32),
                      (RegisterKind.INPUT, 22)):
        assert m.at(kind, gap) is None and m.readable(kind, gap)
    assert not m.readable(RegisterKind.HOLDING, 46)
    assert m.busy_after_direction_change_s > 0


def test_vindum_word_order_override() -> None:
    little = load_map("vindum-vp", word_order="little")
    assert little.word_order is WordOrder.LITTLE
    assert load_map("vindum-vp").word_order is WordOrder.BIG  # the cached map is unchanged


def test_isco_facts() -> None:
    m = load_map("isco-d")
    assert m.operations.volume_target is None and m.operations.watchdog is None
    assert m.register("flow_setpoint_a").address == 12
    assert m.register("volume_dispensed_a").address == 148
    assert all(r.value_type is ValueType.F32 for r in m.registers.values()
               if r.kind is RegisterKind.HOLDING)
    assert [m.register(w.register).address for w in m.operations.rate.select] == [89, 13]
    assert m.readable(RegisterKind.HOLDING, 156) and not m.readable(RegisterKind.HOLDING, 170)


# ---- loading ------------------------------------------------------------------------------------


def test_unknown_map_name_lists_the_known_ones() -> None:
    with pytest.raises(MapError, match=r"no such map \(known: generic, isco-d, vindum-vp\)"):
        load_map("nosuch")


def test_a_lab_map_from_a_path(tmp_path: Path) -> None:
    file = tmp_path / "lab-pump.yaml"
    file.write_text(yaml.safe_dump(small_map()))
    assert load_map(str(file)).title == "a small test pump"


def test_duplicate_yaml_key_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "dup.yaml"
    file.write_text("name: a\nname: b\n")
    with pytest.raises(MapError, match=r"modbus map dup: \(YAML\): .*duplicate key 'name'") as e:
        load_map(str(file))
    assert "\n" not in str(e.value)


def test_a_directory_is_not_a_map(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"not a regular file|directory") as e:
        load_map(str(tmp_path) + "/")
    assert "\n" not in str(e.value)
