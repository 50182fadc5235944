"""Issue 9, item 8: a key given twice in a YAML mapping is an error naming the key and both
lines, in every configuration file pumpctl reads; never "the last one wins"."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pumpctl.files import DuplicateKeyError, parse_yaml
from pumpctl.plan.course import load_course
from pumpctl.plan.errors import PlanError
from pumpctl.plan.library import load_library, load_pump_profile, load_syringes
from pumpctl.plan.model import load_plan
from pumpctl.rig import load_rig

from .conftest import CONFIGS, STANDARD


def _repeat_line(text: str, containing: str) -> tuple[str, int, int]:
    """`text` with the first line containing `containing` given again right after it, and
    the (1-based) numbers of both lines."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if containing in line)
    lines.insert(at + 1, lines[at])
    return "\n".join(lines) + "\n", at + 1, at + 2


# Every kind of file, with a line whose key is then given twice in the same mapping.
FILES: list[tuple[str, Path, str, Callable[[Path], Any]]] = [
    ("plan", STANDARD, "dose: 0.5 mg/kg", load_plan),
    ("library", CONFIGS / "drugs.yaml", "diluent:", load_library),
    ("syringes", CONFIGS / "syringes.yaml", "  bd-plastipak-1:", load_syringes),
    ("pump profile", CONFIGS / "pumps" / "newera-ne1000.yaml", "name:", load_pump_profile),
    ("course", CONFIGS / "courses" / "ketamine-twice-weekly.yaml", "plan:", load_course),
    ("rig", CONFIGS / "rigs" / "sim-newera-accuracy.yaml", "  syringe:", load_rig),
]


@pytest.mark.parametrize(("kind", "source", "line", "load"), FILES, ids=[f[0] for f in FILES])
def test_a_repeated_key_names_the_key_and_both_lines(
        kind: str, source: Path, line: str, load: Callable[[Path], Any], tmp_path: Path) -> None:
    text, first, again = _repeat_line(source.read_text(encoding="utf-8"), line)
    path = tmp_path / source.name
    path.write_text(text, encoding="utf-8")
    if kind == "plan":  # the standard plan's step is a flow mapping: repeat inside it
        text = source.read_text(encoding="utf-8").replace(
            "dose: 0.5 mg/kg,", "dose: 0.5 mg/kg, dose: 5 mg/kg,")
        path.write_text(text, encoding="utf-8")
        first = again = next(i for i, t in enumerate(text.splitlines(), 1) if "dose:" in t)
    with pytest.raises(PlanError) as info:
        load(path)
    message = str(info.value)
    key = line.split(":")[0].strip()
    assert f"duplicate key {key!r}" in message, message
    if first == again:
        assert f"at line {first} (columns" in message, message
    else:
        assert f"at lines {first} and {again}" in message, message
    assert str(path) in message and "\n" not in message


def test_the_two_dose_lines_of_the_issue(tmp_path: Path) -> None:
    path = tmp_path / "two-doses.yaml"
    path.write_text("drug: ketamine\nconcentration: 1 mg/mL\nsteps:\n  - over: 40 min\n"
                    "    dose: 0.5 mg/kg\n    label: infusion\n    dose: 5 mg/kg\n")
    with pytest.raises(PlanError, match=r"line 7: duplicate key 'dose' at lines 5 and 7"):
        load_plan(path)


def test_merge_keys_may_still_be_overridden() -> None:
    """`<<: *base` then an explicit key is YAML's override, not a key given twice."""
    data = parse_yaml("base: &b {rate: 1, unit: mL}\nthis:\n  <<: *b\n  rate: 2\n")
    assert data["this"] == {"rate": 2, "unit": "mL"}
    with pytest.raises(DuplicateKeyError):
        parse_yaml("this:\n  <<: {rate: 1}\n  rate: 2\n  rate: 3\n")


_keys = st.text("abcdefgh", min_size=1, max_size=3)
_leaves = st.one_of(st.integers(-5, 5), st.text("xyz ", max_size=4), st.booleans())
_docs = st.recursive(st.dictionaries(_keys, _leaves, min_size=1, max_size=4),
                     lambda inner: st.dictionaries(_keys, inner | _leaves, min_size=1,
                                                   max_size=3), max_leaves=12)


def _mappings(node: Any) -> list[dict[str, Any]]:
    if not isinstance(node, dict):
        return []
    return [node, *(m for v in node.values() for m in _mappings(v))]


@settings(max_examples=150, deadline=None)
@given(doc=_docs, data=st.data())
def test_any_document_loads_as_yaml_says_unless_a_key_repeats(doc: dict[str, Any],
                                                              data: st.DataObject) -> None:
    text = yaml.safe_dump(doc, default_flow_style=False, sort_keys=False)
    assert parse_yaml(text) == yaml.safe_load(text) == doc
    # Now give one key of one mapping twice: the loader must refuse and name it.
    target = data.draw(st.sampled_from(_mappings(doc)))
    key = data.draw(st.sampled_from(sorted(target)))
    marker = "__again__"
    target[marker] = "x"
    lines = yaml.safe_dump(doc, default_flow_style=False, sort_keys=False).splitlines()
    del target[marker]
    at = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{marker}:"))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines[at] = f"{indent}{key}: 0"
    with pytest.raises(DuplicateKeyError) as info:
        parse_yaml("\n".join(lines))
    assert info.value.key == key and info.value.again_line == at + 1
    assert info.value.first_line < info.value.again_line
