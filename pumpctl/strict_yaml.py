"""The project's one YAML loader: PyYAML's safe loader that also refuses a key given twice.

Every YAML file a user names is read through `pumpctl.files` (bounded, regular files only)
and parsed here; `pumpctl.files` re-exports these names.
"""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's parser when present (about 10x faster); the constructor is Python either way, so
# the duplicate-key check below applies to both.
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping that gives the same key twice (YAML itself would keep the last one)."""

    def __init__(self, key: Any, first: yaml.Mark, again: yaml.Mark) -> None:
        self.key = key
        self.first_line = first.line + 1
        self.again_line = again.line + 1
        shown = repr(key) if len(repr(key)) <= 40 else repr(key)[:37] + "..."
        where = (f"lines {self.first_line} and {self.again_line}"
                 if self.first_line != self.again_line else
                 f"line {self.again_line} (columns {first.column + 1} and {again.column + 1})")
        super().__init__(problem=f"duplicate key {shown} at {where}; a key may appear once "
                                 "per mapping", problem_mark=again)


class StrictLoader(_BASE_LOADER):
    """YAML's safe loader, refusing duplicate keys. The only loader pumpctl uses."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges; explicit keys may override merged ones
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable: the base class reports it with its own mark
            if first is not None:
                raise DuplicateKeyError(key, first, key_node.start_mark)
            seen[key] = key_node.start_mark
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def parse_yaml(text: str) -> Any:
    """Plain data from YAML text with `StrictLoader`; errors are `yaml.YAMLError`s."""
    return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a safe loader
