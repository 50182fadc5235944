"""A Modbus pump's register map, read from YAML and checked before anything is sent.

Every vendor numbers its registers its own way, so a pump is described by data, not code:
which registers exist (kind, 0-based address, type, scale, unit, access, meanings of values
and bits), which address ranges it answers in one read (`blocks`), and for each pumpctl
operation the registers that do it or, said explicitly, `not supported`. The driver
(`pumpctl.drivers.modbus.driver`) and the simulator (`simulators.modbus`) both read the same
map, so what one writes the other serves. docs/modbus.md describes the format.

A map is checked as a whole when it is loaded (`mapcheck`: overlapping registers, a 32-bit
value on a one-bit coil, an operation naming a register that does not exist or cannot do
what the operation needs, bits and enumeration keys outside the type): a lab writing its own
map gets one line naming the map, the entry and the problem, not a failure in the middle of
a run. The parts themselves are in `mapmodel` and re-exported here: this is the module to
import.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pumpctl import files
from pumpctl.drivers.modbus.mapcheck import check_map
from pumpctl.drivers.modbus.mapmodel import (
    MAX_ADDRESS,
    MAX_UNIT,
    MIN_UNIT,
    NOT_SUPPORTED,
    RATE_UNITS,
    Access,
    AlarmSource,
    Block,
    CommandResponse,
    Counters,
    DirectionOp,
    Identify,
    LineDefaults,
    MapError,
    Operations,
    PumpFacts,
    PumpMap,
    Register,
    RegisterKind,
    SetValue,
    StateOp,
    ValueType,
    WatchdogOp,
    WordOrder,
    Write,
)

__all__ = ["MAX_ADDRESS", "MAX_UNIT", "MIN_UNIT", "NOT_SUPPORTED", "RATE_UNITS", "Access",
           "AlarmSource", "Block",
           "CommandResponse", "Counters", "DirectionOp", "Identify", "LineDefaults",
           "MapError", "Operations", "PumpFacts", "PumpMap", "Register", "RegisterKind",
           "SetValue", "StateOp", "ValueType", "WatchdogOp", "WordOrder", "Write", "load_map",
           "map_names", "maps_dir", "parse_map"]


def maps_dir() -> Path:
    """configs/modbus of the configs directory pumpctl uses ($PUMPCTL_CONFIGS or the repo's)."""
    from pumpctl.plan.fields import default_configs_dir

    return default_configs_dir() / "modbus"


def map_names() -> list[str]:
    """The shipped (and lab-added) map names: configs/modbus/*.yaml."""
    return sorted(p.stem for p in maps_dir().glob("*.yaml"))


def _first_problem(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "missing"
    return loc or "(top level)", msg


def parse_map(data: Any, name: str) -> PumpMap:
    """A checked map from plain data (what the YAML file held); `name` is used in errors."""
    if not isinstance(data, dict):
        raise MapError(name, "(top level)", "must be a mapping of fields")
    shown = str(data.get("name", name))
    try:
        pump_map = PumpMap.model_validate(data)
    except ValidationError as exc:
        entry, problem = _first_problem(exc)
        raise MapError(shown, entry, problem) from None
    except ValueError as exc:  # a `before` validator's own message
        raise MapError(shown, "(top level)", str(exc)) from None
    check_map(pump_map)
    return pump_map


@functools.lru_cache(maxsize=32)
def _load_file(path: str, mtime_ns: int, size: int) -> PumpMap:
    text = files.read_text(path, files.CONFIG)
    try:
        data = files.parse_yaml(text)
    except Exception as exc:  # yaml.YAMLError: one line of it
        raise MapError(Path(path).stem, "(YAML)", " ".join(str(exc).split())) from None
    return parse_map(data, Path(path).stem)


def load_map(name_or_path: str | Path, *, word_order: WordOrder | str | None = None) -> PumpMap:
    """A map by name (configs/modbus/NAME.yaml) or by path, checked; `word_order` overrides
    the map's own (a URL's `word_order=`)."""
    text = str(name_or_path)
    candidate = Path(text)
    if candidate.suffix in (".yaml", ".yml") or "/" in text:
        file = candidate
    else:
        if not text or text.startswith("."):
            raise MapError(text or "''", "map", "not a map name")
        file = maps_dir() / f"{text}.yaml"
        if not files.is_file(file):
            raise MapError(text, "map", f"no such map (known: {', '.join(map_names())})")
    try:
        st = file.stat()
    except OSError as exc:
        raise MapError(file.stem, "map", f"cannot read {file}: {exc.strerror}") from None
    loaded = _load_file(str(file), st.st_mtime_ns, st.st_size)
    if word_order is not None and WordOrder(word_order) is not loaded.word_order:
        return loaded.with_word_order(WordOrder(word_order))
    return loaded
