"""Glue between YAML files, pydantic models and the project's one-line problems.

Every configuration file (drug library, syringes, pump profile, plan, course) is read the same
way: YAML text -> plain data -> a pydantic model whose quantity fields are parsed by
`pumpctl.units`. Whatever goes wrong on the way (bad YAML, unknown key, missing unit, negative
dose) comes back as `Problem`s whose field path reads like the file (`steps[0].dose`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError

from pumpctl import files
from pumpctl.files import FileKind
from pumpctl.plan.errors import ConfigError, PlanError, Problem
from pumpctl.units import Kind, Measured, UnitsError, parse_quantity

M = TypeVar("M", bound=BaseModel)



class StrictModel(BaseModel):
    """Unknown keys are errors: a misspelt limit must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True,
                              allow_inf_nan=False)


def _quantity_parser(kinds: tuple[Kind, ...], positive: bool) -> Callable[[Any], Measured]:
    def parse(raw: Any) -> Measured:
        if isinstance(raw, Measured):
            measured = raw
        else:
            try:
                measured = parse_quantity(raw, kinds)
            except UnitsError as exc:
                raise ValueError(exc.message) from None
        if positive and measured.value <= 0:
            raise ValueError(f"{raw!r} must be greater than zero")
        if measured.value < 0:
            raise ValueError(f"{raw!r} must not be negative")
        return measured

    return parse


def quantity(*kinds: Kind, positive: bool = True) -> PlainValidator:
    """Field metadata: `Annotated[Measured, quantity(Kind.DOSE)]` parses "35 mg" into a Measured."""
    return PlainValidator(_quantity_parser(kinds, positive))


# Field types used by the configuration models (all strictly positive).
Length = Annotated[Measured, quantity(Kind.LENGTH)]
Volume = Annotated[Measured, quantity(Kind.VOLUME)]
Speed = Annotated[Measured, quantity(Kind.SPEED)]
Rate = Annotated[Measured, quantity(Kind.RATE)]
Duration = Annotated[Measured, quantity(Kind.DURATION)]
Concentration = Annotated[Measured, quantity(Kind.CONCENTRATION)]
Weight = Annotated[Measured, quantity(Kind.WEIGHT)]
Dose = Annotated[Measured, quantity(Kind.DOSE_PER_KG, Kind.DOSE)]
VolumeDose = Annotated[Measured, quantity(Kind.VOLUME_PER_KG, Kind.VOLUME)]
AnyDose = Annotated[
    Measured, quantity(Kind.DOSE_PER_KG, Kind.DOSE, Kind.VOLUME_PER_KG, Kind.VOLUME)
]
DoseRate = Annotated[Measured, quantity(Kind.DOSE_RATE_PER_KG, Kind.DOSE_RATE)]
# Zero allowed (e.g. "0 h": an assessment at the start).
Offset = Annotated[Measured, quantity(Kind.DURATION, positive=False)]


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_union_tag(part: int | str) -> bool:
    return isinstance(part, str) and part.startswith(("function-", "is-instance"))


def problems_from_validation(err: ValidationError, prefix: str = "") -> list[Problem]:
    """One `Problem` per pydantic error, with a field path that reads like the YAML."""
    problems = []
    for item in err.errors(include_url=False):
        # A union (e.g. `X | None`) reports its member name as part of the location.
        loc = tuple(p for p in item["loc"] if not _is_union_tag(p))
        field = _loc(((prefix,) if prefix else ()) + loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "required key is missing"
        elif kind in ("value_error", "assertion_error"):
            message = str(item["msg"]).removeprefix("Value error, ")
            message = message.removeprefix("Assertion failed, ")
        else:
            message = f"{item['msg']} (got {_short(item.get('input'))})"
        problems.append(Problem(field=field or "(file)", message=message))
    return problems


def read_yaml(path: Path, error: type[PlanError] = ConfigError,
              kind: FileKind = files.CONFIG) -> Any:
    """Parse a YAML file into plain data; any failure is a one-line `error` naming the file.

    The file is read by `pumpctl.files` (a regular file within the kind's size limit, never a
    FIFO or a device) and parsed by its one YAML loader (duplicate keys refused).
    """
    try:
        text = files.read_text(path, kind)
    except files.InputFileError as exc:
        raise error([Problem("(file)", f"{kind.name}: {exc.problem}")], str(path)) from None
    return parse_yaml_text(text, str(path), error)


def parse_yaml_text(text: str, source: str, error: type[PlanError] = ConfigError) -> Any:
    """Parse YAML text; a syntax error becomes one line with its line and column."""
    try:
        data = files.parse_yaml(text)
    except files.DuplicateKeyError as exc:
        raise error([Problem(f"line {exc.again_line}", str(exc.problem))], source) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        what = (exc.problem or "invalid YAML").strip()
        raise error([Problem(where, f"malformed YAML: {what}")], source) from None
    except yaml.YAMLError as exc:
        raise error([Problem("(file)", f"malformed YAML: {exc}")], source) from None
    except RecursionError:
        raise error([Problem("(file)", "malformed YAML: nested too deeply")], source) from None
    if not _small_tree(data):
        raise error(
            [Problem("(file)", f"YAML too large or self-referencing (over {_MAX_NODES} values "
                     f"or {_MAX_DEPTH} levels once aliases are expanded)")],
            source,
        )
    return data


_MAX_NODES = 20_000
_MAX_DEPTH = 40


def _small_tree(data: Any) -> bool:
    """False for alias bombs and self-referencing anchors, which would stall validation."""
    budget = [_MAX_NODES]

    def walk(node: Any, depth: int) -> bool:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_DEPTH:
            return False
        if isinstance(node, dict):
            return all(walk(k, depth + 1) and walk(v, depth + 1) for k, v in node.items())
        if isinstance(node, list):
            return all(walk(v, depth + 1) for v in node)
        return True

    return walk(data, 0)


def validate(model: type[M], data: Any, source: str, error: type[PlanError] = ConfigError) -> M:
    """Build `model` from plain data, turning every validation failure into `error`."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise error([Problem("(file)", f"expected a mapping of keys, got {got}")], source)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(problems_from_validation(exc), source) from None
    except RecursionError:
        raise error([Problem("(file)", "nested too deeply")], source) from None


def load_cached(model: type[M], file: Path, error: type[PlanError] = ConfigError,
                kind: FileKind = files.CONFIG) -> M:
    """`validate(model, read_yaml(file))`, reusing the result while the file is unchanged.

    Library, syringe table and pump profile are read for every plan compiled; they are
    frozen models, so sharing one instance is safe.
    """
    try:
        st = file.stat()
        key = (model, str(file.resolve()), st.st_mtime_ns, st.st_size)
    except (OSError, RuntimeError, ValueError):  # a symlink loop on resolve(); a NUL byte
        return validate(model, read_yaml(file, error, kind), str(file), error)
    hit = _CACHE.get(key)
    if isinstance(hit, model):
        return hit
    loaded = validate(model, read_yaml(file, error, kind), str(file), error)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = loaded
    return loaded


_CACHE: dict[tuple[type[BaseModel], str, int, int], BaseModel] = {}


def default_configs_dir() -> Path:
    """`$PUMPCTL_CONFIGS` if set, else the repository's `configs/` (next to `pumpctl/`)."""
    env = os.environ.get("PUMPCTL_CONFIGS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "configs"
